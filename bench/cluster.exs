# Ampule across hosts, on one machine: three hosts in network namespaces of their own
# (Ampule.Test.ClusterLab, the tests' harness), this BEAM the caller. Run with
# `script/bench cluster` (as root; MIX_ENV=test, for the harness). Prints a Markdown
# report and writes it to bench/cluster_results.md.
#
#  1. Placement overhead: a call to a container on another host against the same call to
#     one on this node, alternating, same run (sandboxes: the caller reaches the remote
#     channel directly; distribution containers: through a relay on the host).
#  2. Throughput with 1, 2, 3 hosts: pooled calls, single-use (boot-bound) and reused
#     (call-bound). Every host shares this machine's cores.
#
# Sizes (environment): BENCH_CALLS (calls per side, 4000), BENCH_ROUNDS (3),
# BENCH_POOL_CALLS (calls per throughput sample, 120 single-use, 10x reused).

defmodule Bench.C do
  def median(xs), do: pct(xs, 50)

  def pct(xs, p) do
    s = Enum.sort(xs)
    Enum.at(s, min(length(s) - 1, round(p / 100 * (length(s) - 1))))
  end

  def time(f) do
    t0 = System.monotonic_time(:nanosecond)
    f.()
    div(System.monotonic_time(:nanosecond) - t0, 1000)
  end

  def ratio(a, b), do: :erlang.float_to_binary(a / b, decimals: 2)
  def f1(x), do: :erlang.float_to_binary(x / 1, decimals: 1)

  # Alternating blocks of `n` calls on each side.
  def alternate(local, remote, n) do
    Enum.reduce(1..20, {[], []}, fn _, {l, r} ->
      block = div(n, 20)
      {l ++ for(_ <- 1..block, do: time(local)), r ++ for(_ <- 1..block, do: time(remote))}
    end)
  end

  # Calls per second through a pool over `hosts`: `n` calls, `k` at a time.
  def throughput(hosts, opts, n, k) do
    pool = :"bench_pool_#{System.unique_integer([:positive])}"

    {:ok, sup} =
      Supervisor.start_link([{Ampule.Pool, [name: pool, hosts: hosts] ++ opts}],
        strategy: :one_for_one
      )

    size = Keyword.fetch!(opts, :size)
    wait(fn -> Ampule.Pool.stats(pool).idle == size end, 120_000)

    {us, results} =
      :timer.tc(fn ->
        1..n
        |> Ampule.map({:erlang, :+, [1]}, pool: pool, max_concurrency: k, timeout: 60_000)
        |> Enum.to_list()
      end)

    ok = Enum.count(results, &match?({:ok, _}, &1))
    by_host = Ampule.Pool.stats(pool).hosts
    Supervisor.stop(sup)
    {n / (us / 1_000_000), ok, by_host}
  end

  def wait(fun, timeout) do
    Ampule.Test.Host.wait_until(fun, timeout) || raise "timed out"
  end
end

alias Ampule.Test.ClusterLab
alias Bench.C

# The machine's load before the hosts start: these hosts share its cores with whatever runs.
load = "/proc/loadavg" |> File.read!() |> String.split() |> Enum.take(3) |> Enum.join(" ")
n_calls = String.to_integer(System.get_env("BENCH_CALLS", "4000"))
n_rounds = String.to_integer(System.get_env("BENCH_ROUNDS", "3"))
n_pool = String.to_integer(System.get_env("BENCH_POOL_CALLS", "120"))

Logger.configure(level: :warning)
lab = ClusterLab.start(3)

try do
  [h1, _h2, _h3] = hosts = ClusterLab.nodes(lab)
  C.wait(fn -> hosts -- Enum.map(Ampule.Cluster.hosts(), & &1.node) == [] end, 10_000)

  IO.puts(:stderr, "placement overhead")
  local_s = Ampule.spawn(sandbox: true)
  remote_s = Ampule.spawn(sandbox: true, on: h1)
  local_d = Ampule.spawn()
  remote_d = Ampule.spawn(on: h1)
  mfa = {:erlang, :+, [1, 2]}
  # Warm up: code loaded, connections up.
  for c <- [local_s, remote_s, local_d, remote_d], _ <- 1..200, do: 3 = Ampule.call(mfa, c)

  {ls, rs} =
    C.alternate(
      fn -> Ampule.call(mfa, local_s) end,
      fn -> Ampule.call(mfa, remote_s) end,
      n_calls
    )

  {ld, rd} =
    C.alternate(
      fn -> Ampule.call(mfa, local_d) end,
      fn -> Ampule.call(mfa, remote_d) end,
      n_calls
    )

  # One hop alone: an :erpc round trip to the host, and to this node's own container.
  hop = for _ <- 1..n_calls, do: C.time(fn -> :erpc.call(h1, :erlang, :+, [1, 2]) end)

  # What placing costs: reading the hosts and choosing, per call.
  place = for _ <- 1..n_calls, do: C.time(fn -> Ampule.Cluster.place(Ampule.Cluster.hosts()) end)

  # A cold anonymous call, here and there (boot-bound).
  cold_n = 20

  {cold_l, cold_r} =
    Enum.reduce(1..cold_n, {[], []}, fn _, {l, r} ->
      {[C.time(fn -> Ampule.call(mfa, sandbox: true) end) | l],
       [C.time(fn -> Ampule.call(mfa, sandbox: true, on: h1) end) | r]}
    end)

  for c <- [local_s, remote_s, local_d, remote_d], do: :ok = Ampule.destroy(c)

  IO.puts(:stderr, "throughput")

  samples =
    for _round <- 1..n_rounds, k <- 1..3 do
      on = Enum.take(hosts, k)
      IO.puts(:stderr, "  #{k} host(s)")
      {single, ok1, spread} = C.throughput(on, [size: 4 * k, sandbox: true], n_pool, 8)

      {reused, ok2, _} =
        C.throughput(on, [size: 2 * k, sandbox: true, reuse: 1_000_000], n_pool * 10, 16)

      {k, single, reused, ok1 == n_pool and ok2 == n_pool * 10, spread}
    end

  through =
    for k <- 1..3 do
      mine = for {^k, _, _, _, _} = s <- samples, do: s

      {k, C.median(Enum.map(mine, &elem(&1, 1))), C.median(Enum.map(mine, &elem(&1, 2))),
       Enum.all?(mine, &elem(&1, 3)), elem(List.last(mine), 4)}
    end

  cores = System.schedulers_online()

  report = """
  Machine: #{String.trim(to_string(:os.cmd(~c"uname -sr")))}, #{cores} cores, which the three hosts share (load #{load} at the start), OTP #{System.otp_release()}, #{Date.utc_today()}.
  Hosts: 3 network namespaces on this machine (bench/cluster.exs), each with its own BEAM,
  port, bridge and state directory; the caller is this BEAM, in the root namespace.

  | call `{:erlang, :+, [1, 2]}` (n=#{n_calls} per side, alternating) | local | on another host | ratio |
  |---|---|---|---|
  | sandbox, median | #{C.median(ls)} µs | #{C.median(rs)} µs | #{C.ratio(C.median(rs), C.median(ls))} |
  | sandbox, p99 | #{C.pct(ls, 99)} µs | #{C.pct(rs, 99)} µs | |
  | distribution container, median | #{C.median(ld)} µs | #{C.median(rd)} µs (relay) | #{C.ratio(C.median(rd), C.median(ld))} |
  | distribution container, p99 | #{C.pct(ld, 99)} µs | #{C.pct(rd, 99)} µs | |
  | anonymous sandbox call (boot, call, destroy), median of #{cold_n} | #{C.f1(C.median(cold_l) / 1000)} ms | #{C.f1(C.median(cold_r) / 1000)} ms | #{C.ratio(C.median(cold_r), C.median(cold_l))} |

  One hop alone (`:erpc.call` to the host's BEAM): median #{C.median(hop)} µs, p99 #{C.pct(hop, 99)} µs.
  `Ampule.Cluster.place(Ampule.Cluster.hosts())` with #{length(Ampule.Cluster.hosts())} hosts: median #{C.median(place)} µs.

  | pooled sandbox calls, median of #{n_rounds} rounds | 1 host | 2 hosts | 3 hosts |
  |---|---|---|---|
  | single-use (a boot per call), calls/s, 8 in flight, pool 4/host | #{Enum.map_join(through, " | ", fn {_, s, _, _, _} -> C.f1(s) end)} |
  | reused containers, calls/s, 16 in flight, pool 2/host | #{Enum.map_join(through, " | ", fn {_, _, r, _, _} -> C.f1(r) end)} |
  | every call answered | #{Enum.map_join(through, " | ", fn {_, _, _, ok, _} -> to_string(ok) end)} |
  | pool's containers per host at the end (last round) | #{Enum.map_join(through, " | ", fn {_, _, _, _, spread} -> spread |> Map.values() |> Enum.join("/") end)} |
  """

  IO.puts(report)
  File.write!(Path.join(__DIR__, "cluster_results.md"), report)
after
  ClusterLab.stop(lab)
end
