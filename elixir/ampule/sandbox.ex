defmodule Ampule.Sandbox do
  @moduledoc false
  # Booting a sandbox (docs/protocol.md, "`{spawn, #{sandbox => ...}}`"):
  #
  #   1. a channel (Ampule.Sandbox.Channel) listens on a fresh socket in the port's
  #      `agents_dir`;
  #   2. the port spawns the container with `sandbox => #{socket => Path}`, which it
  #      bind-mounts at /run/ampule/agent.sock; it answers once the init runs;
  #   3. the agent connects and says hello, within what is left of the boot timeout.
  #
  # Distribution is never started for a sandbox: the host needs none.

  alias Ampule.{Container, Port}
  alias Ampule.Sandbox.Channel

  @doc "Boots a sandbox; `request` is the port's spawn map (see Ampule.Options)."
  @spec start(pid | nil, map, pos_integer) :: {:ok, Container.t()} | {:error, Ampule.reason()}
  def start(owner, request, max) do
    started = System.monotonic_time(:millisecond)

    with {:ok, hello} <- Port.hello(),
         {:ok, dir} <- agents_dir(hello),
         path = Path.join(dir, "#{System.unique_integer([:positive])}.sock"),
         {:ok, channel} <-
           Channel.start(
             path: path,
             max: max,
             boot_timeout: request.boot_timeout,
             uid: node_uid(hello),
             starter: self()
           ) do
      request = Map.put(request, :sandbox, %{socket: path})

      case Port.spawn_sandbox(request, owner, %{channel: channel, max_result: max}) do
        {:ok, container} ->
          left = request.boot_timeout - (System.monotonic_time(:millisecond) - started)
          # The channel's acceptor keeps the boot deadline; the margin only guards the call.
          ready(container, Channel.await_ready(channel, container.name, max(left, 0) + 5_000))

        {:error, reason} ->
          Channel.stop(channel)
          {:error, reason}
      end
    else
      {:error, {:listen, reason}} -> {:error, {:agent_socket, reason}}
      {:error, reason} -> {:error, reason}
    end
  end

  defp ready(container, :ok), do: {:ok, container}

  defp ready(%Container{name: name, channel: channel}, {:error, reason}) do
    reason =
      case reason do
        :timeout -> {:boot_timeout, :agent, log_tail(name, %{})}
        {:exited, status, info} -> {:boot_failed, status, log_tail(name, info)}
        {:protocol, _} = reason -> reason
      end

    _ = Port.destroy(name)
    Channel.stop(channel)
    {:error, reason}
  end

  # What the node printed: the exit event may carry it (the sandbox is gone by then),
  # else the port reads it from the container, which must not be destroyed yet.
  defp log_tail(_name, %{log_tail: tail}) when is_binary(tail), do: tail

  defp log_tail(name, _info) do
    case Port.request({:log_tail, name}) do
      {:ok, tail} when is_binary(tail) -> tail
      _ -> ""
    end
  end

  defp agents_dir(%{agents_dir: dir}) when is_binary(dir), do: {:ok, dir}
  defp agents_dir(_hello), do: {:error, :sandbox_unsupported}

  # The uid the agent's connection must come from: the node's uid 1000 inside, mapped
  # from the start of root's range in /etc/subuid (the port maps that range). The port
  # may say so itself (`node_uid` in its hello); nil skips the check.
  @doc false
  def node_uid(%{node_uid: uid}) when is_integer(uid), do: uid

  def node_uid(_hello) do
    with {:ok, text} <- File.read("/etc/subuid"),
         [start | _] <-
           for(
             line <- String.split(text, "\n"),
             [user, start, _count] <- [String.split(line, ":")],
             user in ["root", "0"],
             {start, ""} <- [Integer.parse(start)],
             do: start
           ) do
      start + 1000
    else
      _ -> nil
    end
  end
end
