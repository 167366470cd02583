defmodule Ampule.Call.Dist do
  @moduledoc false
  # Calls to a distribution container. The remote process is spawned with
  # :erlang.spawn_request/5 (monitor, and a spawn reply that carries its pid, so a call
  # that times out can kill it); its result is its exit reason (see Ampule.Remote).

  alias Ampule.Call

  # After a timeout, how long the kill's confirmation is awaited (the process's `:DOWN`,
  # about a round trip when the node is reachable). A call returns within its timeout and
  # this, never more: an unreachable node (destroyed, cut off) took 5 s of grace before.
  @confirm 50

  @spec async(node, Call.callable()) :: Call.t()
  def async(node, what) do
    ref = :erlang.spawn_request(node, Ampule.Remote, :call, [self() | args(what)], [:monitor])
    %Call{transport: __MODULE__, ref: ref, owner: self(), target: node}
  end

  @spec cast(node, Call.callable(), timeout) :: :ok
  def cast(node, what, timeout) do
    _ = :erlang.spawn_request(node, Ampule.Remote, :cast, args(what) ++ [timeout], reply: :no)
    :ok
  end

  defp args({m, f, a}), do: [m, f, a]
  defp args(fun) when is_function(fun, 0), do: [fun]

  @doc false
  @spec await(Call.t(), integer | :infinity) :: Call.result()
  def await(%Call{ref: ref} = call, deadline) do
    receive do
      {:spawn_reply, ^ref, :ok, pid} -> await_down(call, pid, deadline)
      {:spawn_reply, ^ref, :error, reason} -> {:error, spawn_error(reason)}
    after
      Call.remaining(deadline) ->
        # The spawn is still in flight: abandoned, the runtime kills the process the moment
        # it is made (reason `abandoned`), so nothing waits for it here.
        if :erlang.spawn_request_abandon(ref) do
          Process.demonitor(ref, [:flush])
          {:error, :timeout}
        else
          # Its reply came meanwhile.
          receive do
            {:spawn_reply, ^ref, :ok, pid} -> kill(call, pid)
            {:spawn_reply, ^ref, :error, _} -> {:error, :timeout}
          end
        end
    end
  end

  defp await_down(%{ref: ref} = call, pid, deadline) do
    receive do
      {:DOWN, ^ref, :process, _, reason} -> result(reason)
    after
      Call.remaining(deadline) -> kill(call, pid)
    end
  end

  # Kills the remote process (an untrappable exit signal: delivered in order after the
  # call itself, once the node is reachable) and waits a moment for it to be gone. A
  # result that arrives meanwhile is still the result.
  defp kill(%{ref: ref}, pid) do
    Process.exit(pid, :kill)

    receive do
      {:DOWN, ^ref, :process, _, {:ampule_result, _, _} = reason} -> result(reason)
      {:DOWN, ^ref, :process, _, {:ampule_result, _, _, _} = reason} -> result(reason)
      {:DOWN, ^ref, :process, _, _} -> {:error, :timeout}
    after
      @confirm ->
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
end
