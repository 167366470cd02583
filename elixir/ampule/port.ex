defmodule Ampule.Port do
  @moduledoc false
  # The GenServer that owns the `ampule_port` program (docs/protocol.md).
  #
  # - Opens the port ({packet, 4}, fds 3/4) and waits for the hello event; refuses a
  #   protocol version it does not know. Requests that arrive before the hello wait for it.
  # - Tags every request with an integer and routes each reply to its caller: requests run
  #   concurrently in the port, replies come in any order.
  # - Knows which process owns each container: it monitors the owner and destroys the
  #   owner's containers when it exits (also when it exits while its spawn is in flight).
  # - Forwards `log` events to Logger with the container's name as `:container` metadata,
  #   and `exit` events to the container's owner as `{:ampule_exit, container, status}`.
  # - A sandbox has a channel process (Ampule.Sandbox.Channel) that carries its calls.
  #   This process monitors it, and tells it when the sandbox ends (exit event, destroy,
  #   owner exit, port exit: `{:ampule_sandbox_exit, status, info}`), so that its pending
  #   calls fail at once. A channel that dies takes its sandbox with it; one that finds the
  #   sandbox broke the protocol has it destroyed through `sandbox_broken/3`.
  # - Hands a system container's console output to its owner under the owner's `:active`
  #   mode (see "Console flow control" in Ampule's docs), and acknowledges a chunk to the
  #   port only when the owner has been sent it. While the owner is passive, chunks wait
  #   here unacknowledged, so the port stops reading after its window (256 KiB): this
  #   buffer is bounded by that window and the owner's mailbox by its count.
  # - If the port program dies after the hello, every pending caller gets
  #   `{:error, :port_exited}` at once and this process stops, so its supervisor starts a
  #   new port (which removes whatever the dead one left behind before its hello).
  #   If it dies before the hello (the host is not ready), the reason is kept and given to
  #   callers, and the next request tries again: nothing crash-loops.

  use GenServer
  require Logger

  alias Ampule.{Container, Protocol}

  @hello_timeout 60_000
  # The most console bytes the port sends in one event (one read).
  @chunk 16 * 1024
  # Added to a spawn's boot timeout for the GenServer.call: the port answers by itself
  # within the boot timeout, this only guards against a port that never answers.
  @call_margin 60_000

  ## Client API

  def start_link(opts \\ []) do
    {name, opts} = Keyword.pop(opts, :name, __MODULE__)
    # The host's Ampule.Port tells Ampule.Cluster its load; another one (a test's) does not.
    opts = Keyword.put_new(opts, :cluster, if(name == __MODULE__, do: Ampule.Cluster))
    GenServer.start_link(__MODULE__, opts, name: name)
  end

  @doc "The path of the port program: `AMPULE_PORT_PATH`, `config :ampule, :port_path`, or priv/."
  @spec executable() :: String.t()
  def executable do
    System.get_env("AMPULE_PORT_PATH") || Application.get_env(:ampule, :port_path) ||
      Application.app_dir(:ampule, "priv/ampule_port")
  end

  @doc "Waits for the port's hello and returns it."
  def hello(server \\ __MODULE__), do: call(server, :hello, @hello_timeout + 5_000)

  @doc """
  Spawns a container owned by `owner` (a pid or nil). `request` is the port's option map;
  a sandbox comes with `%{channel: pid, max_result: bytes}`; this process monitors the
  channel from the reply on.
  """
  def spawn(server \\ __MODULE__, request, owner) when is_map(request),
    do: spawn_sandbox(server, request, owner, nil)

  def spawn_sandbox(server \\ __MODULE__, request, owner, sandbox) when is_map(request) do
    timeout = Map.get(request, :boot_timeout, 15_000) + @hello_timeout + @call_margin
    call(server, {:spawn, request, owner, sandbox}, timeout)
  end

  @doc """
  Destroys sandbox `name`, which broke the agent protocol, and tells its owner
  `{:ampule_exit, container, reason}`. Returns once its node is dead.
  """
  def sandbox_broken(server \\ __MODULE__, name, reason),
    do: call(server, {:sandbox_broken, name, reason}, 60_000)

  @doc """
  Creates a system container whose console output goes to `owner`, under `active`
  (`true`, `false`, `:once` or a count).
  """
  def create(server \\ __MODULE__, request, owner, progress_to, active, timeout)
      when is_map(request),
      do: call(server, {:create, request, owner, progress_to, active}, timeout)

  @doc """
  Sets how a system container's console output reaches its owner, as `:inet.setopts/2`
  sets `:active`: `true`, `false`, `:once`, or an integer added to the count.
  """
  def console_active(server \\ __MODULE__, name, active),
    do: call(server, {:console_active, name, active}, 5_000)

  @doc "Destroys a container by name."
  def destroy(server \\ __MODULE__, name), do: call(server, {:destroy, name}, 60_000)

  @doc "Sends any request of the protocol and returns its result."
  def request(server \\ __MODULE__, request, timeout \\ 60_000),
    do: call(server, {:request, request}, timeout)

  @doc "The OS pid of the port program (or of sudo), or nil."
  def os_pid(server \\ __MODULE__), do: call(server, :os_pid, 5_000)

  defp call(server, message, timeout) do
    GenServer.call(server, message, timeout)
  catch
    :exit, {reason, {GenServer, :call, _}} when reason in [:noproc, :normal, :shutdown] ->
      {:error, :not_running}

    :exit, {{:shutdown, _}, {GenServer, :call, _}} ->
      {:error, :port_exited}
  end

  ## Server

  @impl GenServer
  def init(opts) do
    Process.flag(:trap_exit, true)

    state = %{
      opts: opts,
      port: nil,
      os_pid: nil,
      status: {:down, :not_started},
      fatal: nil,
      hello: nil,
      hello_timer: nil,
      next_tag: 1,
      pending: %{},
      queue: [],
      containers: %{},
      systems: %{},
      progress: %{},
      monitors: %{},
      cluster: Keyword.get(opts, :cluster),
      reported: 0
    }

    # The port program starts on first use: a BEAM that has Ampule as a dependency but
    # makes no container never runs a root program. After a crash of the port (this
    # process is restarted), it starts at once: the new port's sweep removes what the dead
    # one left running.
    if :persistent_term.get({__MODULE__, :opened}, false),
      do: {:ok, state, {:continue, :open}},
      else: {:ok, state}
  end

  @impl GenServer
  def handle_continue(:open, state), do: {:noreply, open(state)}

  # Every message may change how many containers this port holds: Ampule.Cluster hears
  # the count when it changes.
  @impl GenServer
  def handle_call(message, from, state), do: message |> on_call(from, state) |> report_load()

  @impl GenServer
  def handle_info(message, state), do: message |> on_info(state) |> report_load()

  defp on_call(:os_pid, _from, state), do: {:reply, state.os_pid, state}

  # Not a request to the port: the owners' console modes live here.
  defp on_call({:console_active, name, active}, _from, state) do
    case Map.fetch(state.systems, name) do
      {:ok, system} ->
        {system, acked} = system |> set_active(active) |> deliver()
        state = %{state | systems: Map.put(state.systems, name, system)}
        {:reply, :ok, ack(name, acked, state)}

      :error ->
        {:reply, {:error, :not_found}, state}
    end
  end

  defp on_call(message, from, %{status: :ready} = state) do
    {:noreply, dispatch(message, from, state)}
  end

  defp on_call(message, from, %{status: :starting} = state) do
    {:noreply, %{state | queue: [{message, from} | state.queue]}}
  end

  defp on_call(message, from, %{status: {:down, _}} = state) do
    # Not running (never started, or the host was not ready): try again now.
    case open(state) do
      %{status: {:down, reason}} = state -> {:reply, {:error, reason}, state}
      state -> on_call(message, from, state)
    end
  end

  defp on_info({port, {:data, frame}}, %{port: port} = state) do
    case Protocol.decode(frame) do
      {:ok, term} ->
        {:noreply, handle_frame(term, state)}

      {:error, :bad_term} ->
        Logger.error("ampule_port sent a frame that is not a term: #{inspect(frame, limit: 50)}")
        {:noreply, state}
    end
  end

  defp on_info({port, {:exit_status, status}}, %{port: port} = state) do
    port_exited(status, state)
  end

  defp on_info({:EXIT, port, reason}, %{port: port} = state) do
    port_exited(reason, state)
  end

  defp on_info({:EXIT, _other, _reason}, state), do: {:noreply, state}

  defp on_info(:hello_timeout, %{status: :starting} = state) do
    Logger.error("ampule_port did not say hello within #{@hello_timeout} ms; closing it")
    safe_close(state.port)
    {:noreply, down(%{state | port: nil, os_pid: nil}, :hello_timeout)}
  end

  defp on_info(:hello_timeout, state), do: {:noreply, state}

  defp on_info({:DOWN, ref, :process, _pid, _reason}, state) do
    {entry, monitors} = Map.pop(state.monitors, ref)
    state = %{state | monitors: monitors}

    case entry do
      {:container, name} ->
        case Map.pop(state.containers, name) do
          {nil, _} ->
            {:noreply, send_internal({:destroy, name}, state)}

          {entry, containers} ->
            disconnect(entry.container)
            untrack(entry.container)
            state = unwatch_channel(entry, %{state | containers: containers})
            {:noreply, send_destroy(name, {:internal_destroy, entry.container}, state)}
        end

      {:channel, name} ->
        # A sandbox's channel died without a word (a crash): the sandbox cannot be
        # reached any more, so it goes too.
        case Map.pop(state.containers, name) do
          {nil, _} ->
            {:noreply, state}

          {%{container: container, ref: ref}, containers} ->
            Logger.error("the channel of sandbox #{name} exited; destroying it", container: name)
            if ref, do: Process.demonitor(ref, [:flush])
            if container.owner, do: send(container.owner, {:ampule_exit, container, :killed})
            untrack(container)
            state = %{state | containers: containers, monitors: Map.delete(state.monitors, ref)}
            {:noreply, send_internal({:destroy, name}, state)}
        end

      {:system, name} ->
        state =
          send_internal({:destroy, name}, %{state | systems: Map.delete(state.systems, name)})

        {:noreply, state}

      {:pending, tag} ->
        # The owner exited while its container boots: destroy the container on arrival.
        pending =
          case state.pending do
            %{^tag => {:spawn, from, _owner, _ref, sandbox}} ->
              Map.put(state.pending, tag, {:spawn, from, :exited, nil, sandbox})

            pending ->
              pending
          end

        {:noreply, %{state | pending: pending}}

      nil ->
        {:noreply, state}
    end
  end

  defp on_info(_other, state), do: {:noreply, state}

  @impl GenServer
  def terminate(_reason, state) do
    # Closing the port is its end of file: it destroys every container it made.
    safe_close(state.port)
  end

  defp report_load({:noreply, state}), do: {:noreply, report(state)}
  defp report_load({:reply, reply, state}), do: {:reply, reply, report(state)}
  defp report_load(other), do: other

  # Containers held or booting, and system containers.
  defp report(%{cluster: nil} = state), do: state

  defp report(state) do
    booting = Enum.count(state.pending, &match?({_tag, {:spawn, _, _, _, _}}, &1))
    count = map_size(state.containers) + map_size(state.systems) + booting

    if count != state.reported do
      Ampule.Cluster.port_load(state.cluster, count)
      %{state | reported: count}
    else
      state
    end
  end

  # A container whose owner is on another node is known to that node's Ampule.Cluster,
  # which tells the owner if this node goes away: it hears of the container's end.
  defp track(%Container{owner: owner} = container) when is_pid(owner) do
    if node(owner) != node(), do: Ampule.Cluster.track(self(), container)
    :ok
  end

  defp track(_container), do: :ok

  defp untrack(%Container{owner: owner} = container) when is_pid(owner) do
    if node(owner) != node(), do: Ampule.Cluster.untrack(container)
    :ok
  end

  defp untrack(_container), do: :ok

  ## Opening the port

  defp open(state) do
    {executable, args} = command(state.opts)

    cond do
      executable == :sudo_not_found ->
        down(state, {:sudo_not_found, "sudo (not on PATH)"})

      not File.regular?(executable) ->
        down(state, {:port_not_found, executable})

      true ->
        try do
          port =
            Port.open({:spawn_executable, executable}, [
              {:packet, 4},
              :binary,
              :nouse_stdio,
              :exit_status,
              args: args
            ])

          {:os_pid, os_pid} = Port.info(port, :os_pid)
          :persistent_term.put({__MODULE__, :opened}, true)
          timer = Process.send_after(self(), :hello_timeout, @hello_timeout)

          %{state | port: port, os_pid: os_pid, status: :starting, fatal: nil, hello_timer: timer}
        rescue
          error in ErlangError ->
            down(state, {:port_not_started, executable, error.original})
        end
    end
  end

  @doc """
  The program and arguments that start the port: `{port, args}`, or through sudo
  `{sudo, ["-n", "-C", "5", "--", port | args]}` (`{:sudo_not_found, "sudo"}` without
  sudo). `mix ampule.check` asks sudo about it.
  """
  @spec command(keyword) :: {String.t(), [String.t()]} | {:sudo_not_found, String.t()}
  def command(opts \\ []) do
    port_path = Keyword.get_lazy(opts, :executable, &executable/0)
    args = Keyword.get_lazy(opts, :args, &default_args/0)

    if Keyword.get_lazy(opts, :sudo, fn -> Application.get_env(:ampule, :sudo, false) end) do
      # sudo closes every fd above 2 unless told to keep them (-C, which sudoers must allow
      # with `Defaults closefrom_override`): the protocol is on fds 3 and 4.
      case System.find_executable("sudo") do
        nil -> {:sudo_not_found, "sudo"}
        sudo -> {sudo, ["-n", "-C", "5", "--", port_path | args]}
      end
    else
      {port_path, args}
    end
  end

  defp default_args do
    [bridge: "--bridge", subnet: "--subnet", state_dir: "--state-dir", log_level: "--log-level"]
    |> Enum.flat_map(fn {key, flag} ->
      case Application.get_env(:ampule, key) do
        nil -> []
        value -> [flag, to_string(value)]
      end
    end)
  end

  ## Frames from the port

  defp handle_frame({:event, :hello, %{protocol: protocol} = hello}, %{status: :starting} = state) do
    cancel_timer(state.hello_timer)

    if protocol == Protocol.version() do
      state = %{state | status: :ready, hello: hello, hello_timer: nil}
      queue = Enum.reverse(state.queue)

      Enum.reduce(queue, %{state | queue: []}, fn {message, from}, acc ->
        dispatch(message, from, acc)
      end)
    else
      Logger.error(
        "ampule_port speaks protocol #{inspect(protocol)}, this Ampule speaks #{Protocol.version()}: " <>
          "rebuild the port (mix compile --force) or use a matching AMPULE_PORT_PATH"
      )

      safe_close(state.port)
      down(%{state | port: nil, os_pid: nil, hello_timer: nil}, {:unsupported_protocol, protocol})
    end
  end

  defp handle_frame({:event, :fatal, info}, state) when is_map(info) do
    reason = Map.get(info, :reason, :unknown)
    message = Map.get(info, :message, "")
    Logger.error("ampule_port cannot run containers (#{reason}): #{message}")
    %{state | fatal: {:host_not_ready, reason, to_string(message)}}
  end

  defp handle_frame({:event, :log, info}, state) when is_map(info) do
    level = log_level(Map.get(info, :level))
    container = Map.get(info, :container)
    message = to_string(Map.get(info, :message, ""))

    # The container's name in the text too: a formatter without `:container` metadata
    # (the default one) would drop it, and the line would not say whose it is.
    {metadata, text} =
      if is_binary(container),
        do: {[container: container], "ampule_port: #{container}: #{message}"},
        else: {[], "ampule_port: #{message}"}

    Logger.log(level, text, metadata)
    state
  end

  defp handle_frame({:event, :exit, %{name: name} = info}, state) do
    status = Map.get(info, :status)

    case Map.pop(state.containers, name) do
      {nil, _} ->
        state

      {%{container: container, ref: ref} = entry, containers} ->
        if ref, do: Process.demonitor(ref, [:flush])
        disconnect(container)
        if container.owner, do: send(container.owner, {:ampule_exit, container, status})
        untrack(container)
        state = %{state | containers: containers, monitors: Map.delete(state.monitors, ref)}
        tell_channel(container, status, info)
        unwatch_channel(entry, state)
    end
  end

  defp handle_frame({:event, :console, {name, data}}, state) do
    case Map.get(state.systems, name) do
      %{container: %{owner: owner}} = system when is_pid(owner) ->
        # Chunks wait in order behind any already waiting; only what reaches the owner is
        # acknowledged, so a passive owner stops the port after its window.
        system = %{system | buffer: enqueue(system.buffer, data)}
        {system, acked} = deliver(system)
        ack(name, acked, %{state | systems: Map.put(state.systems, name, system)})

      _ ->
        # No owner (or a container this process did not make): nobody takes the output,
        # so it is drained rather than left to stall the container.
        ack(name, byte_size(data), state)
    end
  end

  # The port logs each phase itself (as a log event); nothing more to do here.
  defp handle_frame({:event, :progress, %{name: name, phase: phase}}, state) do
    case Map.get(state.progress, name) do
      pid when is_pid(pid) -> send(pid, {:ampule_progress, name, phase})
      nil -> :ok
    end

    state
  end

  defp handle_frame({:event, :bad_frame, reason}, state) do
    Logger.error("ampule_port refused a frame from Ampule: #{inspect(reason)}")
    state
  end

  defp handle_frame({:event, kind, data}, state) do
    Logger.debug("ampule_port sent an unknown event #{inspect(kind)}: #{inspect(data)}")
    state
  end

  defp handle_frame({tag, result}, state) when is_integer(tag) do
    case Map.pop(state.pending, tag) do
      {nil, _} ->
        Logger.error("ampule_port answered an unknown tag #{tag}: #{inspect(result)}")
        state

      {entry, pending} ->
        handle_reply(entry, result, %{state | pending: pending})
    end
  end

  defp handle_frame(other, state) do
    Logger.error("ampule_port sent an unexpected term: #{inspect(other)}")
    state
  end

  defp handle_reply({:request, from}, result, state) do
    GenServer.reply(from, normalize(result))
    state
  end

  defp handle_reply({:destroy, from, container}, result, state) do
    tell_channel(container, :destroyed, %{})
    GenServer.reply(from, normalize(result))
    state
  end

  defp handle_reply({:broken, from, container}, _result, state) do
    tell_channel(container, :destroyed, %{})
    GenServer.reply(from, :ok)
    state
  end

  defp handle_reply({:internal_destroy, container}, result, state) do
    tell_channel(container, :destroyed, %{})
    handle_reply({:internal, {:destroy, container.name}}, result, state)
  end

  defp handle_reply({:internal, request}, result, state) do
    case result do
      :ok -> :ok
      {:error, :not_found} -> :ok
      other -> Logger.error("ampule_port: #{inspect(request)} failed: #{inspect(other)}")
    end

    state
  end

  defp handle_reply(
         {:create, from, owner, ref, template, active},
         {:ok, %{name: name} = info},
         state
       ) do
    container = %Ampule.SystemContainer{
      name: name,
      template: template,
      init_pid: Map.get(info, :init_pid),
      owner: owner
    }

    GenServer.reply(from, {:ok, container})
    state = %{state | progress: Map.delete(state.progress, name)}
    monitors = if ref, do: Map.put(state.monitors, ref, {:system, name}), else: state.monitors
    system = %{container: container, ref: ref, active: active, buffer: :queue.new()}
    systems = Map.put(state.systems, name, system)
    %{state | systems: systems, monitors: monitors}
  end

  defp handle_reply({:create, from, _owner, ref, _template, _active}, result, state) do
    if ref, do: Process.demonitor(ref, [:flush])
    GenServer.reply(from, normalize(result))
    %{state | monitors: Map.delete(state.monitors, ref)}
  end

  defp handle_reply({:spawn, from, :exited, _ref, _sandbox}, {:ok, %{name: name}}, state) do
    GenServer.reply(from, {:error, :owner_exited})
    send_internal({:destroy, name}, state)
  end

  defp handle_reply({:spawn, from, owner, ref, sandbox}, {:ok, %{name: name} = info}, state) do
    container = Container.from_reply(info, owner, sandbox)
    channel = container.channel
    track(container)
    GenServer.reply(from, {:ok, container})
    monitors = if ref, do: Map.put(state.monitors, ref, {:container, name}), else: state.monitors

    # A sandbox is reached through its channel alone: if the channel dies (even before
    # this reply, then :DOWN comes at once), the sandbox is destroyed.
    {channel_ref, monitors} =
      if is_pid(channel) do
        channel_ref = Process.monitor(channel)
        {channel_ref, Map.put(monitors, channel_ref, {:channel, name})}
      else
        {nil, monitors}
      end

    entry = %{container: container, ref: ref, channel_ref: channel_ref}
    containers = Map.put(state.containers, name, entry)
    %{state | containers: containers, monitors: monitors}
  end

  defp handle_reply({:spawn, from, _owner, ref, _sandbox}, result, state) do
    if ref, do: Process.demonitor(ref, [:flush])
    GenServer.reply(from, normalize(result))
    %{state | monitors: Map.delete(state.monitors, ref)}
  end

  defp normalize(:ok), do: :ok
  defp normalize({:ok, value}), do: {:ok, value}
  defp normalize({:error, reason}), do: {:error, reason}
  defp normalize(other), do: {:error, {:bad_reply, other}}

  ## Requests to the port

  defp dispatch(:hello, from, state) do
    GenServer.reply(from, {:ok, state.hello})
    state
  end

  defp dispatch({:request, request}, from, state) do
    send_request(request, {:request, from}, state)
  end

  defp dispatch({:create, request, owner, progress_to, active}, from, state) do
    ref = if is_pid(owner), do: Process.monitor(owner)

    state =
      case {progress_to, request} do
        {pid, %{name: name}} when is_pid(pid) ->
          %{state | progress: Map.put(state.progress, name, pid)}

        _ ->
          state
      end

    template = Map.get(request, :template, "busybox")
    send_request({:create, request}, {:create, from, owner, ref, template, active}, state)
  end

  defp dispatch({:destroy, name}, from, state) do
    state =
      case Map.pop(state.systems, name) do
        {nil, _} ->
          state

        {%{ref: ref}, systems} ->
          if ref, do: Process.demonitor(ref, [:flush])
          %{state | systems: systems, monitors: Map.delete(state.monitors, ref)}
      end

    {container, state} = forget(name, state)
    # Before the port removes it, while the node can still close the connection cleanly.
    if container, do: disconnect(container)
    send_request({:destroy, name}, {:destroy, from, container}, state)
  end

  defp dispatch({:sandbox_broken, name, reason}, from, state) do
    case forget(name, state) do
      {nil, state} ->
        GenServer.reply(from, :ok)
        state

      {container, state} ->
        if container.owner, do: send(container.owner, {:ampule_exit, container, reason})
        send_request({:destroy, name}, {:broken, from, container}, state)
    end
  end

  defp dispatch({:spawn, request, owner, sandbox}, from, state) do
    case owner do
      pid when is_pid(pid) ->
        ref = Process.monitor(pid)
        tag = state.next_tag
        state = %{state | monitors: Map.put(state.monitors, ref, {:pending, tag})}
        send_request({:spawn, request}, {:spawn, from, pid, ref, sandbox}, state)

      nil ->
        send_request({:spawn, request}, {:spawn, from, nil, nil, sandbox}, state)
    end
  end

  ## Console flow control

  # `active` is `true`, `false`, `:once`, or a positive count of chunks still to send; a
  # count that reaches 0 becomes `false` and tells the owner, as `{:active, n}` sockets do.
  defp set_active(system, active) when is_boolean(active) or active == :once,
    do: %{system | active: active}

  defp set_active(system, n) when is_integer(n) do
    count = if is_integer(system.active), do: system.active, else: 0

    if count + n > 0 do
      %{system | active: count + n}
    else
      passive(system)
    end
  end

  defp passive(%{container: %{owner: owner} = container} = system) do
    if is_pid(owner), do: send(owner, {:ampule_console_passive, container})
    %{system | active: false}
  end

  # A waiting chunk takes the next one in while both fit in one read of the port (16 KiB):
  # under load the port reads a few bytes at a time, and its window of such crumbs would
  # cost tens of thousands of terms here and as many messages later.
  defp enqueue(buffer, data) do
    case :queue.peek_r(buffer) do
      {:value, last} when byte_size(last) + byte_size(data) <= @chunk ->
        :queue.in(last <> data, :queue.drop_r(buffer))

      _ ->
        :queue.in(data, buffer)
    end
  end

  # Sends waiting chunks to the owner while its mode lets it; returns the system and the
  # bytes sent, to be acknowledged.
  defp deliver(system, sent \\ 0)
  defp deliver(%{active: false} = system, sent), do: {system, sent}

  defp deliver(%{container: %{owner: owner} = container} = system, sent) do
    case :queue.out(system.buffer) do
      {:empty, _} ->
        {system, sent}

      {{:value, data}, rest} ->
        send(owner, {:ampule_console, container, data})
        system = %{system | buffer: rest}

        system =
          case system.active do
            true -> system
            :once -> %{system | active: false}
            1 -> passive(system)
            n -> %{system | active: n - 1}
          end

        deliver(system, sent + byte_size(data))
    end
  end

  # Credit back to the port: it reads at most a window ahead of these acknowledgements.
  defp ack(_name, 0, state), do: state
  defp ack(name, bytes, state), do: send_internal({:console_ack, name, bytes}, state)

  defp send_internal(request, %{status: :ready} = state) do
    send_request(request, {:internal, request}, state)
  end

  defp send_internal(_request, state), do: state

  defp send_request(request, entry, state) do
    tag = state.next_tag
    true = Port.command(state.port, Protocol.encode(tag, request))
    %{state | next_tag: tag + 1, pending: Map.put(state.pending, tag, entry)}
  end

  # Forgets a container about to be destroyed. A sandbox's channel is told only once the
  # port has answered the destroy (tell_channel/3 from handle_reply/3): a channel that
  # closed first would make the agent halt the node, racing the destroy, which could then
  # answer `not_found` for a container that was there.
  defp forget(name, state) do
    case Map.pop(state.containers, name) do
      {nil, _} ->
        {nil, state}

      {%{ref: ref, container: container} = entry, containers} ->
        if ref, do: Process.demonitor(ref, [:flush])
        untrack(container)
        state = %{state | containers: containers, monitors: Map.delete(state.monitors, ref)}
        {container, unwatch_channel(entry, state)}
    end
  end

  defp send_destroy(name, entry, state), do: send_request({:destroy, name}, entry, state)

  # Stops watching a sandbox's channel (its sandbox is being destroyed or is gone).
  defp unwatch_channel(%{channel_ref: ref}, state) when is_reference(ref) do
    Process.demonitor(ref, [:flush])
    %{state | monitors: Map.delete(state.monitors, ref)}
  end

  defp unwatch_channel(_entry, state), do: state

  # Tells a sandbox's channel that its sandbox has ended, so that it fails pending calls.
  defp tell_channel(%Container{channel: channel}, status, info) when is_pid(channel) do
    send(channel, {:ampule_sandbox_exit, status, info})
    :ok
  end

  defp tell_channel(_container, _status, _info), do: :ok

  # A destroyed container's node vanishes without closing its connection (its network
  # goes with it): disconnect first, so that the connection closes cleanly (a half-open
  # one lingers in the host's conntrack), monitors and links fire, and the next call fails
  # at once instead of after the tick time. A sandbox has no node.
  defp disconnect(%Container{nodename: nil}), do: :ok

  defp disconnect(%Container{nodename: node}) do
    _ = :erlang.disconnect_node(node)
    :ok
  end

  ## The port exits

  defp port_exited(status, %{status: :ready} = state) do
    Logger.error(
      "ampule_port (OS pid #{state.os_pid}) exited (#{inspect(status)}); " <>
        "#{map_size(state.pending)} pending request(s) failed; a new port is started"
    )

    for {_tag, entry} <- state.pending,
        from = reply_to(entry),
        do: GenServer.reply(from, {:error, :port_exited})

    for {message, from} <- state.queue,
        message != :hello,
        do: GenServer.reply(from, {:error, :port_exited})

    for {_name, %{container: %{owner: owner} = container}} <- state.containers, owner do
      send(owner, {:ampule_exit, container, :port_exited})
    end

    for {_name, %{container: container}} <- state.containers,
        do: tell_channel(container, :port_exited, %{})

    # Destroys in flight: their sandboxes are gone with the port.
    for {_tag, {kind, _, container}} <- state.pending,
        kind in [:destroy, :broken],
        do: tell_channel(container, :port_exited, %{})

    for {_tag, {:internal_destroy, container}} <- state.pending,
        do: tell_channel(container, :port_exited, %{})

    {:stop, {:shutdown, {:port_exited, status}}, %{state | port: nil, pending: %{}, queue: []}}
  end

  defp port_exited(status, state) do
    cancel_timer(state.hello_timer)
    reason = state.fatal || {:port_failed, status}
    {:noreply, down(%{state | port: nil, os_pid: nil, hello_timer: nil}, reason)}
  end

  defp reply_to({:request, from}), do: from
  defp reply_to({:destroy, from, _}), do: from
  defp reply_to({:spawn, from, _, _, _}), do: from
  defp reply_to({:broken, from, _}), do: from
  defp reply_to({:internal_destroy, _}), do: nil
  defp reply_to({:create, from, _, _, _, _}), do: from
  defp reply_to({:internal, _}), do: nil

  # Not running: the reason is given to whoever waits, and kept for the next caller.
  defp down(state, reason) do
    for {_message, from} <- Enum.reverse(state.queue), do: GenServer.reply(from, {:error, reason})
    %{state | status: {:down, reason}, queue: []}
  end

  defp safe_close(nil), do: :ok

  defp safe_close(port) do
    Port.close(port)
  catch
    :error, _ -> :ok
  end

  defp cancel_timer(nil), do: :ok
  defp cancel_timer(ref), do: Process.cancel_timer(ref)

  defp log_level(:error), do: :error
  defp log_level(:warn), do: :warning
  defp log_level(:warning), do: :warning
  defp log_level(:info), do: :info
  defp log_level(:debug), do: :debug
  defp log_level(:trace), do: :debug
  defp log_level(_), do: :info
end
