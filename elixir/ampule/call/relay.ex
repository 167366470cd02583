defmodule Ampule.Call.Relay do
  @moduledoc false
  # A call to a distribution container on another host, run on that host: the caller's
  # node has no route to the container's node (it sits on the host's own bridge, behind
  # the host's firewall), the host's node has one.
  #
  #   caller --spawn_request--> relay (on the host) --spawn_request--> Ampule.Remote (in
  #   the container)
  #
  # The relay's exit reason is `{:ampule_relay, reason}`, `reason` being the remote
  # process's (its result, see Ampule.Remote): wrapped, so that the caller tells it from
  # its own connection to the host going down (a bare `:noconnection`). It kills the
  # remote process when the caller asks (`:ampule_kill`, on a timeout; it answers with the
  # process's end) or exits; the remote process's watcher kills it too if the relay goes.

  # How long a killed process has to be confirmed dead.
  @grace 5_000

  @doc "Spawned on the host by Ampule.Call.Dist.async_via/3."
  def call(caller, node, args) do
    caller_ref = Process.monitor(caller)
    ref = :erlang.spawn_request(node, Ampule.Remote, :call, [self() | args], [:monitor])

    receive do
      {:spawn_reply, ^ref, :ok, pid} -> run(ref, pid, caller_ref)
      {:spawn_reply, ^ref, :error, reason} -> exit({:ampule_relay, {:spawn_error, reason}})
    end
  end

  defp run(ref, pid, caller_ref) do
    receive do
      {:DOWN, ^ref, :process, _, reason} ->
        exit({:ampule_relay, reason})

      :ampule_kill ->
        Process.exit(pid, :kill)

        receive do
          {:DOWN, ^ref, :process, _, reason} -> exit({:ampule_relay, reason})
        after
          @grace -> exit({:ampule_relay, :killed})
        end

      {:DOWN, ^caller_ref, :process, _, _} ->
        Process.exit(pid, :kill)
    end
  end
end
