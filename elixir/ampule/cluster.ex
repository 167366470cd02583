defmodule Ampule.Cluster do
  @moduledoc """
  The hosts of an Erlang cluster that offer containers, and how loaded each is.

  Every node that runs Ampule's application runs one `Ampule.Cluster`. On a host, a node
  configured to offer its containers (`config :ampule, offer: true`), it starts the port
  program and, once the port has said hello, joins the group `:hosts` of Ampule's own
  `:pg` scope (`:ampule_cluster`), so any node of the cluster sees which hosts offer
  containers:

      Ampule.Cluster.hosts()
      #=> [%{node: :"a@10.0.0.1", containers: 12, cpus: 8, cpu_idle: 5.2, ...},
      #    %{node: :"b@10.0.0.2", containers: 3, cpus: 8, cpu_idle: 7.6, ...}]

      {:ok, node} = Ampule.Cluster.place(Ampule.Cluster.hosts())
      container = Ampule.spawn(on: node)

  Membership is `:pg`'s: a host is a member from its join until it leaves, its Ampule
  stops or its node disconnects (then every other node sees it leave at once, with the
  connection). The load is Ampule's: each host sends its own to every member, every
  `:cluster_interval` ms and, at most every 50 ms, when its number of containers
  changes. Each node keeps what it hears in an ETS table: reading the hosts and placing a
  container (`place/2`) cost no message and take no lock.

  ## Containers on other hosts


  Users who outgrow one machine have more, already joined as an Erlang cluster: each runs
  its own Ampule (its own port program, bridge, firewall tables and state directory) and
  offers it to the others (`config :ampule, offer: true`). Such a host joins Ampule's
  `:pg` group and publishes its load, so any node of the cluster sees which hosts offer
  containers and how loaded each is (`Ampule.Cluster.hosts/0`), and places work on them:

      container = Ampule.spawn(sandbox: true, on: :"ampule@10.0.0.2")
      Ampule.call({String, :upcase, ["there"]}, container)
      #=> "THERE"

      Ampule.call({:erlang, :node, []}, on: :"ampule@10.0.0.2")   # a fresh container there

      {:ok, host} = Ampule.Cluster.place(Ampule.Cluster.hosts())   # the most room

      children = [{Ampule.Pool, name: MyApp.Boxes, size: 12, sandbox: true, hosts: :all}]

    * `on: node` (`spawn/1`, `start/1`, the anonymous `call/2`) makes the container on that
      host's Ampule, with the options checked here first (code paths are the host's own: a
      cluster runs one release). The container belongs to that host's port, with the
      caller (or `:owner`) as its owner, monitored across nodes: if the owner exits, or its
      node goes away, the host destroys it. `container.host` names the host; `destroy/1`
      and `info/1` go there. `Ampule.Pool` takes `hosts: [node] | :all` and boots each
      container on the host with the most room (see "Hosts" in `Ampule.Pool`).
    * A sandbox on another host is reached at its channel, a process of the host's that
      holds its agent's socket: a call is one hop more than on this node, and needs no
      route to the host's bridge. `docs/scaling.md` has the figures.
    * A distribution container on another host cannot be reached from here: its node's
      address is on the host's bridge, which the host's firewall keeps apart from
      everything but the host (no forwarding to or from it). `call/1,2,3`, `async_call/2`,
      `yield/2`, `multicall/3` and `cast/3` go through a relay process on the host (two
      hops more than on this node), with the same timeouts and kills. What needs the node
      itself does not work from another node: `Node.spawn(container.nodename, ...)`,
      `:erpc` to it, `GenServer.call({name, container.nodename}, ...)`, links and monitors
      to its processes. They would need a route between the bridges and the host's
      firewall to forward into its bridge, which Ampule does not open (that rule is what
      keeps containers apart from the rest of the network). Run such code from the host,
      which holds the container's cookie: `:erpc.call(container.host, Node, :spawn,
      [container.nodename, fun])`, or use a sandbox.
    * The hosts and the callers are one Erlang cluster, so they trust each other fully:
      any node of it can run code on any other, as that BEAM's user (root on a host whose
      BEAM runs the port directly). Containers are what is not trusted.

  A host that goes away takes its containers with it: its port destroys them when its
  BEAM dies, as on one machine. Everyone elsewhere gets `{:host_down, node}`: a call in
  flight to one of its containers returns it as soon as the connection to the host drops
  (milliseconds for a BEAM that died; up to the distribution tick, `net_ticktime`, 60 s
  by default, for a machine that vanished without closing its connections), a new call
  at once, and an owner of one of its containers gets `{:ampule_exit, container,
  {:host_down, node}}` (from its own node's `Ampule.Cluster`, which keeps track of the
  containers its processes own elsewhere). A host that leaves is no longer placed on.

  Membership follows `:pg`, which sees the nodes this node is connected to as visible
  nodes (on OTP 25 a hidden connection does not carry `:pg` groups): a caller sees the
  hosts it is connected to. `docs/scaling.md` says what this costs with 10 and 100 hosts.

  ## Configuration

  Application environment of `:ampule`:

    * `:offer` - whether this node is a host: it offers its containers to the cluster
      (default `false`: a node that only calls, or makes containers for itself alone,
      neither joins nor starts a port program before its first container). A host whose
      port program cannot run (no root, no liblxc) does not join; it tries again every
      30 s.
    * `:cluster_interval` - milliseconds between load broadcasts (default 1000)
    * `:max_containers` - the most containers this host takes from placement (default
      `:infinity`; `place/2` skips a host at its maximum)

  See "Containers on other hosts" above for what spans hosts, and `docs/scaling.md` for the cost.
  """

  use GenServer
  require Logger

  @scope :ampule_cluster
  # Hosts (nodes that offer containers), and every node's Ampule.Cluster (to which hosts
  # send their loads).
  @group :hosts
  @everyone :clusters
  @table __MODULE__
  # Load changes are sent at most this often (ms).
  @debounce 50
  # A host whose join failed (its port program is not ready) tries again after this.
  @retry 30_000

  @typedoc """
  A host's load, as it last said:

    * `:node` - the host
    * `:containers` - containers its port holds, booting ones included
    * `:cpus` - its logical processors
    * `:cpu_idle` - processors' worth of idle time over its last interval (0.0 to `cpus`)
    * `:memory_available` - bytes (the kernel's `MemAvailable`)
    * `:max_containers` - its `:max_containers`, or `:infinity`
  """
  @type load :: %{
          node: node,
          containers: non_neg_integer,
          cpus: pos_integer,
          cpu_idle: float,
          memory_available: non_neg_integer,
          max_containers: non_neg_integer | :infinity
        }

  ## API

  @doc false
  def start_link(opts \\ []) do
    {name, opts} = Keyword.pop(opts, :name, __MODULE__)
    GenServer.start_link(__MODULE__, opts, name: name)
  end

  @doc "The `:pg` scope of Ampule's hosts."
  @spec scope() :: atom
  def scope, do: @scope

  @doc """
  The hosts that offer containers, with their loads, as this node last heard them (from
  an ETS table: no message). A host appears once its first load has arrived, and not
  while its node is disconnected.
  """
  @spec hosts() :: [load]
  def hosts do
    # A node whose connection is down is about to leave: it is not listed meanwhile.
    connected = MapSet.new([node() | Node.list(:connected)])

    for {node, load} <- :ets.tab2list(@table), MapSet.member?(connected, node), do: load
  rescue
    ArgumentError -> []
  end

  @doc "Whether `node` offers containers (is a member with a known load)."
  @spec host?(node) :: boolean
  def host?(node), do: :ets.member(@table, node)

  @doc """
  Picks the host with the most room among `loads` (from `hosts/0`); pure.

  Room is counted in containers per processor: the host with the fewest (its published
  count plus `:pending`) per CPU wins, as a node's boot is CPU-bound. A host is skipped
  when it is at its `:max_containers`, or when its available memory, less what the
  pending containers will take, is below `:memory`. Ties go to the most idle CPU, then the
  most memory, then the node name.

  ## Options

    * `:pending` - `%{node => count}` of containers asked of each host that its load does
      not show yet (a pool's boots in flight): this spreads a burst of placements that
      come between two broadcasts (default `%{}`)
    * `:among` - the nodes to choose from: a list, or `:all` (default)
    * `:memory` - bytes one more container needs on a host (default 64 MiB: a node in a
      container takes about 40 MiB)

  Returns `{:ok, node}`, or `{:error, :no_host}` when no host qualifies.

      iex> loads = [
      ...>   %{node: :a@h, containers: 4, cpus: 2, cpu_idle: 1.0, memory_available: 8_589_934_592, max_containers: :infinity},
      ...>   %{node: :b@h, containers: 2, cpus: 2, cpu_idle: 1.0, memory_available: 8_589_934_592, max_containers: :infinity}
      ...> ]
      iex> Ampule.Cluster.place(loads)
      {:ok, :b@h}
      iex> Ampule.Cluster.place(loads, pending: %{b@h: 3})
      {:ok, :a@h}
  """
  @spec place([load], keyword) :: {:ok, node} | {:error, :no_host}
  def place(loads, opts \\ []) do
    pending = Keyword.get(opts, :pending, %{})
    among = Keyword.get(opts, :among, :all)
    need = Keyword.get(opts, :memory, 64 * 1024 * 1024)

    loads
    |> Enum.filter(fn %{node: node} = load ->
      asked = Map.get(pending, node, 0)

      (among == :all or node in among) and
        below_max?(load.containers + asked, load.max_containers) and
        load.memory_available - asked * need >= need
    end)
    |> Enum.min_by(
      fn %{node: node} = load ->
        {(load.containers + Map.get(pending, node, 0)) / max(load.cpus, 1), -load.cpu_idle,
         -load.memory_available, node}
      end,
      fn -> nil end
    )
    |> case do
      nil -> {:error, :no_host}
      %{node: node} -> {:ok, node}
    end
  end

  defp below_max?(_count, :infinity), do: true
  defp below_max?(count, max), do: count < max

  @doc """
  Sends the caller `{:ampule_cluster, :join, node}` when a host becomes available (its
  first load arrived) and `{:ampule_cluster, :leave, node}` when it leaves, until the
  caller exits.
  """
  @spec subscribe(GenServer.server()) :: :ok
  def subscribe(server \\ __MODULE__), do: GenServer.call(server, {:subscribe, self()})

  @doc false
  # From Ampule.Port: its number of containers changed.
  def port_load(server \\ __MODULE__, count), do: GenServer.cast(server, {:port_load, count})

  @doc false
  # From a host's Ampule.Port: it made `container` for an owner on this node. This node
  # then tells the owner `{:ampule_exit, container, {:host_down, host}}` if the host's
  # node goes away before the container does (its port destroys the container then, but
  # cannot say so).
  def track(port, %Ampule.Container{owner: owner} = container) when is_pid(owner) do
    GenServer.cast({__MODULE__, node(owner)}, {:track, port, container})
  end

  @doc false
  # From a host's Ampule.Port: the container is gone, and its owner was told (or was the
  # one who destroyed it).
  def untrack(%Ampule.Container{owner: owner, name: name, host: host}) when is_pid(owner) do
    GenServer.cast({__MODULE__, node(owner)}, {:untrack, host, name})
  end

  ## Server

  @impl GenServer
  def init(opts) do
    table = :ets.new(@table, [:named_table, :protected, :set, read_concurrency: true])
    {watcher, groups} = watch_scope()
    members = groups |> Map.get(@group, []) |> MapSet.new()
    listeners = groups |> Map.get(@everyone, []) |> MapSet.new()
    :ok = :pg.join(@scope, @everyone, self())

    state = %{
      table: table,
      watcher: watcher,
      members: members,
      listeners: listeners,
      joined: false,
      offer:
        Keyword.get_lazy(opts, :offer, fn -> Application.get_env(:ampule, :offer, false) end),
      port: Keyword.get(opts, :port, Ampule.Port),
      port_ref: nil,
      joining: nil,
      interval:
        Keyword.get_lazy(opts, :interval, fn ->
          Application.get_env(:ampule, :cluster_interval, 1_000)
        end),
      max_containers:
        Keyword.get_lazy(opts, :max_containers, fn ->
          Application.get_env(:ampule, :max_containers, :infinity)
        end),
      load_fun: Keyword.get(opts, :load),
      containers: 0,
      cpu: cpu_sample(),
      # Until the first interval has passed, as if idle.
      cpu_idle: cpus() * 1.0,
      publish_timer: nil,
      subscribers: %{},
      # {host, name} => {host's Ampule.Port, container}, for owners on this node of
      # containers on other hosts
      tracked: %{},
      # monitor ref => a host's Ampule.Port
      host_refs: %{}
    }

    Process.send_after(self(), :tick, state.interval)
    {:ok, state, {:continue, :join}}
  end

  @impl GenServer
  def handle_continue(:join, state), do: {:noreply, join(state)}

  @impl GenServer
  def handle_call({:subscribe, pid}, _from, state) do
    ref = Process.monitor(pid)
    {:reply, :ok, %{state | subscribers: Map.put(state.subscribers, ref, pid)}}
  end

  @impl GenServer
  def handle_cast({:port_load, count}, state) do
    {:noreply, schedule_publish(%{state | containers: count})}
  end

  def handle_cast({:track, port, %Ampule.Container{host: host, name: name} = container}, state) do
    # One monitor per host's port process: a port that restarted is another one.
    state =
      if Enum.any?(state.host_refs, fn {_ref, p} -> p == port end),
        do: state,
        else: %{state | host_refs: Map.put(state.host_refs, Process.monitor(port), port)}

    {:noreply, %{state | tracked: Map.put(state.tracked, {host, name}, {port, container})}}
  end

  def handle_cast({:untrack, host, name}, state) do
    {:noreply, %{state | tracked: Map.delete(state.tracked, {host, name})}}
  end

  @impl GenServer
  def handle_info({:ampule_pg, :join, @group, pids}, state) do
    # A load a new host sent may have come before this news of its join (and been
    # dropped): it is asked for again, so as not to wait for its next one.
    for pid <- pids,
        pid != self(),
        do: :erlang.send(pid, {:ampule_load_please, self()}, [:noconnect])

    {:noreply, %{state | members: Enum.into(pids, state.members)}}
  end

  def handle_info({:ampule_pg, :join, @everyone, pids}, state) do
    # A new node hears this host's load at once, not at the next tick.
    if state.joined do
      load = load(state)
      for pid <- pids, pid != self(), do: send_load(pid, load)
    end

    {:noreply, %{state | listeners: Enum.into(pids, state.listeners)}}
  end

  def handle_info({:ampule_load_please, from}, state) do
    if state.joined, do: send_load(from, load(state))
    {:noreply, state}
  end

  def handle_info({:ampule_pg, :leave, @group, pids}, state) do
    state =
      Enum.reduce(pids, state, fn pid, acc ->
        # node/1 of a pid of this node is its name now (it may have become distributed
        # since it joined).
        node = node(pid)
        known = MapSet.member?(acc.members, pid)
        acc = %{acc | members: MapSet.delete(acc.members, pid)}

        if known and not Enum.any?(acc.members, &(node(&1) == node)) do
          :ets.delete(@table, node)
          notify(acc, :leave, node)
        end

        acc
      end)

    {:noreply, state}
  end

  def handle_info({:ampule_pg, :leave, @everyone, pids}, state) do
    {:noreply, %{state | listeners: Enum.reduce(pids, state.listeners, &MapSet.delete(&2, &1))}}
  end

  def handle_info({:ampule_pg, _kind, _group, _pids}, state), do: {:noreply, state}

  def handle_info({:ampule_load, pid, %{node: node} = load}, state) do
    # Only members count: a load that crossed a leave is dropped.
    if MapSet.member?(state.members, pid) and node(pid) == node do
      new? = not :ets.member(@table, node)
      :ets.insert(@table, {node, load})
      if new?, do: notify(state, :join, node)
    end

    {:noreply, state}
  end

  def handle_info(:tick, state) do
    Process.send_after(self(), :tick, state.interval)
    {sample, idle} = cpu_idle(state.cpu)
    state = %{state | cpu: sample, cpu_idle: idle}
    if state.joined, do: broadcast(load(state), state)
    {:noreply, state}
  end

  def handle_info(:publish, state) do
    state = %{state | publish_timer: nil}
    if state.joined, do: broadcast(load(state), state)
    {:noreply, state}
  end

  def handle_info(:retry_join, state), do: {:noreply, join(state)}

  def handle_info({ref, result}, %{joining: ref} = state) do
    Process.demonitor(ref, [:flush])
    state = %{state | joining: nil}

    case result do
      {:ok, _hello} ->
        {:noreply, do_join(state)}

      {:error, reason} ->
        Logger.debug("Ampule.Cluster: not offering containers yet: #{inspect(reason)}")
        Process.send_after(self(), :retry_join, @retry)
        {:noreply, state}
    end
  end

  def handle_info({:DOWN, ref, :process, _pid, reason}, %{joining: ref} = state) do
    Logger.debug("Ampule.Cluster: the port's hello failed: #{inspect(reason)}")
    Process.send_after(self(), :retry_join, @retry)
    {:noreply, %{state | joining: nil}}
  end

  def handle_info({:DOWN, ref, :process, _pid, _reason}, %{port_ref: ref} = state) do
    # This host's port is gone (it is restarted): leave until the new one says hello.
    :pg.leave(@scope, @group, self())
    {:noreply, join(%{state | joined: false, port_ref: nil, containers: 0})}
  end

  def handle_info({:DOWN, ref, :process, _pid, reason}, state) do
    cond do
      Map.has_key?(state.subscribers, ref) ->
        {:noreply, %{state | subscribers: Map.delete(state.subscribers, ref)}}

      Map.has_key?(state.host_refs, ref) ->
        {port, host_refs} = Map.pop(state.host_refs, ref)
        {:noreply, host_gone(port, reason, %{state | host_refs: host_refs})}

      true ->
        {:noreply, state}
    end
  end

  def handle_info(_other, state), do: {:noreply, state}

  ## Membership

  # The scope's joins and leaves come through a linked process of their own, which
  # monitors the scope: on OTP 25.2, a process that both monitors a scope and is a member
  # of its groups crashes the scope when it exits (pg's `'DOWN'` clause for its own
  # process expects one monitor per pid and finds two). This process only joins.
  defp watch_scope do
    parent = self()
    watcher = spawn_link(fn -> watch_scope(parent) end)

    receive do
      {^watcher, :groups, groups} -> {watcher, groups}
    after
      10_000 -> exit({:no_scope, @scope})
    end
  end

  defp watch_scope(parent) do
    {ref, groups} = :pg.monitor_scope(@scope)
    send(parent, {self(), :groups, groups})
    relay(ref, parent)
  end

  defp relay(ref, parent) do
    receive do
      {^ref, kind, group, pids} ->
        send(parent, {:ampule_pg, kind, group, pids})
        relay(ref, parent)
    end
  end

  ## Joining

  defp join(%{offer: false} = state), do: state
  defp join(%{port: nil} = state), do: do_join(state)

  defp join(state) do
    port = state.port

    task = Task.Supervisor.async_nolink(Ampule.TaskSupervisor, fn -> Ampule.Port.hello(port) end)

    %{state | joining: task.ref}
  end

  defp do_join(state) do
    port_ref =
      case state.port && GenServer.whereis(state.port) do
        pid when is_pid(pid) -> Process.monitor(pid)
        _ -> nil
      end

    :ok = :pg.join(@scope, @group, self())
    # Every node hears of it at once (its load may reach them before the news of its
    # join, and be dropped: then they ask, see the join of @group). This node, which
    # would hear of its own join only later, knows it now.
    load = load(state)
    broadcast(load, state)
    new? = not :ets.member(@table, load.node)
    :ets.insert(@table, {load.node, load})
    if new?, do: notify(state, :join, load.node)
    %{state | joined: true, port_ref: port_ref, members: MapSet.put(state.members, self())}
  end

  ## Load

  defp load(%{load_fun: fun}) when is_function(fun, 0), do: Map.put(fun.(), :node, node())

  defp load(state) do
    %{
      node: node(),
      containers: state.containers,
      cpus: cpus(),
      cpu_idle: state.cpu_idle,
      memory_available: memory_available(),
      max_containers: state.max_containers
    }
  end

  defp schedule_publish(%{publish_timer: nil} = state),
    do: %{state | publish_timer: Process.send_after(self(), :publish, @debounce)}

  defp schedule_publish(state), do: state

  defp broadcast(load, state) do
    for pid <- state.listeners, do: send_load(pid, load)
    :ok
  end

  # Never connects: a member whose node is gone is about to leave.
  defp send_load(pid, load), do: :erlang.send(pid, {:ampule_load, self(), load}, [:noconnect])

  defp notify(state, kind, node) do
    for {_ref, pid} <- state.subscribers, do: send(pid, {:ampule_cluster, kind, node})
    :ok
  end

  defp cpus do
    case :erlang.system_info(:logical_processors_available) do
      n when is_integer(n) -> n
      _ -> :erlang.system_info(:logical_processors)
    end
  end

  # /proc/stat's first line: {busy + idle jiffies, idle jiffies}.
  defp cpu_sample do
    with {:ok, text} <- File.read("/proc/stat"),
         ["cpu" | fields] <- text |> String.split("\n", parts: 2) |> hd() |> String.split() do
      numbers = Enum.map(fields, &String.to_integer/1)
      idle = Enum.at(numbers, 3, 0) + Enum.at(numbers, 4, 0)
      {Enum.sum(numbers), idle}
    else
      _ -> {0, 0}
    end
  end

  defp cpu_idle({total0, idle0}) do
    {total, idle} = sample = cpu_sample()

    share =
      if total > total0,
        do: (idle - idle0) / (total - total0) * cpus(),
        else: cpus() * 1.0

    {sample, Float.round(share, 2)}
  end

  defp memory_available do
    with {:ok, text} <- File.read("/proc/meminfo"),
         [_, kib] <- Regex.run(~r/^MemAvailable:\s+(\d+) kB/m, text) do
      String.to_integer(kib) * 1024
    else
      _ -> 0
    end
  end

  ## Containers of this node's owners on other hosts

  # A host's Ampule.Port went away. Over a lost connection (`:noconnection`) the host is
  # gone or cut off: its port destroys its containers when its BEAM goes, and nobody else
  # can tell their owners. A port that exited said so itself (`:port_exited`).
  defp host_gone(port, reason, state) do
    {gone, kept} = Enum.split_with(state.tracked, fn {_key, {p, _c}} -> p == port end)

    status =
      case reason do
        {:shutdown, {:port_exited, _}} -> nil
        :noconnection -> {:host_down, node(port)}
        _ -> :port_exited
      end

    if status do
      for {_key, {_port, %Ampule.Container{owner: owner} = container}} <- gone,
          do: send(owner, {:ampule_exit, container, status})
    end

    %{state | tracked: Map.new(kept)}
  end
end
