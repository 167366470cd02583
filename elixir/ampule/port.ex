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
  #   mode (Ampule.Port.Console), and acknowledges a chunk to the port only when the owner
  #   has been sent it.
  # - If the port program dies after the hello, every pending caller gets
  #   `{:error, :port_exited}` at once and this process stops, so its supervisor starts a
  #   new port (which removes whatever the dead one left behind before its hello).
  #   If it dies before the hello (the host is not ready), the reason is kept and given to
  #   callers, and the next request tries again: nothing crash-loops.
  #
  # What it holds:
  #
  # - `pending`: tag => Ampule.Port.Pending, a request sent and not yet answered.
  # - `owned`: name => Ampule.Port.Owned, a container it made and keeps (a node, a sandbox
  #   or a system container), with the monitors of its owner and of a sandbox's channel.
  # - `monitors`: monitor ref => `{:owner, name}`, `{:channel, name}`, or `{:pending, tag}`
  #   (the owner of a spawn still booting).
  # - `queue`: calls that came before the hello, in reverse.
  #
  # Who ends what:
  #
  # - The owner's exit ends its containers: this process destroys them (a node or a
  #   sandbox still booting, when it arrives).
  # - A sandbox's channel's exit ends its sandbox; the sandbox's end (exit event, destroy,
  #   port exit) ends its channel, which this process tells.
  # - An exit event ends a node or a sandbox: its owner is told, its entry dropped.
  # - The port program's exit ends them all (on end of file it destroys what it made, and
  #   only stops a persistent system container; the next port sweeps what a crash left),
  #   and ends this process, which its supervisor restarts.

  use GenServer
  require Logger

  alias Ampule.{Container, Protocol}
  alias Ampule.Port.{Console, Owned, Pending}

  @hello_timeout 60_000
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
      owned: %{},
      # name => the pid told the create's progress, until its reply.
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
    case Map.fetch(state.owned, name) do
      {:ok, %Owned{kind: :system} = owned} ->
        {:reply, :ok, console(owned, &Console.set_active(&1, active), state)}

      _ ->
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
    {watched, monitors} = Map.pop(state.monitors, ref)
    {:noreply, watched_down(watched, %{state | monitors: monitors})}
  end

  defp on_info(_other, state), do: {:noreply, state}

  ## Ownership

  # An owner exited: its container goes. The port is asked to destroy a name it may no
  # longer hold too (a container already forgotten): `not_found` is then not an error.
  defp watched_down({:owner, name}, state) do
    case release(name, state) do
      {nil, state} ->
        send_internal({:destroy, name}, state)

      {%Owned{container: container}, state} ->
        disconnect(container)
        send_request({:destroy, name}, internal_destroy(name, container), state)
    end
  end

  # A sandbox's channel died without a word (a crash): the sandbox cannot be reached any
  # more, so it goes too.
  defp watched_down({:channel, name}, state) do
    case release(name, state) do
      {nil, state} ->
        state

      {%Owned{container: container}, state} ->
        Logger.error("the channel of sandbox #{name} exited; destroying it", container: name)
        notify_owner(container, :killed)
        send_internal({:destroy, name}, state)
    end
  end

  # The owner exited while its container boots (or its system container is created): the
  # container is destroyed on arrival. (A create's owner used to be forgotten here: its
  # monitor had fired, so the system container outlived it until the port ended.)
  defp watched_down({:pending, tag}, state) do
    case state.pending do
      %{^tag => %Pending{kind: kind} = pending} when kind in [:spawn, :create] ->
        pending = %{pending | owner_exited: true, ref: nil}
        %{state | pending: Map.put(state.pending, tag, pending)}

      _ ->
        state
    end
  end

  defp watched_down(nil, state), do: state

  defp keep(state, %Owned{container: %{name: name}} = owned),
    do: %{state | owned: Map.put(state.owned, name, owned)}

  defp watch(state, nil, _watched), do: state
  defp watch(state, ref, watched), do: %{state | monitors: Map.put(state.monitors, ref, watched)}

  # A sandbox is reached through its channel alone: if the channel dies (even before the
  # spawn's reply, then :DOWN comes at once), the sandbox is destroyed.
  defp watch_channel(%Container{channel: channel, name: name}, state) when is_pid(channel) do
    ref = Process.monitor(channel)
    {ref, watch(state, ref, {:channel, name})}
  end

  defp watch_channel(_container, state), do: {nil, state}

  # Forgets container `name` (gone or about to be destroyed): no more monitors of its owner
  # or its channel, no more tracking by the owner's node. Returns what it was, or nil.
  # A sandbox's channel is told only once the port has answered the destroy
  # (tell_channel/3 from handle_reply/3): a channel that closed first would make the agent
  # halt the node, racing the destroy, which could then answer `not_found` for a container
  # that was there.
  defp release(name, state) do
    case Map.pop(state.owned, name) do
      {nil, _} ->
        {nil, state}

      {%Owned{ref: ref, channel_ref: channel_ref} = owned, rest} ->
        demonitor(ref)
        demonitor(channel_ref)
        untrack(owned.container)
        monitors = Map.drop(state.monitors, [ref, channel_ref])
        {owned, %{state | owned: rest, monitors: monitors}}
    end
  end

  # release/2 of a node or a sandbox only: a system container whose init exits stays,
  # stopped, until destroyed (its `exit` event says `stopped`), and it has no channel to
  # break the protocol.
  defp release_spawned(name, state) do
    case state.owned do
      %{^name => %Owned{kind: :container, container: container}} ->
        {_owned, state} = release(name, state)
        {container, state}

      _ ->
        {nil, state}
    end
  end

  defp demonitor(nil), do: :ok
  defp demonitor(ref), do: Process.demonitor(ref, [:flush])

  defp notify_owner(%{owner: owner} = container, status) when is_pid(owner),
    do: send(owner, {:ampule_exit, container, status})

  defp notify_owner(_container, _status), do: :ok

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
    booting = Enum.count(state.pending, &match?({_tag, %Pending{kind: :spawn}}, &1))
    count = map_size(state.owned) + booting

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
        open_port(executable, args, state)
    end
  end

  defp open_port(executable, args, state) do
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

    case release_spawned(name, state) do
      {nil, state} ->
        state

      {container, state} ->
        disconnect(container)
        notify_owner(container, status)
        tell_channel(container, status, info)
        state
    end
  end

  defp handle_frame({:event, :console, {name, data}}, state) do
    case Map.get(state.owned, name) do
      %Owned{kind: :system, container: %{owner: owner}} = owned when is_pid(owner) ->
        console(owned, &Console.push(&1, data), state)

      _ ->
        # No owner (or a container this process did not make): nobody takes the output,
        # so it is drained rather than left to stall the container.
        ack(state, name, byte_size(data))
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

  defp handle_reply(%Pending{kind: :request, from: from}, result, state) do
    GenServer.reply(from, normalize(result))
    state
  end

  defp handle_reply(%Pending{kind: :destroy, from: from, container: container}, result, state) do
    tell_channel(container, :destroyed, %{})
    GenServer.reply(from, normalize(result))
    state
  end

  defp handle_reply(%Pending{kind: :broken, from: from, container: container}, _result, state) do
    tell_channel(container, :destroyed, %{})
    GenServer.reply(from, :ok)
    state
  end

  defp handle_reply(%Pending{kind: :internal, request: request} = pending, result, state) do
    tell_channel(pending.container, :destroyed, %{})

    case result do
      :ok -> :ok
      {:error, :not_found} -> :ok
      other -> Logger.error("ampule_port: #{inspect(request)} failed: #{inspect(other)}")
    end

    state
  end

  defp handle_reply(
         %Pending{kind: kind, owner_exited: true, from: from},
         {:ok, %{name: name}},
         state
       )
       when kind in [:spawn, :create] do
    GenServer.reply(from, {:error, :owner_exited})
    send_internal({:destroy, name}, %{state | progress: Map.delete(state.progress, name)})
  end

  defp handle_reply(%Pending{kind: :create} = pending, {:ok, %{name: name} = info}, state) do
    container = %Ampule.SystemContainer{
      name: name,
      template: pending.template,
      init_pid: Map.get(info, :init_pid),
      owner: pending.owner
    }

    GenServer.reply(pending.from, {:ok, container})
    state = %{state | progress: Map.delete(state.progress, name)}

    state
    |> watch(pending.ref, {:owner, name})
    |> keep(%Owned{
      kind: :system,
      container: container,
      ref: pending.ref,
      console: Console.new(pending.active)
    })
  end

  defp handle_reply(%Pending{kind: :spawn} = pending, {:ok, %{name: name} = info}, state) do
    container = Container.from_reply(info, pending.owner, pending.sandbox)
    track(container)
    GenServer.reply(pending.from, {:ok, container})
    state = watch(state, pending.ref, {:owner, name})
    {channel_ref, state} = watch_channel(container, state)

    keep(state, %Owned{
      kind: :container,
      container: container,
      ref: pending.ref,
      channel_ref: channel_ref
    })
  end

  # A spawn or a create that failed.
  defp handle_reply(%Pending{ref: ref, from: from}, result, state) do
    demonitor(ref)
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
    send_request(request, %Pending{kind: :request, from: from}, state)
  end

  defp dispatch({:create, request, owner, progress_to, active}, from, state) do
    ref = if is_pid(owner), do: Process.monitor(owner)
    state = watch(state, ref, {:pending, state.next_tag})

    pending = %Pending{
      kind: :create,
      from: from,
      owner: owner,
      ref: ref,
      template: Map.get(request, :template, "busybox"),
      active: active
    }

    state = tell_progress(state, progress_to, request)
    send_request({:create, request}, pending, state)
  end

  defp dispatch({:destroy, name}, from, state) do
    {owned, state} = release(name, state)
    container = if owned, do: owned.container
    # Before the port removes it, while the node can still close the connection cleanly.
    disconnect(container)

    send_request(
      {:destroy, name},
      %Pending{kind: :destroy, from: from, container: container},
      state
    )
  end

  defp dispatch({:sandbox_broken, name, reason}, from, state) do
    case release_spawned(name, state) do
      {nil, state} ->
        GenServer.reply(from, :ok)
        state

      {container, state} ->
        notify_owner(container, reason)

        send_request(
          {:destroy, name},
          %Pending{kind: :broken, from: from, container: container},
          state
        )
    end
  end

  # The owner is watched from the request on: if it exits while its container boots, the
  # container is destroyed on arrival.
  defp dispatch({:spawn, request, owner, sandbox}, from, state) do
    ref = if is_pid(owner), do: Process.monitor(owner)
    state = watch(state, ref, {:pending, state.next_tag})
    pending = %Pending{kind: :spawn, from: from, owner: owner, ref: ref, sandbox: sandbox}
    send_request({:spawn, request}, pending, state)
  end

  # The phases of a named create go to `pid` until its reply.
  defp tell_progress(state, pid, %{name: name}) when is_pid(pid),
    do: %{state | progress: Map.put(state.progress, name, pid)}

  defp tell_progress(state, _pid, _request), do: state

  ## Console flow control

  # Runs one step of a system container's console flow, sends its owner what the step lets
  # go, and acknowledges those bytes to the port.
  defp console(%Owned{container: container, console: flow} = owned, step, state) do
    {outs, flow} = step.(flow)
    bytes = Console.send_to(outs, container)
    state |> keep(%{owned | console: flow}) |> ack(container.name, bytes)
  end

  # Credit back to the port: it reads at most a window ahead of these acknowledgements.
  defp ack(state, _name, 0), do: state
  defp ack(state, name, bytes), do: send_internal({:console_ack, name, bytes}, state)

  defp send_internal(request, %{status: :ready} = state) do
    send_request(request, %Pending{kind: :internal, request: request}, state)
  end

  defp send_internal(_request, state), do: state

  defp send_request(request, %Pending{} = pending, state) do
    tag = state.next_tag
    true = Port.command(state.port, Protocol.encode(tag, request))
    %{state | next_tag: tag + 1, pending: Map.put(state.pending, tag, pending)}
  end

  # A destroy of Ampule.Port's own (its owner exited) that tells the sandbox's channel once
  # the port has answered.
  defp internal_destroy(name, container),
    do: %Pending{kind: :internal, request: {:destroy, name}, container: container}

  # Tells a sandbox's channel that its sandbox has ended, so that it fails pending calls.
  defp tell_channel(%Container{channel: channel}, status, info) when is_pid(channel) do
    send(channel, {:ampule_sandbox_exit, status, info})
    :ok
  end

  defp tell_channel(_container, _status, _info), do: :ok

  # A destroyed container's node vanishes without closing its connection (its network
  # goes with it): disconnect first, so that the connection closes cleanly (a half-open
  # one lingers in the host's conntrack), monitors and links fire, and the next call fails
  # at once instead of after the tick time. A sandbox and a system container have no node.
  defp disconnect(%Container{nodename: node}) when node != nil do
    _ = :erlang.disconnect_node(node)
    :ok
  end

  defp disconnect(_container), do: :ok

  ## The port exits

  defp port_exited(status, %{status: :ready} = state) do
    Logger.error(
      "ampule_port (OS pid #{state.os_pid}) exited (#{inspect(status)}); " <>
        "#{map_size(state.pending)} pending request(s) failed; a new port is started"
    )

    fail_waiting(state)
    end_owned(state)
    {:stop, {:shutdown, {:port_exited, status}}, %{state | port: nil, pending: %{}, queue: []}}
  end

  defp port_exited(status, state) do
    cancel_timer(state.hello_timer)
    reason = state.fatal || {:port_failed, status}
    {:noreply, down(%{state | port: nil, os_pid: nil, hello_timer: nil}, reason)}
  end

  # Every caller waiting for the port gets `{:error, :port_exited}`.
  defp fail_waiting(state) do
    for {_tag, %Pending{from: from}} <- state.pending,
        from,
        do: GenServer.reply(from, {:error, :port_exited})

    for {message, from} <- state.queue,
        message != :hello,
        do: GenServer.reply(from, {:error, :port_exited})
  end

  # Nodes and sandboxes end with the port: their owners and channels are told. A system
  # container's owner is not told (a persistent one outlives the port, stopped).
  defp end_owned(state) do
    for {_name, %Owned{kind: :container, container: container}} <- state.owned do
      notify_owner(container, :port_exited)
      tell_channel(container, :port_exited, %{})
    end

    # Destroys in flight: their sandboxes are gone with the port.
    for {_tag, %Pending{container: container}} <- state.pending,
        do: tell_channel(container, :port_exited, %{})
  end

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
