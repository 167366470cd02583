defmodule Ampule.Pool do
  @moduledoc """
  A pool of containers booted ahead of need, each handed out once: a call in a fresh
  container without waiting for a node to boot.

      children = [
        {Ampule.Pool, name: MyApp.Boxes, size: 4, memory: 128 * 1024 * 1024}
      ]

      Supervisor.start_link(children, strategy: :one_for_one)

      {:erlang, :node, []} |> Ampule.call(pool: MyApp.Boxes)

  The pool keeps `size` containers booted and never used. `Ampule.call(mfa_or_fun,
  pool: name)` takes one, runs the call and destroys the container; the pool boots a
  replacement behind. No container ever serves two calls (unless you ask for `:reuse`),
  so nothing of one call is left for the next: not a process, a file, an ETS table, a
  registered name. `with_container/3` holds one container for several calls.

  ## Options

    * `:name` - the pool's name (required), as for `GenServer`
    * `:size` - containers kept booted and unused (default 2)
    * `:max_overflow` - while callers wait for an empty pool, at most this many boots
      beyond the ones refilling it (default 0: callers wait for the refills)
    * `:checkout_timeout` - milliseconds a caller waits for a container before
      `{:error, :checkout_timeout}` (default 5000)
    * `:reuse` - how many checkouts a container serves before it is destroyed (default 1:
      pristine single-use containers). With more, a container goes back to the pool after
      each checkout, with whatever the previous callers left in it.
    * `:hosts` - where the containers are made: `nil` (default) on this node's Ampule
      alone; a list of nodes, or `:all`, for the hosts of the cluster (see "Hosts")
    * `:prepare` - what each container does before any caller gets it (see "Prepared
      containers"): `applications:`, `modules:`, `run:`. Default: nothing
    * every option of `Ampule.start/1` (`:sandbox`, `:memory`, `:boot_timeout`, ...)
      except `:owner` and `:name`: the pool owns its containers (`:prepare` is the
      pool's own, below)

  ## Lifetime

  The pool owns every container it boots. Stopping the pool, or its supervisor, destroys
  them all (also those checked out); a caller that exits while it holds a container gets
  it destroyed. A container that dies while it waits in the pool (its memory limit, a
  kill from outside) is dropped and replaced, never handed out. A checked-out container
  that dies is reported to its holder as `{:ampule_exit, container, status}`, as to an
  owner.

  Boots that fail are retried with a growing delay (up to 5 s); each failure is given to
  the longest-waiting caller, if one waits, as `{:error, reason}`.

  ## Prepared containers

  A pristine node loads each module the first time it is used: a pooled sandbox's first
  `String.upcase/1` costs ~20 ms, its first `Code.eval_string/1` over 100 ms, against
  ~0.5 ms for a call into what is loaded. `prepare:` does that loading ahead, in each
  container, after its boot and before it joins the pool, so that a pooled call pays for
  its work:

      {Ampule.Pool,
       name: MyApp.Graders,
       size: 4,
       sandbox: true,
       prepare: [
         applications: [:ex_unit],
         modules: [String, Enum, Regex, MyApp.Grading],
         run: {MyApp.Grading, :warm_up, []}
       ]}

    * `:applications` - started with `Application.ensure_all_started/1`, in order (a
      sandbox's lean boot starts only `:kernel` and `:stdlib`: name `:elixir` or an
      application that needs it to compile code);
    * `:modules` - loaded (`:code.ensure_loaded/1`), your project's modules included
      (they are on the container's code path);
    * `:run` - then `{module, function, args}` is called, e.g. compiling a small module
      so that the compiler's own modules are loaded too. Its result is dropped.

  What a prepared container holds, then, and nothing else of anyone: the applications
  named and those they depend on (their processes and ETS tables), the modules loaded,
  and whatever `run:` left (processes it started, modules it compiled, files it wrote).
  It is still pristine in the sense that matters: no caller's code has run in it, and it
  serves one checkout (unless `:reuse`). What `prepare:` names is the pool's fixed
  configuration, never a caller's.

  The pool's start checks `prepare:` by preparing its first container before
  `start_link/1` returns: an application that does not exist, a module that is not
  there, or a `run:` that raises or exits makes the start fail with
  `{:error, {:prepare_failed, why}}`, and the container is destroyed. A preparation that
  fails later (a container's memory limit, say) is a failed boot: retried with a growing
  delay, given to the longest-waiting caller. Preparation counts inside the boot: it gets
  the container's `:boot_timeout`.

  ## Hosts

  With `hosts: [node, ...]` or `hosts: :all`, each container is booted on the host with
  the most room (`Ampule.Cluster.place/2`) among those listed that offer containers now
  (`:all`: every host of the cluster, `Ampule.Cluster.hosts/0`), counting the pool's own
  boots in flight so that a refill of several spreads over the hosts:

      {Ampule.Pool, name: MyApp.Boxes, size: 12, sandbox: true, hosts: :all}

  The pool still owns its containers: each stays owned by its host's port, with the pool
  as owner, and a call goes to it directly (a sandbox's channel) or through its host (a
  distribution container's node, see `Ampule.Cluster`).

    * A host that joins the cluster (or comes back) is used from its first load report on.
    * A host that leaves, or whose node goes down, is no longer used. Its port destroys
      its containers. The pool drops those it held idle; a holder of one gets
      `{:ampule_exit, container, {:host_down, node}}`, and a call in flight there fails
      with `{:host_down, node}`. Each boot that was under way there fails, and its failure
      goes to the longest-waiting caller, `{:error, {:host_down, node}}`, at once; the
      pool refills on the other hosts without delay.
    * With no host to boot on, waiting callers get `{:error, :no_host}`, and the pool
      boots again when a host joins.
  """

  use GenServer
  require Logger

  alias Ampule.Container

  @pool_options [:name, :size, :max_overflow, :checkout_timeout, :reuse, :hosts, :prepare]
  @max_backoff 5_000

  @typedoc "A pool: its name or pid."
  @type pool :: GenServer.server()

  @doc false
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :name, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      # Destroying what the pool holds takes a few milliseconds a container.
      shutdown: 30_000
    }
  end

  @doc "Starts a pool linked to the caller; see the options above."
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts) do
    {name, _} = Keyword.pop(opts, :name)
    name || raise ArgumentError, "Ampule.Pool needs a :name"
    {pool_opts, spawn_opts} = Keyword.split(opts, @pool_options)
    config = config!(pool_opts, spawn_opts)
    GenServer.start_link(__MODULE__, config, name: name)
  end

  @doc """
  Takes a container out of the pool for the caller, waiting up to the pool's
  `:checkout_timeout`. Give it back with `checkin/2` (which destroys it); if the caller
  exits first, the pool destroys it.
  """
  @spec checkout(pool) :: {:ok, Container.t()} | {:error, Ampule.Error.reason()}
  def checkout(pool) do
    # The pool answers within its checkout timeout; this only guards a pool that is gone.
    GenServer.call(pool, {:checkout, self()}, :infinity)
  catch
    :exit, {reason, _} when reason in [:noproc, :normal, :shutdown] -> {:error, :not_running}
  end

  @doc "Gives a container back: destroyed, or with `:reuse`, back to the pool."
  @spec checkin(pool, Container.t()) :: :ok
  def checkin(pool, %Container{} = container) do
    GenServer.cast(pool, {:checkin, container, self()})
  end

  @doc """
  Runs `fun` with a container of the pool, then gives it back: for several calls in one
  container. Returns `fun`'s result; raises `Ampule.Error` if no container came.

      Ampule.Pool.with_container(MyApp.Boxes, fn c ->
        :ok = Ampule.call({File, :write, ["/tmp/x", "1"]}, c)
        Ampule.call({File, :read!, ["/tmp/x"]}, c)
      end)
      #=> "1"
  """
  @spec with_container(pool, (Container.t() -> result)) :: result when result: term
  def with_container(pool, fun) when is_function(fun, 1) do
    case checkout(pool) do
      {:ok, container} ->
        try do
          fun.(container)
        after
          checkin(pool, container)
        end

      {:error, reason} ->
        raise Ampule.Error, reason: reason
    end
  end

  @doc """
  How many containers are idle, booting, checked out, and how many callers wait; `hosts`
  counts the pool's containers (in any of those states) on each host.
  """
  @spec stats(pool) :: %{
          idle: non_neg_integer,
          booting: non_neg_integer,
          checked_out: non_neg_integer,
          waiting: non_neg_integer,
          hosts: %{node => non_neg_integer}
        }
  def stats(pool), do: GenServer.call(pool, :stats)

  ## Options

  defp config!(pool_opts, spawn_opts) do
    for key <- [:owner, :name], Keyword.has_key?(spawn_opts, key) do
      raise ArgumentError, "Ampule.Pool owns its containers: #{inspect(key)} is not an option"
    end

    # Validates the spawn options now, as Ampule.start/1 would, so that a bad one fails
    # the pool's start rather than every boot.
    _ = Ampule.Options.spawn!(spawn_opts)

    %{
      hosts: hosts!(Keyword.get(pool_opts, :hosts)),
      size: positive!(pool_opts, :size, 2, 0),
      max_overflow: positive!(pool_opts, :max_overflow, 0, 0),
      checkout_timeout: positive!(pool_opts, :checkout_timeout, 5_000, 1),
      reuse: positive!(pool_opts, :reuse, 1, 1),
      prepare: Ampule.Prepare.validate!(Keyword.get(pool_opts, :prepare)),
      prepare_timeout: Keyword.get(spawn_opts, :boot_timeout, 15_000),
      spawn_opts: spawn_opts
    }
  end

  defp hosts!(hosts) when hosts in [nil, :all], do: hosts

  defp hosts!([_ | _] = hosts) do
    if Enum.all?(hosts, &(is_atom(&1) and &1 not in [nil, true, false])),
      do: hosts,
      else: hosts!(:bad)
  end

  defp hosts!(other) do
    raise ArgumentError,
          "invalid value for the :hosts option: expected nil, :all or a list of nodes, " <>
            "got: #{inspect(other)}"
  end

  defp positive!(opts, key, default, min) do
    case Keyword.get(opts, key, default) do
      n when is_integer(n) and n >= min ->
        n

      other ->
        raise ArgumentError,
              "invalid value for the #{inspect(key)} option: expected an integer >= #{min}, " <>
                "got: #{inspect(other)}"
    end
  end

  ## Server

  @impl GenServer
  def init(config) do
    Process.flag(:trap_exit, true)
    # Hosts that join are used at once; those that leave are seen in the containers' exits.
    if config.hosts, do: :ok = Ampule.Cluster.subscribe()

    state =
      Map.merge(config, %{
        idle: :queue.new(),
        # boot task ref => host (nil: this node's Ampule)
        booting: %{},
        # caller monitor ref => {container, caller}
        out: %{},
        # container name => uses so far (only with :reuse > 1)
        uses: %{},
        # queue of {from, caller, monitor ref, timer}
        waiting: :queue.new(),
        failures: 0,
        refill_timer: nil
      })

    # A `prepare:` is checked on the first container, before start_link returns.
    case first_prepared(state) do
      :none -> {:ok, refill(state)}
      {:ok, container} -> {:ok, refill(give(container, state))}
      {:error, reason} -> {:stop, reason}
    end
  end

  defp first_prepared(%{prepare: nil}), do: :none
  defp first_prepared(%{hosts: hosts}) when hosts != nil, do: :none

  defp first_prepared(state),
    do: prepared(Ampule.Containers.start([owner: self()] ++ state.spawn_opts), state)

  defp prepared(started, state),
    do: Ampule.Containers.prepared(started, state.prepare, state.prepare_timeout)

  @impl GenServer
  def handle_call({:checkout, caller}, from, state) do
    case :queue.out(state.idle) do
      {{:value, container}, idle} ->
        state = hand_out(container, caller, from, %{state | idle: idle})
        {:noreply, refill(state)}

      {:empty, _} ->
        ref = Process.monitor(caller)
        timer = Process.send_after(self(), {:checkout_timeout, ref}, state.checkout_timeout)
        waiting = :queue.in({from, caller, ref, timer}, state.waiting)
        {:noreply, refill(%{state | waiting: waiting})}
    end
  end

  def handle_call(:stats, _from, state) do
    stats = %{
      idle: :queue.len(state.idle),
      booting: map_size(state.booting),
      checked_out: map_size(state.out),
      waiting: :queue.len(state.waiting),
      hosts:
        Enum.frequencies(
          Enum.map(:queue.to_list(state.idle), &host_of/1) ++
            Enum.map(state.out, fn {_ref, {c, _}} -> host_of(c) end) ++
            Enum.map(state.booting, fn {_ref, host} -> host || node() end)
        )
    }

    {:reply, stats, state}
  end

  @impl GenServer
  def handle_cast({:checkin, %Container{name: name} = container, caller}, state) do
    case Enum.find(state.out, fn {_ref, {c, who}} -> c.name == name and who == caller end) do
      {ref, _} ->
        Process.demonitor(ref, [:flush])
        state = %{state | out: Map.delete(state.out, ref)}
        uses = Map.get(state.uses, name, 0) + 1

        if uses < state.reuse do
          state = %{state | uses: Map.put(state.uses, name, uses)}
          {:noreply, refill(give(container, state))}
        else
          destroy(container)
          {:noreply, refill(%{state | uses: Map.delete(state.uses, name)})}
        end

      nil ->
        {:noreply, state}
    end
  end

  @impl GenServer
  def handle_info({ref, result}, state) when is_map_key(state.booting, ref) do
    Process.demonitor(ref, [:flush])
    state = %{state | booting: Map.delete(state.booting, ref)}

    case result do
      {:ok, container} ->
        {:noreply, refill(give(container, %{state | failures: 0}))}

      {:error, {:host_down, _} = reason} ->
        # Not this pool's failure: the other hosts take the refill at once.
        {:noreply, state |> fail_waiter(reason) |> refill()}

      {:error, reason} ->
        {:noreply, boot_failed(reason, state)}
    end
  end

  def handle_info({:DOWN, ref, :process, _pid, reason}, state)
      when is_map_key(state.booting, ref) do
    state = %{state | booting: Map.delete(state.booting, ref)}
    {:noreply, boot_failed({:exit, reason}, state)}
  end

  def handle_info({:DOWN, ref, :process, _pid, _reason}, state) do
    case Map.pop(state.out, ref) do
      {{container, _caller}, out} ->
        # Its holder exited without giving it back.
        destroy(container)
        {:noreply, refill(%{state | out: out, uses: Map.delete(state.uses, container.name)})}

      {nil, _} ->
        # A waiting caller exited.
        {:noreply, refill(%{state | waiting: drop_waiter(state.waiting, ref)})}
    end
  end

  def handle_info({:checkout_timeout, ref}, state) do
    case take_waiter(state.waiting, ref) do
      {{from, _caller, ^ref, _timer}, waiting} ->
        Process.demonitor(ref, [:flush])
        GenServer.reply(from, {:error, :checkout_timeout})
        {:noreply, refill(%{state | waiting: waiting})}

      nil ->
        {:noreply, state}
    end
  end

  def handle_info({:ampule_exit, %Container{name: name}, status} = exit, state) do
    idle = :queue.filter(fn c -> c.name != name end, state.idle)

    Enum.each(state.out, fn
      {_ref, {%Container{name: ^name} = c, caller}} ->
        send(caller, put_elem(exit, 1, c))

      _ ->
        :ok
    end)

    if :queue.len(idle) < :queue.len(state.idle) do
      Logger.info("Ampule.Pool: idle container #{name} ended (#{inspect(status)}); replacing it")
    end

    {:noreply, refill(%{state | idle: idle, uses: Map.delete(state.uses, name)})}
  end

  def handle_info(:refill, state), do: {:noreply, refill(%{state | refill_timer: nil})}

  def handle_info({:ampule_cluster, :join, _node}, state) do
    # A host to boot on: at once, whatever delay a failure had set.
    if state.refill_timer, do: Process.cancel_timer(state.refill_timer)
    {:noreply, refill(%{state | refill_timer: nil})}
  end

  def handle_info({:EXIT, _pid, _reason}, state), do: {:noreply, state}
  def handle_info(_other, state), do: {:noreply, state}

  @impl GenServer
  def terminate(_reason, state) do
    # Synchronously: the pool's containers are gone when its supervisor moves on.
    held = Enum.map(state.out, fn {_ref, {c, _}} -> c end)

    (:queue.to_list(state.idle) ++ held)
    |> Enum.map(&Task.async(fn -> Ampule.Containers.destroy(&1) end))
    |> Task.await_many(25_000)

    for {from, _, _, _} <- :queue.to_list(state.waiting),
        do: GenServer.reply(from, {:error, :not_running})

    :ok
  end

  ## Internals

  # A ready container: to the longest-waiting caller, else idle (or destroyed, beyond
  # what the pool keeps).
  defp give(container, state) do
    case :queue.out(state.waiting) do
      {{:value, {from, caller, ref, timer}}, waiting} ->
        Process.demonitor(ref, [:flush])
        Process.cancel_timer(timer)
        hand_out(container, caller, from, %{state | waiting: waiting})

      {:empty, _} ->
        if :queue.len(state.idle) < state.size do
          %{state | idle: :queue.in(container, state.idle)}
        else
          destroy(container)
          state
        end
    end
  end

  defp hand_out(container, caller, from, state) do
    ref = Process.monitor(caller)
    GenServer.reply(from, {:ok, container})
    %{state | out: Map.put(state.out, ref, {container, caller})}
  end

  # Boots what is missing: `size` containers idle or booting, and for waiting callers up
  # to `max_overflow` more.
  defp refill(%{refill_timer: timer} = state) when timer != nil, do: state

  defp refill(state) do
    extra = min(:queue.len(state.waiting), state.max_overflow)
    missing = state.size + extra - :queue.len(state.idle) - map_size(state.booting)

    if missing > 0 do
      Enum.reduce_while(1..missing, state, fn _, acc ->
        case place(acc) do
          {:ok, host} ->
            {:cont, %{acc | booting: Map.put(acc.booting, boot(host, acc).ref, host)}}

          {:error, :no_host} ->
            {:halt, no_host(acc)}
        end
      end)
    else
      state
    end
  end

  # This node's Ampule, or the host with the most room, counting the boots in flight.
  defp place(%{hosts: nil}), do: {:ok, nil}

  defp place(state) do
    pending = state.booting |> Map.values() |> Enum.frequencies()
    Ampule.Cluster.place(Ampule.Cluster.hosts(), pending: pending, among: state.hosts)
  end

  # No host to boot on: with nothing booting, no container is coming for the callers who
  # wait; a host that joins starts the refill again.
  defp no_host(state) do
    if map_size(state.booting) == 0 do
      for {from, _caller, ref, timer} <- :queue.to_list(state.waiting) do
        Process.demonitor(ref, [:flush])
        Process.cancel_timer(timer)
        GenServer.reply(from, {:error, :no_host})
      end

      %{state | waiting: :queue.new()}
    else
      state
    end
  end

  defp boot(host, state) do
    pool = self()
    opts = if host, do: [owner: pool, on: host], else: [owner: pool]
    config = Map.take(state, [:prepare, :prepare_timeout, :spawn_opts])

    Task.Supervisor.async_nolink(Ampule.TaskSupervisor, fn ->
      prepared(Ampule.Containers.start(opts ++ config.spawn_opts), config)
    end)
  end

  defp host_of(%Container{host: nil}), do: node()
  defp host_of(%Container{host: host}), do: host

  defp boot_failed(reason, state) do
    Logger.warning("Ampule.Pool: a boot failed: #{Ampule.Error.format_error(reason)}")
    state = fail_waiter(state, reason)

    failures = state.failures + 1
    delay = min(50 * Integer.pow(2, min(failures, 10)), @max_backoff)
    %{state | failures: failures, refill_timer: Process.send_after(self(), :refill, delay)}
  end

  # A boot failed: its failure goes to the longest-waiting caller.
  defp fail_waiter(state, reason) do
    case :queue.out(state.waiting) do
      {{:value, {from, _caller, ref, timer}}, waiting} ->
        Process.demonitor(ref, [:flush])
        Process.cancel_timer(timer)
        GenServer.reply(from, {:error, reason})
        %{state | waiting: waiting}

      {:empty, _} ->
        state
    end
  end

  defp destroy(container) do
    Task.Supervisor.start_child(Ampule.TaskSupervisor, fn ->
      Ampule.Containers.destroy(container)
    end)
  end

  defp take_waiter(waiting, ref) do
    case Enum.split_with(:queue.to_list(waiting), fn {_, _, r, _} -> r == ref end) do
      {[waiter], rest} -> {waiter, :queue.from_list(rest)}
      _ -> nil
    end
  end

  defp drop_waiter(waiting, ref) do
    :queue.filter(
      fn {_, _, r, timer} ->
        if r == ref, do: Process.cancel_timer(timer)
        r != ref
      end,
      waiting
    )
  end
end
