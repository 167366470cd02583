defmodule Ampule.Containers do
  @moduledoc false
  # Making, destroying and asking about application containers and sandboxes, on this
  # node's port or on another host's (`on:`, see `Ampule.Cluster`). The front (`Ampule`)
  # and the parts (`Ampule.Pool`, `Ampule.Call`) call these; nothing here calls `Ampule`.
  #
  # A container on another host is made by that host's Ampule, with its own port, bridge
  # and code paths, for an owner here: the options are checked here first, so that a bad
  # one raises in the caller, then this module's function runs there over `:erpc`.

  alias Ampule.{Container, Distribution, Options, Port, SystemContainer}

  @spec start(keyword) :: {:ok, Container.t()} | {:error, Ampule.Error.reason()}
  def start(opts) do
    case Options.on!(opts) do
      {nil, opts} -> start_here(opts)
      {host, opts} -> start_on(host, opts)
    end
  end

  @spec spawn!(keyword) :: Container.t()
  def spawn!(opts) do
    case start(opts) do
      {:ok, container} -> container
      {:error, reason} -> raise Ampule.Error, reason: reason, container: opts[:name]
    end
  end

  defp start_here(opts) do
    # `prepare:` is this side's, done once the container is up (see Ampule.Prepare).
    {prepare, opts} = Keyword.pop(opts, :prepare)
    spec = Ampule.Prepare.validate!(prepare)

    started =
      case Options.spawn!(opts) do
        {owner, request, {:sandbox, max}} -> Ampule.Sandbox.start(owner, request, max)
        {owner, request, :distribution} -> Distribution.start_container(owner, request)
      end

    prepared(started, spec, Keyword.get(opts, :boot_timeout, 15_000))
  end

  @doc false
  # A booted container, prepared with `spec` (nil: as it is); one whose preparation
  # fails is destroyed.
  @spec prepared({:ok, Container.t()} | {:error, term}, Ampule.Prepare.spec() | nil, timeout) ::
          {:ok, Container.t()} | {:error, term}
  def prepared({:ok, container}, spec, timeout) when spec != nil do
    case Ampule.Prepare.container(container, spec, timeout) do
      :ok ->
        {:ok, container}

      {:error, _} = error ->
        _ = destroy(container)
        error
    end
  end

  def prepared(result, _spec, _timeout), do: result

  defp start_on(host, opts) do
    {owner, request, _kind} = Options.spawn!(opts)
    opts = Keyword.put(opts, :owner, owner || false)
    remote(host, :start, [opts], request.boot_timeout + 60_000)
  end

  @spec destroy(Container.t() | SystemContainer.t() | String.t()) ::
          :ok | {:error, Ampule.Error.reason()}
  def destroy(%Container{name: name, nodename: node} = container) do
    if Container.local?(container) do
      # Its node goes with it; disconnecting first closes the connection cleanly (see
      # Ampule.Port, which does the same for the containers it knows). A sandbox has none.
      if node, do: :erlang.disconnect_node(node)
      Port.destroy(name)
    else
      remote(container.host, :destroy, [container], 65_000)
    end
  end

  def destroy(%SystemContainer{name: name}), do: Port.destroy(name)
  def destroy(name) when is_binary(name), do: Port.destroy(name)

  @spec info(Container.t() | SystemContainer.t() | String.t()) ::
          {:ok, map} | {:error, Ampule.Error.reason()}
  def info(%Container{name: name} = container) do
    if Container.local?(container),
      do: info(name),
      else: remote(container.host, :info, [name], 60_000)
  end

  def info(%{name: name}), do: info(name)

  def info(name) when is_binary(name) do
    case Port.request({:info, name}) do
      # The port says `undefined` (Erlang's way) for what a container has not (yet): nil.
      {:ok, info} ->
        {:ok, Map.new(info, fn {k, v} -> {k, if(v == :undefined, do: nil, else: v)} end)}

      other ->
        other
    end
  end

  @spec list() :: {:ok, [String.t()]} | {:error, Ampule.Error.reason()}
  def list, do: Port.request(:list)

  # Runs a function of this module on `host`; a host that cannot be reached (gone, or cut
  # off) is `{:error, {:host_down, host}}`, and what the host raises is raised here.
  defp remote(host, function, args, timeout) do
    :erpc.call(host, __MODULE__, function, args, timeout)
  catch
    :error, {:erpc, :noconnection} -> {:error, {:host_down, host}}
    :error, {:erpc, :timeout} -> {:error, :timeout}
    :error, {:exception, reason, stacktrace} -> :erlang.raise(:error, reason, stacktrace)
    :exit, {:exception, reason} -> exit(reason)
  end
end
