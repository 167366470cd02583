defmodule Ampule.System do
  @moduledoc false
  # System containers (`Ampule.create/1` and the functions that drive one): a whole
  # distribution from an LXC template, reached over the port alone (its console travels as
  # port events, so no node needs to be alive). Options are `Ampule.Options.create!/1`'s;
  # console flow control is `Ampule.Port`'s. See `Ampule.SystemContainer` for the guide.

  alias Ampule.{Options, Port, SystemContainer}

  @spec create(keyword) :: SystemContainer.t()
  def create(opts) do
    case create_container(opts) do
      {:ok, container} -> container
      {:error, reason} -> raise Ampule.Error, reason: reason
    end
  end

  @spec create_container(keyword) :: {:ok, SystemContainer.t()} | {:error, Ampule.Error.reason()}
  def create_container(opts) do
    {request, owner, progress_to, active, timeout} = Options.create!(opts)
    # The port's own deadline is the template's timeout; this one covers its answer too.
    Port.create(request, owner, progress_to, active, timeout + 30_000)
  end

  @spec console(iodata, SystemContainer.t() | String.t()) :: :ok | {:error, Ampule.Error.reason()}
  def console(data, %SystemContainer{name: name}), do: console(data, name)

  def console(data, name) when is_binary(name),
    do: Port.request({:console, name, IO.iodata_to_binary(data)})

  @spec console_active(SystemContainer.t() | String.t(), term) ::
          :ok | {:error, Ampule.Error.reason()}
  def console_active(%SystemContainer{name: name}, active), do: console_active(name, active)

  def console_active(name, active) when is_binary(name),
    do: Port.console_active(name, Options.active!(active, :set))

  @spec stop(SystemContainer.t()) :: :ok | {:error, Ampule.Error.reason()}
  def stop(%SystemContainer{name: name}), do: Port.request({:stop, name})

  @spec restart(SystemContainer.t()) :: :ok | {:error, Ampule.Error.reason()}
  def restart(%SystemContainer{name: name}) do
    case Port.request({:start, name}) do
      {:ok, _} -> :ok
      other -> other
    end
  end
end
