defmodule Ampule.Call do
  @moduledoc """
  A call in flight, made by `Ampule.async_call/2` and awaited with `Ampule.yield/2`.

  Only the process that made the call can await it (the reply is a message to that
  process). The struct is opaque.
  """

  # The remote process is spawned with :erlang.spawn_request/5 (monitor, and a spawn
  # reply that carries its pid, so a call that times out can kill it); its result is its
  # exit reason (see Ampule.Remote).

  @enforce_keys [:ref, :node, :owner]
  defstruct [:ref, :node, :owner]

  @opaque t :: %__MODULE__{ref: reference, node: node, owner: pid}

  @type result :: {:ok, term} | {:error, Ampule.reason()}

  # How long to wait for a spawn reply or a kill to be confirmed after a timeout.
  @grace 5_000

  @doc false
  @spec async(node, {module, atom, list}) :: t
  def async(node, {m, f, a}) do
    ref = :erlang.spawn_request(node, Ampule.Remote, :call, [self(), m, f, a], [:monitor])
    %__MODULE__{ref: ref, node: node, owner: self()}
  end

  @doc false
  @spec cast(node, {module, atom, list}, timeout) :: :ok
  def cast(node, {m, f, a}, timeout) do
    _ = :erlang.spawn_request(node, Ampule.Remote, :cast, [m, f, a, timeout], reply: :no)
    :ok
  end

  @doc false
  @spec await(t, timeout) :: result
  def await(%__MODULE__{owner: owner} = call, timeout) do
    if owner != self() do
      raise ArgumentError,
            "Ampule.yield/2 must be called by the process that made the call " <>
              "(#{inspect(owner)}), not #{inspect(self())}"
    end

    await_spawn(call, deadline(timeout))
  end

  @doc false
  # Awaits several calls against one deadline (multicall).
  @spec await_many([t], timeout) :: [result]
  def await_many(calls, timeout) do
    deadline = deadline(timeout)
    Enum.map(calls, &await_spawn(&1, deadline))
  end

  defp await_spawn(%{ref: ref} = call, deadline) do
    receive do
      {:spawn_reply, ^ref, :ok, pid} -> await_down(call, pid, deadline)
      {:spawn_reply, ^ref, :error, reason} -> {:error, spawn_error(reason)}
    after
      remaining(deadline) ->
        # The spawn is still in flight: wait for its pid to kill the process.
        receive do
          {:spawn_reply, ^ref, :ok, pid} -> kill(call, pid)
          {:spawn_reply, ^ref, :error, _} -> {:error, :timeout}
        after
          @grace ->
            :erlang.spawn_request_abandon(ref)
            Process.demonitor(ref, [:flush])
            {:error, :timeout}
        end
    end
  end

  defp await_down(%{ref: ref} = call, pid, deadline) do
    receive do
      {:DOWN, ^ref, :process, _, reason} -> result(reason)
    after
      remaining(deadline) -> kill(call, pid)
    end
  end

  # Kills the remote process and waits until it is gone, so that a call that timed out
  # leaves nothing running. A result that arrives meanwhile is still the result.
  defp kill(%{ref: ref}, pid) do
    Process.exit(pid, :kill)

    receive do
      {:DOWN, ^ref, :process, _, {:ampule_result, _, _} = reason} -> result(reason)
      {:DOWN, ^ref, :process, _, {:ampule_result, _, _, _} = reason} -> result(reason)
      {:DOWN, ^ref, :process, _, _} -> {:error, :timeout}
    after
      @grace ->
        Process.demonitor(ref, [:flush])
        {:error, :timeout}
    end
  end

  defp result({:ampule_result, :return, value}), do: {:ok, value}

  defp result({:ampule_result, :error, reason, stacktrace}),
    do: {:error, {:exception, Exception.normalize(:error, reason, stacktrace), stacktrace}}

  defp result({:ampule_result, :throw, value, _stacktrace}), do: {:error, {:throw, value}}
  defp result({:ampule_result, :exit, reason, _stacktrace}), do: {:error, {:exit, reason}}
  defp result(:noconnection), do: {:error, :noconnection}
  defp result(reason), do: {:error, {:exit, reason}}

  defp spawn_error(:noconnection), do: :noconnection
  defp spawn_error(reason), do: {:spawn_failed, reason}

  defp deadline(:infinity), do: :infinity
  defp deadline(timeout), do: System.monotonic_time(:millisecond) + timeout

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)
end
