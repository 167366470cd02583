defmodule Ampule.Sandbox.Channel do
  @moduledoc false
  # One per sandbox: owns the Unix socket its agent connects to (docs/protocol.md, "The
  # agent channel (sandboxes)"), first listening, then the one accepted connection.
  #
  # - Boot: an acceptor process accepts one connection within the boot deadline, checks
  #   the peer's uid (SO_PEERCRED: the sandbox's node uid) and reads the hello; then the
  #   listening socket is closed, so nothing else ever connects.
  # - Calls: a caller (Ampule.Call.Sandbox) sends `{:ampule_call, ref, id, pid, frame}`;
  #   this process writes the frame and routes the answer for `id` to `ref` (the alias of
  #   the caller's monitor on this process). It reads one frame at a time (`active: :once`)
  #   and bounds what the next frame may take (`packet_size`), so a frame over the bound
  #   is refused before it is buffered. With no call waiting, the socket reads raw bytes:
  #   nothing may come then, and any byte, a whole frame or the start of one, ends the
  #   sandbox at once (the host holds no bytes a sandbox sent unasked, not even a partial
  #   header). With calls waiting, frames of up to 64 KiB (eager); a larger result is
  #   announced with its size, and
  #   asked for (`go`) once it holds that many bytes of the host's result budget
  #   (Ampule.Sandbox.Budget), which it gives back once the frame is the caller's (who
  #   takes as many again to decode it).
  #   It parses frame headers with binary patterns only: the terms are decoded by the
  #   caller, in a throwaway process (Ampule.Sandbox.Decode).
  # - Output (a call made with `output:`, see Ampule.Call.Sandbox): the agent sends what
  #   the call prints as output frames, at most a window (Frame.window/0) ahead of this
  #   process's acknowledgements. Captured bytes go to the caller's alias at once and are
  #   acknowledged; streamed bytes go to the receiver as its `:active` mode allows
  #   (Ampule.Port.Console's flow, as a console's) and are acknowledged once sent, so a
  #   receiver that stops taking them stops the printer after one window, and this
  #   process never holds more than that per call. Bytes over the window or over the
  #   call's `max_output`, or for a call that did not ask for output, are violations.
  #   When the call is answered, streamed bytes still held go to the receiver first
  #   (at most a window), then the answer goes to the caller.
  # - Killing: on a caller's timeout or exit it writes a kill frame; the agent answers
  #   every call exactly once, so a kill not answered within 5 s is a broken sandbox.
  # - Ending: it stops when the sandbox ends (Ampule.Port tells it: `:ampule_sandbox_exit`);
  #   callers see why through their monitor (`{:shutdown, :oom}`, `{:shutdown,
  #   :noconnection}`). When the sandbox breaks the protocol, it has Ampule.Port destroy
  #   the sandbox first (`Port.sandbox_broken/3`), then stops with `{:shutdown, {:protocol,
  #   detail}}`. Ampule.Port monitors it: a channel that dies otherwise takes its sandbox
  #   with it.

  use GenServer, restart: :temporary
  require Logger

  alias Ampule.Port.Console
  alias Ampule.Sandbox.{Budget, Frame}

  # After the connection closes, how long to wait for the port's exit event before the
  # close counts as the agent's doing (a sandbox that halts or is killed closes it first).
  @closed_wait 3_000
  # How long the agent has to answer a kill.
  @kill_grace 5_000
  # How long a write may wait for a sandbox that does not read.
  @send_timeout 10_000
  # How long a call of a caller on another node runs before that caller is monitored.
  @watch_after 2

  ## API

  @doc """
  Starts a channel listening at `opts[:path]`. Options: `:path`, `:max` (result limit,
  bytes), `:boot_timeout` (ms), `:uid` (the peer's expected uid, or nil), `:starter` (the
  process booting the sandbox: the channel stops if it dies before the agent's hello),
  `:port` (the Ampule.Port server).
  """
  def start(opts) do
    DynamicSupervisor.start_child(Ampule.SandboxSupervisor, {__MODULE__, opts})
  end

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)

  @doc """
  Waits for the agent's hello. `:ok`, or `{:error, reason}`: `:timeout`, `{:protocol,
  detail}`, `{:exited, status, info}` (the sandbox ended first).
  """
  def await_ready(channel, name, timeout) do
    GenServer.call(channel, {:await_ready, name}, timeout)
  catch
    :exit, {:timeout, _} -> {:error, :timeout}
    :exit, _ -> {:error, {:protocol, :closed}}
  end

  @doc "Stops a channel (after a failed boot); the sandbox is the caller's to destroy."
  def stop(channel) do
    GenServer.stop(channel, :normal, 5_000)
  catch
    :exit, _ -> :ok
  end

  ## Server

  @impl GenServer
  def init(opts) do
    path = Keyword.fetch!(opts, :path)
    max = Keyword.fetch!(opts, :max)

    listen_opts = [
      :local,
      :binary,
      ifaddr: {:local, path},
      packet: 4,
      packet_size: Frame.header_size(),
      active: false,
      exit_on_close: false,
      send_timeout: @send_timeout,
      send_timeout_close: true
    ]

    case :gen_tcp.listen(0, listen_opts) do
      {:ok, listen} ->
        port = Keyword.get(opts, :port, Ampule.Port)
        channel = self()
        deadline = System.monotonic_time(:millisecond) + Keyword.fetch!(opts, :boot_timeout)
        uid = Keyword.get(opts, :uid)
        acceptor = spawn_link(fn -> accept(channel, listen, deadline, uid) end)

        starter =
          case Keyword.get(opts, :starter) do
            pid when is_pid(pid) -> Process.monitor(pid)
            nil -> nil
          end

        port_ref =
          case GenServer.whereis(port) do
            pid when is_pid(pid) -> Process.monitor(pid)
            nil -> nil
          end

        {:ok,
         %{
           path: path,
           port: port,
           port_ref: port_ref,
           name: nil,
           listen: listen,
           acceptor: acceptor,
           starter: starter,
           boot: :waiting,
           waiting: nil,
           socket: nil,
           closed: false,
           exit: nil,
           max: max,
           frame_bound: :raw,
           pending: %{},
           callers: %{},
           # Large results: announced (id => size), granted and waiting for their turn,
           # and the one being sent ({id, size}).
           announced: %{},
           granted: :queue.new(),
           sending: nil,
           # Calls whose output comes here: id => %{capture?, stream, handle, flow,
           # total, unacked, max}.
           outputs: %{},
           # Monitors of stream receivers: monitor => id.
           streams: %{}
         }}

      {:error, reason} ->
        {:stop, {:listen, reason}}
    end
  end

  @impl GenServer
  def handle_call({:await_ready, name}, from, state) do
    state = %{state | name: name}

    case state.boot do
      :waiting -> {:noreply, %{state | waiting: from}}
      :ready -> {:reply, :ok, state}
      {:failed, reason} -> {:reply, {:error, reason}, state}
    end
  end

  @impl GenServer
  def handle_info({:ampule_call, ref, id, caller, frame}, state),
    do: handle_info({:ampule_call, ref, id, caller, frame, nil}, state)

  def handle_info({:ampule_call, ref, id, caller, frame, output}, %{socket: socket} = state)
      when socket != nil and not state.closed do
    state = bound_next_frame(%{state | pending: Map.put(state.pending, id, {ref, nil})})
    state = if output, do: watch_output(id, output, state), else: state

    if node(caller) == node() do
      monitor = Process.monitor(caller)
      state = %{state | pending: Map.put(state.pending, id, {ref, monitor})}
      send_frame(frame, %{state | callers: Map.put(state.callers, monitor, id)})
    else
      # A caller on another node is monitored only if its call takes a while (a monitor
      # costs a signal each way over distribution, see Ampule.Call.Sandbox); one that has
      # exited by then is seen at once.
      Process.send_after(self(), {:watch_caller, id, caller}, @watch_after)
      send_frame(frame, %{state | pending: Map.put(state.pending, id, {ref, nil})})
    end
  end

  def handle_info({:watch_caller, id, caller}, state) do
    case state.pending do
      %{^id => {ref, nil}} when ref != nil ->
        monitor = Process.monitor(caller)
        pending = Map.put(state.pending, id, {ref, monitor})
        {:noreply, %{state | pending: pending, callers: Map.put(state.callers, monitor, id)}}

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:ampule_call, _ref, _id, _caller, _frame, _output}, state) do
    # Not connected (yet, or any more): the caller's monitor on this process tells it why
    # once this process stops.
    {:noreply, state}
  end

  def handle_info({:ampule_cast, frame}, %{socket: socket} = state)
      when socket != nil and not state.closed,
      do: send_frame(frame, state)

  def handle_info({:ampule_kill, id}, state), do: kill(id, state)

  def handle_info({:ampule_output_active, id, mode}, state) do
    case state.outputs do
      %{^id => %{stream: stream} = out} when stream != nil ->
        {outs, flow} = Console.set_active(out.flow, mode)
        ack(id, stream_out(outs, out), %{out | flow: flow}, state)

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:ampule_violation, detail}, state), do: violation(detail, state)

  # With no call waiting, the socket is raw (see the module's comment): any byte is a
  # violation.
  def handle_info({:tcp, socket, _data}, %{socket: socket, frame_bound: :raw} = state),
    do: violation(:unexpected_frame, state)

  def handle_info({:tcp, socket, data}, %{socket: socket} = state) do
    case Frame.parse(data) do
      {:result, id, outcome, term} -> route(id, {:result, outcome, term}, state)
      {:too_large, id, size} -> route(id, {:too_large, size}, state)
      {:ready, id, size} -> announced(id, size, state)
      {:output, id, data} -> output(id, data, state)
      {:output_limit, id} -> output_limit(id, state)
      {:error, detail} -> violation(detail, state)
    end
  end

  def handle_info({:tcp_error, socket, :emsgsize}, %{socket: socket} = state),
    do: violation(:frame_too_large, state)

  def handle_info({:ampule_budget, id}, state) do
    if Map.has_key?(state.announced, id) and Map.has_key?(state.pending, id) do
      state = %{state | granted: :queue.in(id, state.granted)}
      if state.sending, do: {:noreply, state}, else: send_next(state)
    else
      Budget.release(id)
      {:noreply, state}
    end
  end

  def handle_info({:ampule_budget_refused, id}, state) do
    # Larger than the whole budget: it can never be read. The caller is told now; the
    # call is killed, and the agent's answer to the kill goes nowhere.
    case {Map.pop(state.announced, id), state.pending} do
      {{size, announced}, %{^id => {ref, monitor}}} ->
        if ref, do: send(ref, {ref, {:budget_refused, size}})
        if monitor, do: Process.demonitor(monitor, [:flush])

        state = %{
          state
          | announced: announced,
            pending: Map.put(state.pending, id, {nil, nil}),
            callers: Map.delete(state.callers, monitor)
        }

        kill(id, state)

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:tcp_error, socket, _reason}, %{socket: socket} = state), do: closed(state)
  def handle_info({:tcp_closed, socket}, %{socket: socket} = state), do: closed(state)

  def handle_info(:closed_wait, state), do: violation(:closed, state)

  def handle_info({:kill_deadline, id}, state) do
    if Map.has_key?(state.pending, id),
      do: violation(:unresponsive, state),
      else: {:noreply, state}
  end

  def handle_info({:accepted, _acceptor, {:ok, socket}}, state) do
    :gen_tcp.close(state.listen)
    :ok = :inet.setopts(socket, packet: :raw, active: :once)
    if state.starter, do: Process.demonitor(state.starter, [:flush])
    if state.waiting, do: GenServer.reply(state.waiting, :ok)
    {:noreply, %{state | socket: socket, boot: :ready, waiting: nil, starter: nil, listen: nil}}
  end

  def handle_info({:accepted, _acceptor, {:error, :closed}}, state) do
    # The agent went away before its hello: the sandbox may be ending (the port's exit
    # event says with what), or its code closed the connection.
    :gen_tcp.close(state.listen)
    Process.send_after(self(), :closed_wait, @closed_wait)
    {:noreply, %{state | listen: nil, closed: true}}
  end

  def handle_info({:accepted, _acceptor, {:error, reason}}, state) do
    :gen_tcp.close(state.listen)
    boot_failed(reason, %{state | listen: nil})
  end

  def handle_info({:ampule_sandbox_exit, status, info}, %{boot: :waiting} = state),
    do: boot_failed({:exited, status, info}, state)

  def handle_info({:ampule_sandbox_exit, status, _info}, state),
    do: {:stop, {:shutdown, exit_reason(status)}, state}

  def handle_info({:DOWN, ref, :process, _pid, _reason}, %{port_ref: ref} = state),
    do: {:stop, {:shutdown, :noconnection}, state}

  def handle_info({:DOWN, ref, :process, _pid, _reason}, %{starter: ref} = state),
    do: {:stop, :normal, state}

  def handle_info({:DOWN, monitor, :process, _pid, _reason}, state)
      when is_map_key(state.streams, monitor) do
    # A stream's receiver exited: the rest of that output is discarded (acknowledged as it
    # comes, as a console's without an owner); the call runs on.
    {id, streams} = Map.pop(state.streams, monitor)
    state = %{state | streams: streams}

    case state.outputs do
      %{^id => out} ->
        {_count, held} = Console.waiting(out.flow)
        ack(id, held, %{out | stream: nil, flow: Console.new(false)}, state)

      _ ->
        {:noreply, state}
    end
  end

  def handle_info({:DOWN, monitor, :process, _pid, _reason}, state) do
    # A caller exited with its call in flight: kill the call; its answer goes nowhere.
    case Map.pop(state.callers, monitor) do
      {nil, _} ->
        {:noreply, state}

      {id, callers} ->
        pending = Map.put(state.pending, id, {nil, nil})
        kill(id, %{state | callers: callers, pending: pending})
    end
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl GenServer
  def terminate(_reason, state) do
    # The port removes the socket with the sandbox; a channel that never got that far
    # (or a port that never took the path) must not leave it.
    _ = File.rm(state.path)
    :ok
  end

  ## Calls

  defp route(id, answer, state) do
    case Map.pop(state.pending, id) do
      {nil, _} ->
        violation(:unexpected_id, state)

      {{ref, monitor}, pending} ->
        if monitor, do: Process.demonitor(monitor, [:flush])
        {out, outputs} = Map.pop(state.outputs, id)
        streams = if out, do: flush_stream(out, state.streams), else: state.streams
        if ref, do: send(ref, {ref, answer})
        # A large result's bytes are the caller's now (it counts them again to decode).
        {budgeted, announced} = Map.pop(state.announced, id)
        if budgeted, do: Budget.release(id)

        state = %{
          state
          | pending: pending,
            outputs: outputs,
            streams: streams,
            callers: Map.delete(state.callers, monitor),
            announced: announced,
            granted: :queue.filter(&(&1 != id), state.granted),
            sending: if(match?({^id, _}, state.sending), do: nil, else: state.sending)
        }

        if state.sending == nil and not :queue.is_empty(state.granted),
          do: send_next(state),
          else: {:noreply, rearm(state)}
    end
  end

  ## Output

  defp watch_output(id, output, state) do
    monitor = if output.stream, do: Process.monitor(output.stream)

    out = %{
      capture?: output.capture?,
      stream: output.stream,
      monitor: monitor,
      handle: output.handle,
      flow: Console.new(output.active),
      total: 0,
      unacked: 0,
      max: output.max
    }

    streams = if monitor, do: Map.put(state.streams, monitor, id), else: state.streams
    %{state | outputs: Map.put(state.outputs, id, out), streams: streams}
  end

  # Output of call `id`, from the agent (untrusted: see the module's comment).
  defp output(id, data, state) do
    size = byte_size(data)

    case {state.pending, state.outputs} do
      {%{^id => {ref, _monitor}}, %{^id => out}} ->
        cond do
          out.total + size > out.max ->
            violation(:output_too_large, state)

          out.unacked + size > Frame.window() ->
            violation(:output_window, state)

          true ->
            out = %{out | total: out.total + size, unacked: out.unacked + size}
            if ref && out.capture?, do: send(ref, {ref, {:output, data}})

            cond do
              # Abandoned (its caller gone): nobody takes it.
              ref == nil ->
                ack(id, size, %{out | stream: nil}, state)

              out.stream ->
                {outs, flow} = Console.push(out.flow, data)
                ack(id, stream_out(outs, out), %{out | flow: flow}, state)

              true ->
                ack(id, size, out, state)
            end
        end

      {%{^id => _}, _} ->
        violation(:unexpected_output, state)

      _ ->
        violation(:unexpected_id, state)
    end
  end

  defp output_limit(id, state) do
    case state.outputs do
      %{^id => out} -> route(id, {:output_limit, out.max}, state)
      _ -> violation(:unexpected_id, state)
    end
  end

  # Acknowledges `bytes` of call `id`'s output to the agent (the socket stays as it is:
  # a frame read is re-armed here).
  defp ack(id, bytes, out, state) do
    state = %{state | outputs: Map.put(state.outputs, id, %{out | unacked: out.unacked - bytes})}

    if bytes > 0 do
      case send_frame(Frame.ack(id, bytes), state) do
        {:noreply, state} -> {:noreply, rearm(state)}
        stop -> stop
      end
    else
      {:noreply, rearm(state)}
    end
  end

  defp stream_out(outs, %{stream: stream, handle: handle}) do
    for out <- outs do
      case out do
        {:data, data} -> send(stream, {:ampule_output, handle, data})
        :passive -> send(stream, {:ampule_output_passive, handle})
      end
    end

    Console.bytes(outs)
  end

  # The call is answered: what its receiver has not taken yet goes now (at most a window).
  defp flush_stream(%{stream: stream, flow: flow, handle: handle} = out, streams) do
    if stream do
      {outs, _flow} = Console.set_active(flow, true)
      for {:data, data} <- outs, do: send(stream, {:ampule_output, handle, data})
    end

    if out.monitor do
      Process.demonitor(out.monitor, [:flush])
      Map.delete(streams, out.monitor)
    else
      streams
    end
  end

  # A result over the eager size: within the limit, for a call waiting, announced once.
  defp announced(id, size, state) do
    cond do
      not Map.has_key?(state.pending, id) or Map.has_key?(state.announced, id) ->
        violation(:unexpected_id, state)

      size > state.max + Frame.header_size() or size <= Frame.eager() ->
        violation(:frame_too_large, state)

      true ->
        Budget.request(id, size)
        {:noreply, rearm(%{state | announced: Map.put(state.announced, id, size)})}
    end
  end

  # Asks the agent for the next granted result, with the socket bounded to its size.
  defp send_next(state) do
    {{:value, id}, granted} = :queue.out(state.granted)
    size = Map.fetch!(state.announced, id)
    state = %{state | granted: granted, sending: {id, size}}
    send_frame(Frame.go(id), bound_next_frame(state))
  end

  # The most the next frame may take (see the module's comment): raw while no call waits.
  defp frame_bound(%{sending: {_id, size}}), do: size
  defp frame_bound(%{pending: pending}) when map_size(pending) > 0, do: Frame.eager()
  defp frame_bound(_state), do: :raw

  defp bound_next_frame(state) do
    case frame_bound(state) do
      same when same == state.frame_bound ->
        state

      :raw ->
        :ok = :inet.setopts(state.socket, packet: :raw)
        %{state | frame_bound: :raw}

      size ->
        :ok = :inet.setopts(state.socket, packet: 4, packet_size: size)
        %{state | frame_bound: size}
    end
  end

  defp rearm(state) do
    state = bound_next_frame(state)
    :ok = :inet.setopts(state.socket, active: :once)
    state
  end

  defp kill(id, state) do
    if Map.has_key?(state.pending, id) and state.socket != nil and not state.closed do
      Process.send_after(self(), {:kill_deadline, id}, @kill_grace)
      send_frame(Frame.kill(id), state)
    else
      {:noreply, state}
    end
  end

  # `packet` applies to writes too: a raw socket (no call waiting: a cast) gets the length
  # written here.
  defp send_frame(frame, %{frame_bound: :raw} = state),
    do: write([<<IO.iodata_length(frame)::32>> | frame], state)

  defp send_frame(frame, state), do: write(frame, state)

  defp write(frame, state) do
    case :gen_tcp.send(state.socket, frame) do
      :ok -> {:noreply, state}
      {:error, :timeout} -> violation(:unresponsive, state)
      {:error, _closed} -> closed(state)
    end
  end

  ## Endings

  defp closed(%{closed: true} = state), do: {:noreply, state}

  defp closed(state) do
    Process.send_after(self(), :closed_wait, @closed_wait)
    {:noreply, %{state | closed: true}}
  end

  defp boot_failed(reason, state) do
    # Kept until the one booting the sandbox takes it (and then stops this process, after
    # it has read the sandbox's log and destroyed it).
    if state.waiting, do: GenServer.reply(state.waiting, {:error, reason})
    {:noreply, %{state | boot: {:failed, reason}, waiting: nil}}
  end

  defp violation(detail, %{boot: :waiting} = state) do
    boot_failed({:protocol, detail}, state)
  end

  # The boot failed already, for a reason of its own: that one stands.
  defp violation(_detail, %{boot: {:failed, _}} = state), do: {:noreply, state}

  defp violation(detail, state) do
    Logger.warning(
      "sandbox #{state.name} broke the agent channel (#{inspect(detail)}); destroying it",
      container: state.name
    )

    # The sandbox first: closing the socket first would let the agent halt the node.
    if state.name, do: Ampule.Port.sandbox_broken(state.port, state.name, {:protocol, detail})
    if state.socket, do: :gen_tcp.close(state.socket)
    {:stop, {:shutdown, {:protocol, detail}}, %{state | socket: nil}}
  end

  defp exit_reason(:oom), do: :oom
  defp exit_reason(_status), do: :noconnection

  ## The acceptor

  # Accepts the one connection, checks who made it, reads the hello, and hands the socket
  # over; all within the boot deadline.
  defp accept(channel, listen, deadline, uid) do
    result =
      with {:ok, socket} <- :gen_tcp.accept(listen, remaining(deadline)),
           :ok <- check_peer(socket, uid),
           {:ok, hello} <- recv_hello(socket, deadline) do
        if hello == Frame.hello() do
          :ok = :gen_tcp.controlling_process(socket, channel)
          {:ok, socket}
        else
          {:error, {:protocol, :bad_hello}}
        end
      end

    send(channel, {:accepted, self(), result})
  end

  defp recv_hello(socket, deadline) do
    case :gen_tcp.recv(socket, 0, remaining(deadline)) do
      {:ok, hello} -> {:ok, hello}
      {:error, :emsgsize} -> {:error, {:protocol, :frame_too_large}}
      {:error, :timeout} -> {:error, :timeout}
      {:error, _} -> {:error, :closed}
    end
  end

  # SO_PEERCRED (SOL_SOCKET 1, option 17): struct ucred {pid, uid, gid}, each 32 bits.
  defp check_peer(_socket, nil), do: :ok

  defp check_peer(socket, uid) do
    case :inet.getopts(socket, [{:raw, 1, 17, 12}]) do
      {:ok, [{:raw, 1, 17, <<_pid::32-native, ^uid::32-native, _gid::32-native>>}]} -> :ok
      _ -> {:error, {:protocol, :peer}}
    end
  end

  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)
end
