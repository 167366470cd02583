defmodule Ampule.Prepare do
  @moduledoc false
  # A pool's `prepare:` (see "Prepared containers" in Ampule.Pool): what each container
  # does after its boot and before any caller gets it, so that a pooled call pays for its
  # work and not for loading what it uses. A pristine node loads each module on first use
  # (a pooled sandbox's first String.upcase/1 took 21 ms, Code.eval_string("1 + 1") 120
  # ms; a BIF 0.6 ms).
  #
  # Runs inside the container as one call of the pool's own (`{Ampule.Prepare, :inside,
  # [spec]}`, Ampule's ebin being on every container's code path), in this order:
  # applications started, modules loaded, then the `run:` MFA. Nothing of a caller's runs
  # in it: the spec is the pool's configuration, fixed at its start.

  alias Ampule.{Call, Container}

  @type spec :: %{applications: [atom], modules: [module], run: {module, atom, list} | nil}

  @keys [:applications, :modules, :run]

  @doc "Validates a `prepare:` keyword list (raising ArgumentError); nil for none."
  @spec validate!(keyword | nil) :: spec | nil
  def validate!(nil), do: nil

  def validate!(opts) when is_list(opts) do
    opts = Keyword.validate!(opts, applications: [], modules: [], run: nil)

    %{
      applications: atoms!(opts[:applications], :applications),
      modules: atoms!(opts[:modules], :modules),
      run: mfa!(opts[:run])
    }
  rescue
    e in ArgumentError ->
      reraise ArgumentError,
              "invalid :prepare option (keys #{inspect(@keys)}): " <> Exception.message(e),
              __STACKTRACE__
  end

  def validate!(other) do
    raise ArgumentError,
          "invalid :prepare option: expected a keyword list of #{inspect(@keys)}, got: " <>
            inspect(other)
  end

  defp atoms!(list, key) do
    if is_list(list) and Enum.all?(list, &(is_atom(&1) and &1 not in [nil, true, false])),
      do: list,
      else: raise(ArgumentError, "#{inspect(key)} must be a list of atoms, got: #{inspect(list)}")
  end

  defp mfa!(nil), do: nil
  defp mfa!({m, f, a} = mfa) when is_atom(m) and is_atom(f) and is_list(a), do: mfa

  defp mfa!(other),
    do: raise(ArgumentError, ":run must be {module, function, args}, got: #{inspect(other)}")

  @doc """
  Prepares `container` (just booted, owned by the pool) within `timeout` ms: `:ok`, or
  `{:error, {:prepare_failed, why}}`, where `why` is `{:application, app, reason}`,
  `{:module, module, reason}`, or the `run:` call's own error reason.
  """
  @spec container(Container.t(), spec, timeout) :: :ok | {:error, {:prepare_failed, term}}
  def container(container, spec, timeout) do
    case Call.await(Call.async(container, {__MODULE__, :inside, [spec]}), timeout) do
      {:ok, :ok} -> :ok
      {:ok, {:error, why}} -> {:error, {:prepare_failed, why}}
      {:ok, other} -> {:error, {:prepare_failed, {:bad_return, other}}}
      {:error, reason} -> {:error, {:prepare_failed, reason}}
    end
  end

  @doc false
  # In the container.
  def inside(%{applications: apps, modules: modules, run: run}) do
    with :ok <- start(apps), :ok <- load(modules) do
      case run do
        {m, f, a} ->
          _ = apply(m, f, a)
          :ok

        nil ->
          :ok
      end
    end
  end

  defp start([]), do: :ok

  defp start([app | rest]) do
    case Application.ensure_all_started(app) do
      {:ok, _} -> start(rest)
      {:error, reason} -> {:error, {:application, app, reason}}
    end
  end

  defp load([]), do: :ok

  defp load([module | rest]) do
    case :code.ensure_loaded(module) do
      {:module, ^module} -> load(rest)
      {:error, reason} -> {:error, {:module, module, reason}}
    end
  end
end
