defmodule Ampule.Call.Dist do
  @moduledoc false
  # Calls to a distribution container. The remote process is spawned with
  # :erlang.spawn_request/5 (monitor, and a spawn reply that carries its pid, so a call
  # that times out can kill it); its result is its exit reason (see Ampule.Remote).
  #
  # A container on another host is called through a relay on that host
  # (Ampule.Call.Relay): the spawn request goes to the relay, whose exit reason wraps the
  # remote process's, and a timeout asks the relay to kill.

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

  @doc "As `async/2`, for a container on `host`: through a relay there."
  @spec async_via(node, node, Call.callable()) :: Call.t()
  def async_via(host, node, what) do
    args = [self(), node, args(what)]
    ref = :erlang.spawn_request(host, Ampule.Call.Relay, :call, args, [:monitor])
    %Call{transport: __MODULE__, ref: ref, owner: self(), target: node, via: host}
  end

  @spec cast(node, Call.callable(), timeout) :: :ok
  def cast(node, what, timeout) do
    _ = :erlang.spawn_request(node, Ampule.Remote, :cast, args(what) ++ [timeout], reply: :no)
    :ok
  end

  @doc "As `cast/3`, for a container on `host`: the host sends it."
  @spec cast_via(node, node, Call.callable(), timeout) :: :ok
  def cast_via(host, node, what, timeout) do
    _ = :erlang.spawn_request(host, __MODULE__, :cast, [node, what, timeout], reply: :no)
    :ok
  end

  defp args({m, f, a}), do: [m, f, a]
  defp args(fun) when is_function(fun, 0), do: [fun]

  @doc false
  @spec await(Call.t(), integer | :infinity) :: Call.result()
  def await(%Call{ref: ref} = call, deadline) do
    receive do
      {:spawn_reply, ^ref, :ok, pid} -> await_down(call, pid, deadline)
      {:spawn_reply, ^ref, :error, reason} -> {:error, spawn_error(call, reason)}
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
      {:DOWN, ^ref, :process, _, reason} -> result(unwrap(call, reason))
    after
      Call.remaining(deadline) -> kill(call, pid)
    end
  end

  # Kills the remote process (an untrappable exit signal: delivered in order after the
  # call itself, once the node is reachable) and waits a moment for it to be gone. A
  # result that arrives meanwhile is still the result. Through a relay, the relay kills
  # it, and ends with its end.
  defp kill(%{ref: ref} = call, pid) do
    if call.via, do: send(pid, :ampule_kill), else: Process.exit(pid, :kill)

    receive do
      {:DOWN, ^ref, :process, _, reason} ->
        case unwrap(call, reason) do
          {:ampule_result, _, _} = result -> result(result)
          {:ampule_result, _, _, _} = result -> result(result)
          _ -> {:error, :timeout}
        end
    after
      @confirm ->
        Process.demonitor(ref, [:flush])
        {:error, :timeout}
    end
  end

  # A relay's exit reason wraps the remote process's; a bare `:noconnection` is the
  # caller's own connection to the host, lost.
  defp unwrap(%{via: nil}, reason), do: reason
  defp unwrap(_call, {:ampule_relay, {:spawn_error, reason}}), do: {:ampule_spawn_error, reason}
  defp unwrap(_call, {:ampule_relay, reason}), do: reason
  defp unwrap(%{via: host}, :noconnection), do: {:host_down, host}
  defp unwrap(_call, reason), do: {:ampule_relay_failed, reason}

  defp result({:ampule_result, :return, value}), do: {:ok, value}

  defp result({:ampule_result, :error, reason, stacktrace}),
    do: {:error, {:exception, Exception.normalize(:error, reason, stacktrace), stacktrace}}

  defp result({:ampule_result, :throw, value, _stacktrace}), do: {:error, {:throw, value}}
  defp result({:ampule_result, :exit, reason, _stacktrace}), do: {:error, {:exit, reason}}
  defp result(:noconnection), do: {:error, :noconnection}
  defp result({:host_down, _} = reason), do: {:error, reason}
  defp result({:ampule_spawn_error, reason}), do: {:error, spawn_error(reason)}
  defp result({:ampule_relay_failed, reason}), do: {:error, {:exit, reason}}
  defp result(reason), do: {:error, {:exit, reason}}

  defp spawn_error(%{via: host}, :noconnection) when host != nil, do: {:host_down, host}
  defp spawn_error(_call, reason), do: spawn_error(reason)

  defp spawn_error(:noconnection), do: :noconnection
  defp spawn_error(reason), do: {:spawn_failed, reason}
end
