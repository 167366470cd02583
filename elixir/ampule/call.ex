defmodule Ampule.Call do
  @moduledoc """
  A call in flight, made by `Ampule.async_call/2` and awaited with `Ampule.yield/2`.

  Only the process that made the call can await it (the reply is a message to that
  process). The struct is opaque.
  """

  # The public face of a call; the work is the transport's:
  # - Ampule.Call.Dist: a distribution container. The remote process is spawned over
  #   distribution and its result is its exit reason (Ampule.Remote).
  # - Ampule.Call.Sandbox: a sandbox. Frames over the agent channel; the result is decoded
  #   as hostile data (Ampule.Sandbox.Decode).
  # Both share one deadline per await, and both kill the remote work on timeout before
  # they return.
  #
  # A container on another host (see `Ampule.Cluster` in Ampule): a sandbox's channel is a pid
  # on that host, reached over distribution like a local one. A distribution container's
  # node cannot be reached from here (its bridge is the host's alone), so the call goes
  # through a relay process on the host (Ampule.Call.Relay): one hop more.

  alias Ampule.Container
  alias Ampule.Call.{Dist, Sandbox}

  @enforce_keys [:transport, :ref, :owner]
  defstruct [:transport, :ref, :mon, :owner, :target, :id, :max, :via, :name]

  @opaque t :: %__MODULE__{
            transport: Dist | Sandbox,
            ref: reference,
            mon: reference | nil,
            owner: pid,
            target: node | pid,
            id: non_neg_integer | nil,
            max: pos_integer | nil,
            via: node | nil,
            name: String.t() | nil
          }

  @typedoc "What a container runs: `{module, function, args}` or a 0-arity function."
  @type callable :: {module, atom, [term]} | (() -> term)

  @type result :: {:ok, term} | {:error, Ampule.Error.reason()}

  @default_timeout 5_000

  @doc false
  @spec default_timeout() :: pos_integer
  def default_timeout, do: @default_timeout

  @doc false
  # What `Ampule.call/1,2,3` and its siblings accept as work; anything else raises.
  @spec callable!(term) :: callable
  def callable!({m, f, a} = mfa) when is_atom(m) and is_atom(f) and is_list(a), do: mfa
  def callable!(fun) when is_function(fun, 0), do: Ampule.Closure.check!(fun)

  def callable!(other) do
    raise ArgumentError,
          "expected {module, function, args} or a function of no arguments, got: #{inspect(other)}"
  end

  @doc false
  # `Ampule.call/2`: in a container held, with the default timeout, or in a fresh one.
  @spec call!(term, Container.t() | keyword) :: term
  def call!(what, %Container{} = container), do: call!(what, container, @default_timeout)
  def call!(what, opts) when is_list(opts), do: call_with!(what, opts)

  @doc false
  # `Ampule.call/3`: the result, or the function's raise/throw/exit again here, or
  # Ampule.Error for Ampule's own failure.
  @spec call!(term, Container.t(), term) :: term
  def call!(what, %Container{} = container, timeout) do
    what = callable!(what)
    timeout = Ampule.Options.timeout!(timeout, :timeout)

    case await(async(container, what), timeout) do
      {:ok, value} -> value
      {:error, {:exception, exception, stacktrace}} -> reraise exception, stacktrace
      {:error, {:throw, value}} -> throw(value)
      {:error, {:exit, reason}} -> exit(reason)
      {:error, reason} -> raise Ampule.Error, reason: reason, container: container.name
    end
  end

  @doc false
  # `Ampule.multicall/3`: one deadline for all.
  @spec multicall(callable, [Container.t()], timeout) :: [result]
  def multicall(what, containers, timeout) do
    containers
    |> Enum.map(fn %Container{} = container -> async(container, what) end)
    |> await_many(timeout)
  end

  @doc false
  # `Ampule.call/2` with options: in a fresh container, destroyed after the call, or in
  # one of a pool's (`pool:`).
  @spec call_with!(term, keyword) :: term
  def call_with!(what, opts) when is_list(opts) do
    what = callable!(what)

    case Keyword.pop(opts, :pool) do
      {nil, opts} -> fresh_call(what, opts)
      {pool, opts} -> pooled_call(what, pool, opts)
    end
  end

  defp fresh_call(what, opts) do
    {timeout, spawn_opts} = Ampule.Options.call!(opts, @default_timeout)
    container = Ampule.Containers.spawn!(spawn_opts)

    try do
      call!(what, container, timeout)
    rescue
      error in Ampule.Error ->
        reraise %{error | reason: node_gone_reason(error.reason, container)}, __STACKTRACE__
    after
      Ampule.Containers.destroy(container)
    end
  end

  # A container of the pool's, made with the pool's options: only the timeout is the
  # call's own.
  defp pooled_call(what, pool, opts) do
    {timeout, rest} = Keyword.pop(opts, :timeout, @default_timeout)
    timeout = Ampule.Options.timeout!(timeout, :timeout)

    if rest != [] do
      raise ArgumentError,
            "with :pool, the only other option of a call is :timeout (the pool makes its " <>
              "containers with its own options), got: #{inspect(Keyword.keys(rest))}"
    end

    Ampule.Pool.with_container(pool, fn container ->
      try do
        call!(what, container, timeout)
      rescue
        error in Ampule.Error ->
          reraise %{error | reason: node_gone_reason(error.reason, container)}, __STACKTRACE__
      end
    end)
  end

  @doc false
  # The fresh container's node went away during the call. Its owner (this process) hears
  # why from the port; when it was the memory limit, say so rather than `:noconnection`.
  # (Ampule.Grade's fresh sandboxes too.)
  @spec node_gone_reason(Ampule.Error.reason(), Container.t()) :: Ampule.Error.reason()
  def node_gone_reason(:noconnection, %Container{name: name}) do
    receive do
      {:ampule_exit, %Container{name: ^name}, :oom} -> :oom
      {:ampule_exit, %Container{name: ^name}, _status} -> :noconnection
    after
      # The port reports the exit right when the init is gone; longer, and the failed
      # call would wait for a reason that changes nothing.
      500 -> :noconnection
    end
  end

  def node_gone_reason(reason, _container), do: reason

  @doc false
  @spec async(Container.t(), callable) :: t
  def async(%Container{sandbox: true} = container, what), do: Sandbox.async(container, what)

  def async(%Container{nodename: node, host: host} = container, what) do
    if Container.local?(container),
      do: Dist.async(node, what),
      else: Dist.async_via(host, node, what)
  end

  @doc false
  @spec cast(Container.t(), callable, timeout) :: :ok
  def cast(%Container{sandbox: true} = container, what, timeout),
    do: Sandbox.cast(container, what, timeout)

  def cast(%Container{nodename: node, host: host} = container, what, timeout) do
    if Container.local?(container),
      do: Dist.cast(node, what, timeout),
      else: Dist.cast_via(host, node, what, timeout)
  end

  @doc false
  @spec await(t, timeout) :: result
  def await(%__MODULE__{owner: owner} = call, timeout) do
    if owner != self() do
      raise ArgumentError,
            "Ampule.yield/2 must be called by the process that made the call " <>
              "(#{inspect(owner)}), not #{inspect(self())}"
    end

    call.transport.await(call, deadline(timeout))
  end

  @doc false
  # Awaits several calls against one deadline (multicall).
  @spec await_many([t], timeout) :: [result]
  def await_many(calls, timeout) do
    deadline = deadline(timeout)
    Enum.map(calls, & &1.transport.await(&1, deadline))
  end

  defp deadline(:infinity), do: :infinity
  defp deadline(timeout), do: System.monotonic_time(:millisecond) + timeout

  @doc false
  def remaining(:infinity), do: :infinity
  def remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)
end
