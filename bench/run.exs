# Ampule's two kinds of container against :peer, side by side in one run (interleaved
# wherever there are several sides, so that the machine's drift hits all alike). Run with
# `script/bench` (as root). Prints a Markdown report, writes it to bench/results.md, and
# draws bench/throughput.png with gnuplot.
#
# Sizes (environment): BENCH_COLD (cold starts per side, 40), BENCH_RPC (call round trips
# per side, 10000), BENCH_POOL (pooled calls per mode, 100), BENCH_SUSTAINED (calls per
# sustained-throughput round, 48), BENCH_MAP (elements of each map, 100), BENCH_DENSITY
# (distribution containers up at once, at most 200), BENCH_SANDBOXES (sandboxes up at
# once, 500), BENCH_ROUNDS (rounds of the throughput measure, 3). AMPULE_BRIDGE,
# AMPULE_SUBNET and AMPULE_STATE_DIR as for the suite (bench/support.exs).

Code.require_file("support.exs", __DIR__)
Bench.Env.apply()

defmodule Bench.Sides do
  alias Bench.{Cgroup, Release}

  # One cold start of each side: start, one call, stop. Each returns {µs, container CPU µs}.

  # Timed: start, rpc, stop. :peer.stop/1 returns before the node's OS process is gone,
  # so (untimed) wait for that too: a peer still shutting down would steal CPU from the
  # next sample, which is Ampule's.
  def peer_cold do
    t0 = System.monotonic_time(:microsecond)
    {pid, node} = peer_start()
    _ = :rpc.call(node, :erlang, :node, [])
    t1 = System.monotonic_time(:microsecond)
    os_pid = peer_os_pid(node)
    cpu = peer_cpu_us(os_pid)
    t2 = System.monotonic_time(:microsecond)
    :peer.stop(pid)
    t3 = System.monotonic_time(:microsecond)
    Release.wait_gone(os_pid)
    {t1 - t0 + (t3 - t2), cpu}
  end

  def peer_os_pid(node), do: :rpc.call(node, :os, :getpid, []) |> List.to_integer()

  # utime + stime of the node's BEAM, in µs (clock ticks of 10 ms: a coarse figure).
  defp peer_cpu_us(os_pid) do
    fields =
      File.read!("/proc/#{os_pid}/stat") |> String.split(") ") |> List.last() |> String.split()

    (String.to_integer(Enum.at(fields, 11)) + String.to_integer(Enum.at(fields, 12))) * 10_000
  end

  def peer_stop({pid, node}) do
    os_pid = peer_os_pid(node)
    :peer.stop(pid)
    Release.wait_gone(os_pid)
  end

  # Timed: spawn, rpc, destroy. `destroy` returns once the node is dead and releases the
  # veth, cgroups and address behind; (untimed) wait for that too, as for a peer's exit.
  def dist_cold do
    t0 = System.monotonic_time(:microsecond)
    c = Ampule.spawn()
    _ = :rpc.call(c.nodename, :erlang, :node, [])
    cpu = Cgroup.cpu_us(c.name)
    Ampule.destroy(c)
    us = System.monotonic_time(:microsecond) - t0
    :ok = Release.wait(c)
    {us, cpu}
  end

  # Timed: spawn a sandbox, one call through its agent, destroy.
  def sandbox_cold do
    t0 = System.monotonic_time(:microsecond)
    c = Ampule.spawn(sandbox: true)
    :nonode@nohost = Ampule.call({:erlang, :node, []}, c)
    cpu = Cgroup.cpu_us(c.name)
    Ampule.destroy(c)
    us = System.monotonic_time(:microsecond) - t0
    :ok = Release.wait(c)
    {us, cpu}
  end

  def peer_start, do: Bench.Peer.start()

  def dist_start, do: Ampule.spawn(owner: false)
  def sandbox_start, do: Ampule.spawn(owner: false, sandbox: true)

  def ampule_stop(c) do
    Ampule.destroy(c)
    :ok = Release.wait(c)
  end

  # `k` boots in flight until `total` are up; returns {boots per second, per-boot µs}.
  # Timed until the last node is ready; the stops (each side's full stop) come after,
  # untimed, so that the next sample starts on a quiet machine.
  def throughput(start, stop, k, total) do
    parent = self()

    {us, handles} =
      :timer.tc(fn ->
        1..total
        |> Task.async_stream(
          fn _ ->
            {boot_us, handle} = :timer.tc(start)
            send(parent, {:boot_us, boot_us})
            handle
          end,
          max_concurrency: k,
          timeout: 120_000
        )
        |> Enum.map(fn {:ok, h} -> h end)
      end)

    Enum.each(handles, stop)
    boots = for _ <- 1..total, do: receive(do: ({:boot_us, b} -> b))
    {total / (us / 1_000_000), boots}
  end
end

defmodule Bench.Machine do
  # Busy CPU time of the whole machine (every process and the kernel), in µs: /proc/stat's
  # first line, all but idle and iowait. Meaningful only on a quiet machine.
  def busy_us do
    [_cpu | fields] = File.read!("/proc/stat") |> String.split("\n") |> hd() |> String.split()

    [user, nice, system, _idle, _iowait, irq, softirq, steal | _] =
      Enum.map(fields, &String.to_integer/1)

    (user + nice + system + irq + softirq + steal) * div(1_000_000, ticks())
  end

  defp ticks, do: 100

  def fd_count(os_pid) do
    case File.ls("/proc/#{os_pid}/fd") do
      {:ok, l} -> length(l)
      _ -> 0
    end
  end

  def nofile_limit(os_pid) do
    case Regex.run(~r/Max open files\s+(\d+)/, File.read!("/proc/#{os_pid}/limits")) do
      [_, n] -> String.to_integer(n)
      _ -> nil
    end
  end

  def int_file(path), do: path |> File.read!() |> String.trim() |> String.to_integer()

  # Used and total KiB of the filesystem at `path` (df).
  def df_kib(path) do
    {out, 0} = System.cmd("df", ["-k", "--output=used,size", path])
    [_, line | _] = String.split(out, "\n")
    [used, size] = line |> String.split() |> Enum.map(&String.to_integer/1)
    {used, size}
  end
end

defmodule Bench.Pools do
  # Until both pools are full (idle = size, nothing booting) and every container they
  # destroyed has been released (the apps directory holds only their idle ones).
  def wait_full(pools, idle_total) do
    full =
      Enum.all?(pools, fn {p, size} ->
        match?(%{idle: ^size, booting: 0}, Ampule.Pool.stats(p))
      end)

    released =
      case File.ls(Path.join(Bench.Env.state_dir(), "apps")) do
        {:ok, l} -> length(l) <= idle_total
        _ -> true
      end

    if full and released do
      :ok
    else
      Process.sleep(2)
      wait_full(pools, idle_total)
    end
  end

  # Calls that outpace refills: `callers` processes make `total` calls back to back through
  # a full pool of `size`. The first `size` calls find a booted container; from then on each
  # waits for a refill. Returns calls per second after the first `size` completed.
  def sustained(pool, total, callers) do
    counter = :atomics.new(1, [])
    t0 = System.monotonic_time(:microsecond)

    done =
      1..callers
      |> Enum.map(fn _ ->
        Task.async(fn -> loop(pool, counter, total, []) end)
      end)
      |> Task.await_many(600_000)
      |> List.flatten()
      |> Enum.sort()

    {done, t0}
  end

  defp loop(pool, counter, total, acc) do
    if :atomics.add_get(counter, 1, 1) <= total do
      _ = Ampule.call({:erlang, :node, []}, pool: pool, timeout: 60_000)
      loop(pool, counter, total, [System.monotonic_time(:microsecond) | acc])
    else
      acc
    end
  end
end

alias Bench.{Cgroup, Machine, Memory, Pools, Release, Sides, Stats}

n_cold = String.to_integer(System.get_env("BENCH_COLD", "40"))
n_rpc = String.to_integer(System.get_env("BENCH_RPC", "10000"))
n_pool = String.to_integer(System.get_env("BENCH_POOL", "100"))
n_sustained = String.to_integer(System.get_env("BENCH_SUSTAINED", "48"))
n_map = String.to_integer(System.get_env("BENCH_MAP", "100"))
n_density = min(String.to_integer(System.get_env("BENCH_DENSITY", "100")), 200)
n_sandboxes = String.to_integer(System.get_env("BENCH_SANDBOXES", "500"))
n_rounds = String.to_integer(System.get_env("BENCH_ROUNDS", "3"))
loads = [{"start", Bench.Env.load()}]
section = fn name -> IO.puts(:stderr, "#{name} (load #{Bench.Env.load()})") end

# Warm up every side once (page cache, distribution, the port's first containers).
Sides.dist_cold()
Sides.sandbox_cold()
Sides.peer_cold()

section.("cold starts")

cold_sides = [dist: &Sides.dist_cold/0, sandbox: &Sides.sandbox_cold/0, peer: &Sides.peer_cold/0]

cold =
  Enum.reduce(1..n_cold, %{dist: [], sandbox: [], peer: []}, fn i, acc ->
    Enum.reduce(Stats.rotate(cold_sides, i), acc, fn {side, f}, acc ->
      Map.update!(acc, side, &[f.() | &1])
    end)
  end)

cold_us = Map.new(cold, fn {k, v} -> {k, Enum.map(v, &elem(&1, 0))} end)
cold_cpu = Map.new(cold, fn {k, v} -> {k, Enum.map(v, &elem(&1, 1))} end)

section.("call round trips")
c = Ampule.spawn()
s = Ampule.spawn(sandbox: true)
{ppid, pnode} = Sides.peer_start()

times = fn f, n -> for _ <- 1..n, do: Stats.time(f) end

rtt_sides = [
  peer_rpc: fn -> :rpc.call(pnode, :erlang, :node, []) end,
  dist_rpc: fn -> :rpc.call(c.nodename, :erlang, :node, []) end,
  dist_call: fn -> Ampule.call({:erlang, :node, []}, c) end,
  sandbox_call: fn -> Ampule.call({:erlang, :node, []}, s) end
]

# Interleaved in blocks, so that a noisy moment hits every side.
rtt =
  Enum.reduce(1..10, Map.new(rtt_sides, fn {k, _} -> {k, []} end), fn i, acc ->
    Enum.reduce(Stats.rotate(rtt_sides, i), acc, fn {side, f}, acc ->
      Map.update!(acc, side, &(&1 ++ times.(f, div(n_rpc, 10))))
    end)
  end)

:peer.stop(ppid)
Sides.ampule_stop(c)
Sides.ampule_stop(s)

section.("anonymous calls")

# Each anonymous call makes, uses and destroys its container; the release is awaited,
# untimed, before the next, alternating the two kinds.
anon =
  Enum.reduce(1..n_cold, %{dist: [], sandbox: []}, fn i, acc ->
    [dist: [], sandbox: [sandbox: true]]
    |> Stats.rotate(i)
    |> Enum.reduce(acc, fn {kind, opts}, acc ->
      us = Stats.time(fn -> Ampule.call({:erlang, :node, []}, opts) end)
      :ok = Release.wait_no_containers()
      Map.update!(acc, kind, &[us | &1])
    end)
  end)

section.("pooled calls")
pool_size = 4
{:ok, dist_pool} = Ampule.Pool.start_link(name: :bench_dist_pool, size: pool_size)

{:ok, sandbox_pool} =
  Ampule.Pool.start_link(name: :bench_sandbox_pool, size: pool_size, sandbox: true)

pools = [{:bench_dist_pool, pool_size}, {:bench_sandbox_pool, pool_size}]

# One call at a time, each into a full pool of booted containers (and nothing else of
# the previous call still being released): the taking, the call, the giving back. The
# refill that each call starts runs during the next one's wait, untimed.
pooled =
  Enum.reduce(1..n_pool, %{dist: [], sandbox: []}, fn i, acc ->
    [dist: :bench_dist_pool, sandbox: :bench_sandbox_pool]
    |> Stats.rotate(i)
    |> Enum.reduce(acc, fn {kind, pool}, acc ->
      Pools.wait_full(pools, 2 * pool_size)
      us = Stats.time(fn -> Ampule.call({:erlang, :node, []}, pool: pool) end)
      Map.update!(acc, kind, &[us | &1])
    end)
  end)

section.("sustained pooled calls")

# Calls that outpace refills: 4 callers, back to back, through each pool (2 rounds each,
# alternating), against the throughput of boots 4 in flight measured below.
sustained =
  Enum.reduce(1..2, %{dist: [], sandbox: []}, fn i, acc ->
    [dist: :bench_dist_pool, sandbox: :bench_sandbox_pool]
    |> Stats.rotate(i)
    |> Enum.reduce(acc, fn {kind, pool}, acc ->
      Pools.wait_full(pools, 2 * pool_size)
      busy0 = Machine.busy_us()
      {done, _t0} = Pools.sustained(pool, n_sustained, pool_size)
      busy = Machine.busy_us() - busy0
      t_a = Enum.at(done, pool_size - 1)
      t_b = List.last(done)
      rate = (length(done) - pool_size) / ((t_b - t_a) / 1_000_000)
      Map.update!(acc, kind, &[%{rate: rate, busy_per_call: busy / length(done)} | &1])
    end)
  end)

GenServer.stop(dist_pool)
GenServer.stop(sandbox_pool)
:ok = Release.wait_no_containers()

section.("throughput")
in_flight = [1, 2, 4, 8]

tp_sides = [
  dist: {&Sides.dist_start/0, &Sides.ampule_stop/1},
  sandbox: {&Sides.sandbox_start/0, &Sides.ampule_stop/1},
  peer: {&Sides.peer_start/0, &Sides.peer_stop/1}
]

# Rounds of every k on every side, so that the machine's drift over a minute (these
# machines are noisy) spreads over all ks instead of skewing the ratio between two of them.
samples =
  for round <- 1..n_rounds,
      k <- in_flight,
      {side, {start, stop}} <- Stats.rotate(tp_sides, round) do
    {rate, boots} = Sides.throughput(start, stop, k, 16)
    {side, k, rate, boots}
  end

throughput =
  for {side, _} <- tp_sides, k <- in_flight, into: %{} do
    mine = for {^side, ^k, _, _} = s <- samples, do: s

    {{side, k},
     %{
       rate: Stats.median(Enum.map(mine, &elem(&1, 2))),
       boot: Stats.median(Enum.flat_map(mine, &elem(&1, 3)))
     }}
  end

section.("map")

# Ampule.map over n_map elements, cold containers (no pool), both kinds, 1, 2 and 4 in
# flight; the machine's busy CPU time over each (every process and the kernel).
maps =
  for k <- [1, 2, 4], {kind, opts} <- [dist: [], sandbox: [sandbox: true]], into: %{} do
    busy0 = Machine.busy_us()

    {us, results} =
      :timer.tc(fn ->
        1..n_map
        |> Ampule.map({:erlang, :phash2, []}, [max_concurrency: k] ++ opts)
        |> Enum.to_list()
      end)

    busy = Machine.busy_us() - busy0
    ok = Enum.count(results, &match?({:ok, _}, &1))
    :ok = Release.wait_no_containers()
    {{kind, k}, %{rate: n_map / (us / 1_000_000), ok: ok, busy_per: busy / n_map}}
  end

section.("density: distribution containers")
port_rss_idle = Memory.port_rss_kib()

ping = fn request ->
  for _ <- 1..1000, do: Stats.time(fn -> {:ok, _} = Ampule.Port.request(request) end)
end

# The port's own overhead per request and its RSS, with `n` containers up.
overhead = fn up ->
  %{
    n: length(up),
    list: ping.(:list),
    info: ping.({:info, hd(up).name}),
    rss: Memory.port_rss_kib()
  }
end

# One at a time up to n_density; stop at the first failure. The port's overhead is
# measured at 50 up, on the way.
{up, density_error, at_50} =
  Enum.reduce_while(1..n_density, {[], nil, nil}, fn i, {acc, _, at_50} ->
    case Ampule.start(owner: false) do
      {:ok, c} ->
        acc = [c | acc]
        {:cont, {acc, nil, if(i == 50, do: overhead.(acc), else: at_50)}}

      {:error, reason} ->
        {:halt, {acc, reason, at_50}}
    end
  end)

at_50 = at_50 || overhead.(up)
port_rss_up = Memory.port_rss_kib()
mem = Enum.map(up, fn c -> Memory.of_container(c.name) end)

destroy_all = fn up ->
  :timer.tc(fn ->
    destroy_us =
      Stats.time(fn ->
        up
        |> Task.async_stream(&Ampule.destroy/1, max_concurrency: 8, timeout: 60_000)
        |> Stream.run()
      end)

    Enum.each(up, &(:ok = Release.wait(&1)))
    destroy_us
  end)
end

{released_us, destroy_us} = destroy_all.(up)
dist_density = %{up: length(up), error: density_error, mem: mem}

section.("density: sandboxes")

# Sandboxes up to n_sandboxes (4 booting at a time; stop at the first failure), then what
# holds them: memory (PSS of each one's processes, its cgroup's charge, the host's
# MemAvailable), processes and threads, file descriptors of the port and of this BEAM,
# the tmpfs of application containers, and what 500 idle nodes cost in CPU.
beam_pid = String.to_integer(to_string(:os.getpid()))
port_pid = Ampule.Port.os_pid()
avail_before = Memory.available_kib()
port_fds_before = Machine.fd_count(port_pid)
beam_fds_before = Machine.fd_count(beam_pid)
ports_before = :erlang.system_info(:port_count)
{tmpfs_before, tmpfs_size} = Machine.df_kib(Path.join(Bench.Env.state_dir(), "apps"))

{sb_us, sb_started} =
  :timer.tc(fn ->
    1..n_sandboxes
    |> Task.async_stream(fn _ -> Ampule.start(owner: false, sandbox: true) end,
      max_concurrency: 4,
      timeout: 120_000,
      ordered: false
    )
    |> Enum.map(fn {:ok, r} -> r end)
  end)

sandboxes = for {:ok, c} <- sb_started, do: c
sb_errors = for {:error, r} <- sb_started, do: r
# Let the last boots' garbage settle before measuring.
Process.sleep(2_000)
avail_up = Memory.available_kib()
sb_mem = Enum.map(sandboxes, fn c -> Memory.of_container(c.name) end)
sb_charge = Enum.map(sandboxes, fn c -> Cgroup.memory_kib(c.name) end)
sb_pids = Enum.map(sandboxes, fn c -> Cgroup.pids_current(c.name) end)
sb_pids_max = sandboxes |> hd() |> then(&Cgroup.pids_max(&1.name))
{tmpfs_up, _} = Machine.df_kib(Path.join(Bench.Env.state_dir(), "apps"))
port_fds_up = Machine.fd_count(port_pid)
beam_fds_up = Machine.fd_count(beam_pid)
ports_up = :erlang.system_info(:port_count)
port_rss_sb = Memory.port_rss_kib()
cpu0 = Enum.map(sandboxes, &Cgroup.cpu_us(&1.name))
Process.sleep(5_000)

idle_cpu_us =
  Enum.zip_with(sandboxes, cpu0, fn c, a -> Cgroup.cpu_us(c.name) - a end) |> Enum.sum()

# Every sandbox still answers.
answering =
  sandboxes
  |> Task.async_stream(fn c -> Ampule.call({:erlang, :+, [1, 1]}, c) end, max_concurrency: 8)
  |> Enum.count(&match?({:ok, 2}, &1))

{sb_released_us, sb_destroy_us} = destroy_all.(sandboxes)
:ok = Release.wait_no_containers()

# :peer nodes for the same memory comparison (10 are enough for a median).
peers = for _ <- 1..10, do: Sides.peer_start()
peer_mem = Enum.map(peers, fn {_, node} -> Memory.of_pids(Memory.peer_pids(node)) end)
Enum.each(peers, &Sides.peer_stop/1)

loads = loads ++ [{"end", Bench.Env.load()}]

## The report

t = throughput
med = &Stats.median/1
p99 = &Stats.pct(&1, 99)
cores = System.schedulers_online()
cpu_boot = %{dist: med.(cold_cpu.dist), sandbox: med.(cold_cpu.sandbox)}
cpu_bound = Map.new(cpu_boot, fn {k, us} -> {k, cores / (us / 1_000_000)} end)
sust = Map.new(sustained, fn {k, v} -> {k, med.(Enum.map(v, & &1.rate))} end)
sust_busy = Map.new(sustained, fn {k, v} -> {k, med.(Enum.map(v, & &1.busy_per_call))} end)
rate = fn x -> Stats.f1(x) end
ks = &Enum.map_join(in_flight, " / ", fn k -> rate.(t[{&1, k}].rate) end)
lat = &Enum.map_join(in_flight, " / ", fn k -> Stats.ms(t[{&1, k}].boot) end)
pss = fn mem -> med.(Enum.map(mem, &elem(&1, 1))) end
rss = fn mem -> med.(Enum.map(mem, &elem(&1, 0))) end
n_up = length(sandboxes)
per_sb_avail = if n_up > 0, do: (avail_before - avail_up) / n_up, else: 0
sb_threads = Enum.sum(Enum.reject(sb_pids, &is_nil/1))

report = """
Machine: #{Bench.Env.machine()}. Load (1, 5, 15 min) at the start: #{loads |> hd() |> elem(1)}; at the end: #{loads |> List.last() |> elem(1)}.

### Cold start, calls, boots

| measure | distribution | sandbox | :peer | distribution / :peer | sandbox / :peer |
|---|---|---|---|---|---|
| cold start: start → call → stop, median (n=#{n_cold}) | #{Stats.ms(med.(cold_us.dist))} ms | #{Stats.ms(med.(cold_us.sandbox))} ms | #{Stats.ms(med.(cold_us.peer))} ms | #{Stats.ratio(med.(cold_us.dist), med.(cold_us.peer))} | #{Stats.ratio(med.(cold_us.sandbox), med.(cold_us.peer))} |
| cold start p95 | #{Stats.ms(Stats.pct(cold_us.dist, 95))} ms | #{Stats.ms(Stats.pct(cold_us.sandbox, 95))} ms | #{Stats.ms(Stats.pct(cold_us.peer, 95))} ms | | |
| CPU of one cold start (the container's cgroup; a `:peer` BEAM's own, 10 ms ticks), median | #{Stats.ms(cpu_boot.dist)} ms | #{Stats.ms(cpu_boot.sandbox)} ms | #{Stats.ms(med.(cold_cpu.peer))} ms | | |
| call round trip, median (n=#{n_rpc}): `:rpc.call` (distribution, `:peer`), `Ampule.call/2` (sandbox) | #{med.(rtt.dist_rpc)} µs | #{med.(rtt.sandbox_call)} µs | #{med.(rtt.peer_rpc)} µs | #{Stats.ratio(med.(rtt.dist_rpc), med.(rtt.peer_rpc))} | #{Stats.ratio(med.(rtt.sandbox_call), med.(rtt.peer_rpc))} |
| call round trip p99 | #{p99.(rtt.dist_rpc)} µs | #{p99.(rtt.sandbox_call)} µs | #{p99.(rtt.peer_rpc)} µs | | |
| `Ampule.call/2` round trip to a distribution container, median / p99 | #{med.(rtt.dist_call)} / #{p99.(rtt.dist_call)} µs | | | | |
| anonymous `Ampule.call/2` (fresh container, result, destroyed), median / p99 | #{Stats.ms(med.(anon.dist))} / #{Stats.ms(p99.(anon.dist))} ms | #{Stats.ms(med.(anon.sandbox))} / #{Stats.ms(p99.(anon.sandbox))} ms | | | |
| nodes ready per second (median of #{n_rounds} rounds), 1 / 2 / 4 / 8 in flight | #{ks.(:dist)} | #{ks.(:sandbox)} | #{ks.(:peer)} | | |
| boot throughput, 2 in flight vs 1 | #{Stats.ratio(t[{:dist, 2}].rate, t[{:dist, 1}].rate)}× | #{Stats.ratio(t[{:sandbox, 2}].rate, t[{:sandbox, 1}].rate)}× | #{Stats.ratio(t[{:peer, 2}].rate, t[{:peer, 1}].rate)}× | | |
| median boot latency, 1 / 2 / 4 / 8 in flight (ms) | #{lat.(:dist)} | #{lat.(:sandbox)} | #{lat.(:peer)} | | |

### Pools and map

| measure | distribution | sandbox |
|---|---|---|
| pooled `Ampule.call(x, pool: p)` into a full pool of #{pool_size}, median / p99 (n=#{n_pool}) | #{Stats.ms2(med.(pooled.dist))} / #{Stats.ms2(p99.(pooled.dist))} ms | #{Stats.ms2(med.(pooled.sandbox))} / #{Stats.ms2(p99.(pooled.sandbox))} ms |
| pooled median ÷ anonymous median | #{Stats.f1(100 * med.(pooled.dist) / med.(anon.dist))} % | #{Stats.f1(100 * med.(pooled.sandbox) / med.(anon.sandbox))} % |
| sustained pooled calls per second, #{pool_size} callers back to back, pool of #{pool_size} (median of 2 rounds of #{n_sustained}) | #{rate.(sust.dist)} | #{rate.(sust.sandbox)} |
| … against boots ready per second, #{pool_size} in flight (above) | #{Stats.ratio(sust.dist, t[{:dist, pool_size}].rate)}× | #{Stats.ratio(sust.sandbox, t[{:sandbox, pool_size}].rate)}× |
| … against the CPU bound (#{cores} cores ÷ CPU-s of one cold start) | #{Stats.ratio(sust.dist, cpu_bound.dist)}× of #{rate.(cpu_bound.dist)} | #{Stats.ratio(sust.sandbox, cpu_bound.sandbox)}× of #{rate.(cpu_bound.sandbox)} |
| machine CPU per sustained pooled call (all processes, kernel) | #{Stats.ms(sust_busy.dist)} ms | #{Stats.ms(sust_busy.sandbox)} ms |
| `Ampule.map` over #{n_map} elements, cold containers, elements per second at 1 / 2 / 4 in flight | #{Enum.map_join([1, 2, 4], " / ", &rate.(maps[{:dist, &1}].rate))} | #{Enum.map_join([1, 2, 4], " / ", &rate.(maps[{:sandbox, &1}].rate))} |
| … against the CPU bound, at 1 / 2 / 4 | #{Enum.map_join([1, 2, 4], " / ", &Stats.ratio(maps[{:dist, &1}].rate, cpu_bound.dist))} | #{Enum.map_join([1, 2, 4], " / ", &Stats.ratio(maps[{:sandbox, &1}].rate, cpu_bound.sandbox))} |
| … machine CPU per element at 1 / 2 / 4 (ms) | #{Enum.map_join([1, 2, 4], " / ", &Stats.ms(maps[{:dist, &1}].busy_per))} | #{Enum.map_join([1, 2, 4], " / ", &Stats.ms(maps[{:sandbox, &1}].busy_per))} |
| … elements that succeeded | #{Enum.map_join([1, 2, 4], " / ", &maps[{:dist, &1}].ok)} | #{Enum.map_join([1, 2, 4], " / ", &maps[{:sandbox, &1}].ok)} |

### Density and the port

| measure | distribution | sandbox | :peer |
|---|---|---|---|
| up at once (asked #{n_density} / #{n_sandboxes}) | #{dist_density.up}#{if density_error, do: " (then #{inspect(density_error)})"} | #{n_up}#{if sb_errors != [], do: " (#{length(sb_errors)} failed: #{inspect(hd(sb_errors))})"}, started in #{Stats.f1(sb_us / 1_000_000)} s, #{answering} answering | |
| memory per node, median RSS of its processes | #{Stats.mib(rss.(dist_density.mem))} MiB | #{Stats.mib(rss.(sb_mem))} MiB | #{Stats.mib(rss.(peer_mem))} MiB |
| memory per node, median PSS of its processes | #{Stats.mib(pss.(dist_density.mem))} MiB | #{Stats.mib(pss.(sb_mem))} MiB | #{Stats.mib(pss.(peer_mem))} MiB |
| sandbox: its memory cgroup's charge, median (processes + its tmpfs pages) | | #{Stats.mib(med.(sb_charge))} MiB | |
| sandbox: host MemAvailable, before → with #{n_up} up (per sandbox) | | #{Stats.mib(avail_before)} → #{Stats.mib(avail_up)} MiB (#{Stats.mib(per_sb_avail)} MiB) | |
| sandbox: tasks (threads) per sandbox, median; its cgroup's `pids.max` | | #{med.(Enum.reject(sb_pids, &is_nil/1))} of #{sb_pids_max} (#{sb_threads} in all) | |
| sandbox: the apps tmpfs, used before → with #{n_up} up, of its size | | #{Stats.mib(tmpfs_before)} → #{Stats.mib(tmpfs_up)} MiB of #{Stats.mib(tmpfs_size)} MiB | |
| sandbox: fds of the port / of this BEAM, before → with #{n_up} up (their limit) | | #{port_fds_before} → #{port_fds_up} (#{Machine.nofile_limit(port_pid)}) / #{beam_fds_before} → #{beam_fds_up} (#{Machine.nofile_limit(beam_pid)}) | |
| sandbox: this BEAM's ports, before → with #{n_up} up (its limit) | | #{ports_before} → #{ports_up} (#{:erlang.system_info(:port_limit)}) | |
| sandbox: CPU of #{n_up} idle sandboxes, all together | | #{Stats.f1(100 * idle_cpu_us / 5_000_000)} % of one core | |
| port RSS idle / with #{at_50.n} up / with #{dist_density.up} up / with #{n_up} sandboxes up | #{Stats.mib(port_rss_idle)} / #{Stats.mib(at_50.rss)} / #{Stats.mib(port_rss_up)} MiB | #{Stats.mib(port_rss_sb)} MiB | |
| port round trip with #{at_50.n} up, `list` median / p99 | #{med.(at_50.list)} µs / #{p99.(at_50.list)} µs | | |
| port round trip with #{at_50.n} up, `info` median / p99 | #{med.(at_50.info)} µs / #{p99.(at_50.info)} µs | | |
| destroying all (8 at a time): all dead / all released | #{Stats.ms(destroy_us)} / #{Stats.ms(released_us)} ms (#{dist_density.up}) | #{Stats.ms(sb_destroy_us)} / #{Stats.ms(sb_released_us)} ms (#{n_up}) | |

Limits of the kernel: `pid_max` #{Machine.int_file("/proc/sys/kernel/pid_max")}, `threads-max` #{Machine.int_file("/proc/sys/kernel/threads-max")}.
"""

IO.puts(report)
File.write!(Path.join(__DIR__, "results.md"), report)

# The plot: throughput and median boot latency against boots in flight, every side.
data = Path.join(__DIR__, "throughput.dat")

File.write!(
  data,
  "# in_flight dist_boots_per_s sandbox_boots_per_s peer_boots_per_s dist_boot_ms sandbox_boot_ms peer_boot_ms\n" <>
    Enum.map_join(in_flight, "\n", fn k ->
      "#{k} #{t[{:dist, k}].rate} #{t[{:sandbox, k}].rate} #{t[{:peer, k}].rate} " <>
        "#{t[{:dist, k}].boot / 1000} #{t[{:sandbox, k}].boot / 1000} #{t[{:peer, k}].boot / 1000}"
    end) <> "\n"
)

png = Path.join(__DIR__, "throughput.png")

plot = """
set terminal pngcairo size 900,420 font ',10'
set output 'throughput.png'
set multiplot layout 1,2 title 'Ampule vs :peer, #{Bench.Env.machine()}' font ',8'
set xlabel 'boots in flight'
set logscale x 2
set xtics (1, 2, 4, 8)
set xrange [0.8:10]
set key top left
set grid
set ylabel 'boots per second'
set yrange [0:*]
plot 'throughput.dat' using 1:2 with linespoints title 'distribution', '' using 1:3 with linespoints title 'sandbox', '' using 1:4 with linespoints title ':peer'
set ylabel 'median boot latency (ms)'
plot 'throughput.dat' using 1:5 with linespoints title 'distribution', '' using 1:6 with linespoints title 'sandbox', '' using 1:7 with linespoints title ':peer'
unset multiplot
"""

script = Path.join(__DIR__, "throughput.gp")
File.write!(script, plot)

# Relative names: `cd bench && gnuplot throughput.gp` redraws it from the committed data.
case System.cmd("gnuplot", [Path.basename(script)], cd: __DIR__, stderr_to_stdout: true) do
  {_, 0} -> IO.puts(:stderr, "plot: #{png}")
  {out, status} -> IO.puts(:stderr, "gnuplot failed (#{status}): #{out}")
end
