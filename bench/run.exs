# Ampule against :peer, side by side in one run (alternating where there are two sides).
# Run with `script/bench` (as root). Prints a Markdown report, writes it to
# bench/results.md, and draws bench/throughput.png with gnuplot.
#
# Sizes (environment): BENCH_COLD (cold starts per side, 40), BENCH_RPC (rpc round trips
# per side, 10000), BENCH_DENSITY (containers up at once, at most 100), BENCH_ROUNDS
# (rounds of the throughput measure, 3).

defmodule Bench.Stats do
  def median(xs), do: pct(xs, 50)

  def pct(xs, p) do
    s = Enum.sort(xs)
    Enum.at(s, min(length(s) - 1, round(p / 100 * (length(s) - 1))))
  end

  def ms(us), do: :erlang.float_to_binary(us / 1000, decimals: 1)
  def mib(kib), do: :erlang.float_to_binary(kib / 1024, decimals: 1)
  def ratio(a, b), do: :erlang.float_to_binary(a / b, decimals: 2)

  def time(f) do
    {us, _} = :timer.tc(f)
    us
  end
end

defmodule Bench.Sides do
  # One cold start of each side: start, one rpc, stop.
  @host ~c"10.213.57.1"

  # Timed: start, rpc, stop. :peer.stop/1 returns before the node's OS process is gone,
  # so (untimed) wait for that too: a peer still shutting down would steal CPU from the
  # next sample, which is Ampule's.
  def peer_cold do
    t0 = System.monotonic_time(:microsecond)
    {pid, node} = peer_start()
    _ = :rpc.call(node, :erlang, :node, [])
    t1 = System.monotonic_time(:microsecond)
    os_pid = peer_os_pid(node)
    t2 = System.monotonic_time(:microsecond)
    :peer.stop(pid)
    t3 = System.monotonic_time(:microsecond)
    wait_gone(os_pid)
    t1 - t0 + (t3 - t2)
  end

  def peer_os_pid(node), do: :rpc.call(node, :os, :getpid, []) |> List.to_integer()

  def peer_stop({pid, node}) do
    os_pid = peer_os_pid(node)
    :peer.stop(pid)
    wait_gone(os_pid)
  end

  # Until the process has exited: gone, or a zombie (its parent, erl_child_setup, reaps
  # it up to two seconds later; a zombie uses no CPU).
  def wait_gone(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} ->
        if not String.contains?(stat, ") Z ") do
          Process.sleep(1)
          wait_gone(os_pid)
        end

      {:error, _} ->
        :ok
    end
  end

  # Timed: spawn, rpc, destroy. `destroy` returns once the node is dead and releases the
  # veth, cgroups and address behind; (untimed) wait for that too, as for a peer's exit.
  def ampule_cold do
    {us, c} =
      :timer.tc(fn ->
        c = Ampule.spawn()
        _ = :rpc.call(c.nodename, :erlang, :node, [])
        Ampule.destroy(c)
        c
      end)

    wait_released(c)
    us
  end

  def ampule_stop(c) do
    Ampule.destroy(c)
    wait_released(c)
  end

  def wait_no_leases do
    case File.ls("/var/lib/ampule/leases") do
      {:ok, [_ | _]} ->
        Process.sleep(1)
        wait_no_leases()

      _ ->
        :ok
    end
  end

  # The port releases a container's address last: its lease file goes when the rest is gone.
  def wait_released(c) do
    lease = Path.join(["/var/lib/ampule/leases", c.address])

    case File.read(lease) do
      {:ok, owner} ->
        if String.contains?(owner, c.name) do
          Process.sleep(1)
          wait_released(c)
        end

      {:error, _} ->
        :ok
    end
  end

  def peer_start do
    name = :"bench_peer_#{System.unique_integer([:positive])}"
    # Hidden, like Ampule's nodes: otherwise `global` meshes every peer with the others.
    {:ok, pid, node} =
      :peer.start(%{name: name, host: @host, longnames: true, args: [~c"-hidden"]})

    {pid, node}
  end

  def ampule_start, do: Ampule.spawn(owner: false)

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

defmodule Bench.Memory do
  # Host-side memory of a set of processes: RSS (counts shared pages fully, as `ps` does)
  # and PSS (shares them among their users, a fairer "cost of one more").
  def of_pids(pids) do
    Enum.reduce(pids, {0, 0}, fn pid, {rss, pss} ->
      case File.read("/proc/#{pid}/smaps_rollup") do
        {:ok, text} -> {rss + field(text, "Rss"), pss + field(text, "Pss")}
        {:error, _} -> {rss, pss}
      end
    end)
  end

  def container_pids(name) do
    case File.read("/sys/fs/cgroup/pids/lxc.payload.#{name}/cgroup.procs") do
      {:ok, t} -> t |> String.split() |> Enum.map(&String.to_integer/1)
      {:error, _} -> []
    end
  end

  # The BEAM of a :peer node and its children (erl_child_setup, epmd is shared).
  def peer_pids(node) do
    os_pid = :rpc.call(node, :os, :getpid, []) |> List.to_string() |> String.to_integer()
    [os_pid | children(os_pid)]
  end

  defp children(pid) do
    case File.read("/proc/#{pid}/task/#{pid}/children") do
      {:ok, t} -> t |> String.split() |> Enum.map(&String.to_integer/1)
      {:error, _} -> []
    end
  end

  def port_rss_kib do
    status = File.read!("/proc/#{Ampule.Port.os_pid()}/status")
    [_, kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, status)
    String.to_integer(kb)
  end

  defp field(text, name) do
    case Regex.run(~r/^#{name}:\s+(\d+) kB/m, text) do
      [_, kb] -> String.to_integer(kb)
      nil -> 0
    end
  end
end

alias Bench.{Memory, Sides, Stats}

n_cold = String.to_integer(System.get_env("BENCH_COLD", "40"))
n_rpc = String.to_integer(System.get_env("BENCH_RPC", "10000"))
n_density = min(String.to_integer(System.get_env("BENCH_DENSITY", "100")), 100)
n_rounds = String.to_integer(System.get_env("BENCH_ROUNDS", "3"))

# Warm up both sides once (page cache, distribution, the port's first container).
Sides.ampule_cold()
Sides.peer_cold()

IO.puts(:stderr, "cold starts")

{amp, peer} =
  Enum.reduce(1..n_cold, {[], []}, fn _, {a, p} ->
    {[Sides.ampule_cold() | a], [Sides.peer_cold() | p]}
  end)

IO.puts(:stderr, "rpc latency")
c = Ampule.spawn()
{ppid, pnode} = Sides.peer_start()

rpc = fn node, n ->
  for _ <- 1..n, do: Stats.time(fn -> :rpc.call(node, :erlang, :node, []) end)
end

# Interleaved in blocks, so that a noisy moment hits both sides.
{amp_rpc, peer_rpc} =
  Enum.reduce(1..10, {[], []}, fn _, {a, p} ->
    n = div(n_rpc, 10)
    {a ++ rpc.(c.nodename, n), p ++ rpc.(pnode, n)}
  end)

:peer.stop(ppid)
Sides.ampule_stop(c)

IO.puts(:stderr, "anonymous calls")
anon = for _ <- 1..n_cold, do: Stats.time(fn -> Ampule.call({:erlang, :node, []}) end)
# Back to back, as a user would call: each release overlaps the next call. The last one's
# must not overlap the next measure.
Sides.wait_no_leases()

IO.puts(:stderr, "throughput")
in_flight = [1, 2, 4, 8]

# Rounds of every k on both sides, so that the machine's drift over a minute (these
# machines are noisy) spreads over all ks instead of skewing the ratio between two of them.
samples =
  for _round <- 1..n_rounds, k <- in_flight do
    {a_rate, a_boots} = Sides.throughput(&Sides.ampule_start/0, &Sides.ampule_stop/1, k, 16)
    {p_rate, p_boots} = Sides.throughput(&Sides.peer_start/0, &Sides.peer_stop/1, k, 16)
    {k, a_rate, a_boots, p_rate, p_boots}
  end

throughput =
  for k <- in_flight do
    mine = for {^k, _, _, _, _} = s <- samples, do: s

    %{
      k: k,
      ampule: Stats.median(Enum.map(mine, &elem(&1, 1))),
      ampule_boot: Stats.median(Enum.flat_map(mine, &elem(&1, 2))),
      peer: Stats.median(Enum.map(mine, &elem(&1, 3))),
      peer_boot: Stats.median(Enum.flat_map(mine, &elem(&1, 4)))
    }
  end

IO.puts(:stderr, "density")
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

# One at a time up to n_density; stop at the first failure (the machine's limit). The
# port's overhead is measured at 50 up, on the way.
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
mem = Enum.map(up, fn c -> Memory.of_pids(Memory.container_pids(c.name)) end)
rss_each = Enum.map(mem, &elem(&1, 0))
pss_each = Enum.map(mem, &elem(&1, 1))

{released_us, destroy_us} =
  :timer.tc(fn ->
    destroy_us =
      Stats.time(fn ->
        up
        |> Task.async_stream(&Ampule.destroy/1, max_concurrency: 8, timeout: 60_000)
        |> Stream.run()
      end)

    Enum.each(up, &Sides.wait_released/1)
    destroy_us
  end)

# :peer nodes for the same memory comparison (10 are enough for a median).
peers = for _ <- 1..10, do: Sides.peer_start()
peer_mem = Enum.map(peers, fn {_, node} -> Memory.of_pids(Memory.peer_pids(node)) end)
Enum.each(peers, &Sides.peer_stop/1)

t = Map.new(throughput, &{&1.k, &1})

machine = """
#{String.trim(to_string(:os.cmd(~c"uname -sr")))}, #{System.schedulers_online()} cores, \
#{Regex.run(~r/MemTotal:\s+(\d+)/, File.read!("/proc/meminfo")) |> List.last() |> String.to_integer() |> div(1024 * 1024)} GiB, \
OTP #{System.otp_release()}, Elixir #{System.version()}, \
#{String.trim(to_string(:os.cmd(~c"lxc-start --version")))} (liblxc), \
#{Date.utc_today()}
"""

report = """
Machine: #{String.trim(machine)}.

| measure | Ampule | :peer | ratio |
|---|---|---|---|
| cold start: start → rpc → stop, median (n=#{n_cold}) | #{Stats.ms(Stats.median(amp))} ms | #{Stats.ms(Stats.median(peer))} ms | #{Stats.ratio(Stats.median(amp), Stats.median(peer))} |
| cold start p95 | #{Stats.ms(Stats.pct(amp, 95))} ms | #{Stats.ms(Stats.pct(peer, 95))} ms | |
| `:rpc.call` round trip, median (n=#{n_rpc}) | #{Stats.median(amp_rpc)} µs | #{Stats.median(peer_rpc)} µs | #{Stats.ratio(Stats.median(amp_rpc), Stats.median(peer_rpc))} |
| `:rpc.call` round trip, p99 | #{Stats.pct(amp_rpc, 99)} µs | #{Stats.pct(peer_rpc, 99)} µs | |
| anonymous `Ampule.call/1` (fresh container, result, destroyed), median | #{Stats.ms(Stats.median(anon))} ms | | |
| nodes ready per second (median of #{n_rounds} rounds), 1 / 2 / 4 / 8 in flight | #{Enum.map_join(in_flight, " / ", &:erlang.float_to_binary(t[&1].ampule, decimals: 1))} | #{Enum.map_join(in_flight, " / ", &:erlang.float_to_binary(t[&1].peer, decimals: 1))} | |
| boot throughput, 2 in flight vs 1 | #{Stats.ratio(t[2].ampule, t[1].ampule)}× | #{Stats.ratio(t[2].peer, t[1].peer)}× | |
| median boot latency, 1 / 2 / 4 / 8 in flight | #{Enum.map_join(in_flight, " / ", &Stats.ms(t[&1].ampule_boot))} ms | #{Enum.map_join(in_flight, " / ", &Stats.ms(t[&1].peer_boot))} ms | |
| containers up at once (asked #{n_density}) | #{length(up)}#{if density_error, do: " (then #{inspect(density_error)})"} | | |
| memory per container / per `:peer` node, median RSS | #{Stats.mib(Stats.median(rss_each))} MiB | #{Stats.mib(Stats.median(Enum.map(peer_mem, &elem(&1, 0))))} MiB | |
| memory per container / per `:peer` node, median PSS | #{Stats.mib(Stats.median(pss_each))} MiB | #{Stats.mib(Stats.median(Enum.map(peer_mem, &elem(&1, 1))))} MiB | |
| port RSS idle / with #{at_50.n} up / with #{length(up)} up | #{Stats.mib(port_rss_idle)} / #{Stats.mib(at_50.rss)} / #{Stats.mib(port_rss_up)} MiB | | |
| port round trip with #{at_50.n} up, `list` median / p99 | #{Stats.median(at_50.list)} µs / #{Stats.pct(at_50.list, 99)} µs | | |
| port round trip with #{at_50.n} up, `info` median / p99 | #{Stats.median(at_50.info)} µs / #{Stats.pct(at_50.info, 99)} µs | | |
| destroying #{length(up)} containers (8 at a time): all dead / all released | #{Stats.ms(destroy_us)} / #{Stats.ms(released_us)} ms | | |
"""

IO.puts(report)
File.write!(Path.join(__DIR__, "results.md"), report)

# The plot: throughput and median boot latency against boots in flight, both sides.
data = Path.join(__DIR__, "throughput.dat")

File.write!(
  data,
  "# in_flight ampule_boots_per_s peer_boots_per_s ampule_boot_ms peer_boot_ms\n" <>
    Enum.map_join(throughput, "\n", fn r ->
      "#{r.k} #{r.ampule} #{r.peer} #{r.ampule_boot / 1000} #{r.peer_boot / 1000}"
    end) <> "\n"
)

png = Path.join(__DIR__, "throughput.png")

plot = """
set terminal pngcairo size 900,420 font ',10'
set output 'throughput.png'
set multiplot layout 1,2 title 'Ampule vs :peer, #{String.trim(machine)}' font ',9'
set xlabel 'boots in flight'
set logscale x 2
set xtics (1, 2, 4, 8)
set xrange [0.8:10]
set key top left
set grid
set ylabel 'boots per second'
set yrange [0:*]
plot 'throughput.dat' using 1:2 with linespoints title 'Ampule', '' using 1:3 with linespoints title ':peer'
set ylabel 'median boot latency (ms)'
plot 'throughput.dat' using 1:4 with linespoints title 'Ampule', '' using 1:5 with linespoints title ':peer'
unset multiplot
"""

script = Path.join(__DIR__, "throughput.gp")
File.write!(script, plot)

# Relative names: `cd bench && gnuplot throughput.gp` redraws it from the committed data.
case System.cmd("gnuplot", [Path.basename(script)], cd: __DIR__, stderr_to_stdout: true) do
  {_, 0} -> IO.puts(:stderr, "plot: #{png}")
  {out, status} -> IO.puts(:stderr, "gnuplot failed (#{status}): #{out}")
end
