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
  # A container on another host (see "Cluster" in Ampule): a sandbox's channel is a pid
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

  @type result :: {:ok, term} | {:error, Ampule.reason()}

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
