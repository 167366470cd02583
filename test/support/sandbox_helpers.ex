defmodule Ampule.SandboxHelpers do
  @moduledoc false
  # Code that runs inside sandboxes in the tests (compiled to disk under _build/test, so
  # a sandbox loads it from the code path Ampule mounts), among it the attacks: code
  # beside the agent can find the agent's socket and write to it as it likes.

  @doc "The agent's socket: the Unix socket connected to /run/ampule/agent.sock (or `path`)."
  def agent_socket do
    Enum.find(:erlang.ports(), fn port ->
      :erlang.port_info(port, :name) == {:name, ~c"tcp_inet"} and
        match?({:ok, {:local, _}}, :inet.peername(port))
    end)
  end

  @doc "The agent's process."
  def agent_pid do
    {:connected, pid} = :erlang.port_info(agent_socket(), :connected)
    pid
  end

  @doc "The agent process's memory, in bytes."
  def agent_memory do
    {:memory, bytes} = Process.info(agent_pid(), :memory)
    bytes
  end

  @doc "Writes a whole frame of garbage (an unknown type)."
  def write_garbage do
    :ok = :gen_tcp.send(agent_socket(), <<99, "garbage">>)
    Process.sleep(:infinity)
  end

  @doc "Writes a result for a call the host never made."
  def forge_result do
    frame = [<<4, 0xFFFFFFFFFFFFFFFF::64, 0>> | :erlang.term_to_binary(:forged)]
    :ok = :gen_tcp.send(agent_socket(), frame)
    Process.sleep(:infinity)
  end

  @doc "Writes a frame header announcing `size` bytes, and some of them."
  def write_oversized(size) do
    socket = agent_socket()
    :ok = :inet.setopts(socket, packet: :raw)
    :ok = :gen_tcp.send(socket, <<size::32, 4, 0::64, 0>>)
    Process.sleep(:infinity)
  end

  @doc """
  Writes the start of a frame (a header for 100 bytes, then 2), then kills the agent, so
  the connection closes in the middle of the frame while the node runs on.
  """
  def write_truncated do
    socket = agent_socket()
    agent = agent_pid()
    :ok = :inet.setopts(socket, packet: :raw)
    :ok = :gen_tcp.send(socket, <<100::32, 4, 0>>)
    Process.exit(agent, :kill)
    Process.sleep(:infinity)
  end

  @doc "Stops the agent from reading or answering: the sandbox falls silent."
  def silence do
    :erlang.suspend_process(agent_pid())
    Process.sleep(:infinity)
  end

  @doc "Writes a result for the call `id` that is not a term."
  def write_bad_term(id) do
    :ok = :gen_tcp.send(agent_socket(), <<4, id::64, 0, 131, 200, 1, 2, 3>>)
    :ok
  end

  @doc """
  Tries to reach the host's node from a sandbox: as it is (not alive), then after starting
  distribution itself (EPMD on its own loopback) with the host's cookie.
  """
  def reach_host(host, cookie) do
    alive = :erlang.is_alive()
    ping = :net_adm.ping(host)
    _ = :os.cmd(~c"epmd -daemon")

    started =
      case :net_kernel.start([:"sandbox_probe@127.0.0.1", :longnames]) do
        {:ok, _} -> :ok
        _ -> :error
      end

    if started == :ok, do: :erlang.set_cookie(host, cookie)
    %{alive: alive, ping: ping, started: started, ping_after: :net_adm.ping(host)}
  end

  @doc "An :erpc call to `node`: `{:ok, result}` or `{:error, description}`."
  def try_erpc(node) do
    {:ok, :erpc.call(node, :erlang, :node, [], 2_000)}
  catch
    kind, reason -> {:error, inspect({kind, reason})}
  end

  @doc "Sends a UDP datagram: `:sent` or `{:error, reason}`."
  def try_udp(ip, port) do
    {:ok, socket} = :gen_udp.open(0)

    try do
      case :gen_udp.send(socket, ip, port, "ampule") do
        :ok -> :sent
        {:error, reason} -> {:error, reason}
      end
    after
      :gen_udp.close(socket)
    end
  end

  @doc "Whether a process is registered as `name` (a pid would not come back from a sandbox)."
  def registered?(name), do: Process.whereis(name) != nil

  @doc "A closure compiled in a module: the sandbox loads the module from its code path."
  def sum_fun(list), do: fn -> Enum.sum(list) end

  @doc "A list of `n` atoms the host has never seen, named after `tag` (a string)."
  def new_atoms(tag, n), do: for(i <- 1..n, do: String.to_atom("sandbox_atom_#{tag}_#{i}"))

  @doc "The helpers below whose results a sandbox must refuse, with the kind refused."
  def refused_results,
    do: [evil_fun: :fun, remote_fun: :fun, a_pid: :pid, a_ref: :reference, a_port: :port]

  @doc "A closure made in the sandbox, which would run `id` wherever it is called."
  def evil_fun, do: fn -> :os.cmd(~c"id") end

  def remote_fun, do: &:os.cmd/1
  def a_pid, do: self()
  def a_ref, do: make_ref()
  def a_port, do: hd(:erlang.ports())

  @doc "A binary of `n` bytes."
  def big(n), do: :binary.copy(<<7>>, n)

  @doc "`n` empty lists in a list: n bytes on the wire, 16 n on the heap."
  def wide(n), do: List.duplicate([], n)

  @doc "Prints to standard output and standard error."
  def print(text) do
    IO.puts(text)
    IO.puts(:stderr, text)
    :ok
  end

  @doc "Tells the channel test it was called (it must never be)."
  def record(reason, stacktrace) do
    send(:sandbox_channel_test_recorder, {:recorded, reason, stacktrace})
    %{}
  end
end
