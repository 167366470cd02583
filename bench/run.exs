# Ampule against :peer, side by side in one run (alternating where there are two sides).
# Run with `script/bench` (as root). Prints a Markdown report; writes bench/results.md.

defmodule Bench do
  def median(xs), do: pct(xs, 50)

  def pct(xs, p) do
    s = Enum.sort(xs)
    Enum.at(s, min(length(s) - 1, round(p / 100 * (length(s) - 1))))
  end

  def ms(us), do: Float.round(us / 1000, 1)

  def time(f) do
    {us, v} = :timer.tc(f)
    {us, v}
  end

  def peer_cold(i) do
    {us, _} =
      time(fn ->
        {:ok, pid, node} =
          :peer.start_link(%{name: :"bench_peer_#{i}", host: ~c"10.213.57.1", longnames: true})

        _ = :rpc.call(node, :erlang, :node, [])
        :peer.stop(pid)
      end)

    us
  end

  def ampule_cold do
    {us, _} =
      time(fn ->
        c = Ampule.spawn()
        _ = :rpc.call(c.nodename, :erlang, :node, [])
        Ampule.destroy(c)
      end)

    us
  end

  def rpc_latency(node, n) do
    for _ <- 1..n do
      {us, _} = :timer.tc(fn -> :rpc.call(node, :erlang, :node, []) end)
      us
    end
  end

  def port_rss do
    {:ok, os_pid} = {:ok, Ampule.Port.os_pid()}
    status = File.read!("/proc/#{os_pid}/status")
    [_, kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, status)
    String.to_integer(kb)
  end
end

n_cold = String.to_integer(System.get_env("BENCH_COLD", "20"))
n_rpc = String.to_integer(System.get_env("BENCH_RPC", "10000"))

# Warm up both sides once (page cache, distribution).
Bench.ampule_cold()
Bench.peer_cold(0)

{amp, peer} =
  Enum.reduce(1..n_cold, {[], []}, fn i, {a, p} ->
    {[Bench.ampule_cold() | a], [Bench.peer_cold(i) | p]}
  end)

c = Ampule.spawn()
{:ok, ppid, pnode} = :peer.start_link(%{name: :bench_peer_rpc, host: ~c"10.213.57.1", longnames: true})
amp_rpc = Bench.rpc_latency(c.nodename, n_rpc)
peer_rpc = Bench.rpc_latency(pnode, n_rpc)
:peer.stop(ppid)
Ampule.destroy(c)

anon = for _ <- 1..n_cold, do: elem(Bench.time(fn -> Ampule.call({:erlang, :node, []}) end), 0)

throughput =
  for k <- [1, 2, 4, 8] do
    total = 16
    {us, _} =
      Bench.time(fn ->
        1..total
        |> Task.async_stream(fn _ -> Ampule.spawn(owner: false) end,
          max_concurrency: k,
          timeout: 60_000
        )
        |> Enum.map(fn {:ok, c} -> c end)
        |> Enum.each(&Ampule.destroy/1)
      end)

    {k, total / (us / 1_000_000)}
  end

up =
  1..50
  |> Task.async_stream(fn _ -> Ampule.spawn(owner: false) end, max_concurrency: 4, timeout: 60_000)
  |> Enum.map(fn {:ok, c} -> c end)

ping =
  for _ <- 1..1000 do
    {us, {:ok, _}} = :timer.tc(fn -> Ampule.Port.request(:list) end)
    us
  end

rss = Bench.port_rss()
{destroy_us, _} = Bench.time(fn -> up |> Task.async_stream(&Ampule.destroy/1, max_concurrency: 8) |> Stream.run() end)

ratio = Bench.median(amp) / Bench.median(peer)
rpc_ratio = Bench.median(amp_rpc) / Bench.median(peer_rpc)
{_, t1} = List.keyfind(throughput, 1, 0)
{_, t2} = List.keyfind(throughput, 2, 0)

report = """
| measure | Ampule | :peer | ratio |
|---|---|---|---|
| cold start: spawn → rpc → destroy, median (n=#{n_cold}) | #{Bench.ms(Bench.median(amp))} ms | #{Bench.ms(Bench.median(peer))} ms | #{Float.round(ratio, 2)} |
| cold start p95 | #{Bench.ms(Bench.pct(amp, 95))} ms | #{Bench.ms(Bench.pct(peer, 95))} ms | |
| `:rpc.call` round trip, median (n=#{n_rpc}) | #{Bench.median(amp_rpc)} µs | #{Bench.median(peer_rpc)} µs | #{Float.round(rpc_ratio, 2)} |
| `:rpc.call` round trip, p99 | #{Bench.pct(amp_rpc, 99)} µs | #{Bench.pct(peer_rpc, 99)} µs | |
| anonymous `Ampule.call/1`, median | #{Bench.ms(Bench.median(anon))} ms | | |
| boots per second, 1 / 2 / 4 / 8 in flight | #{Enum.map_join(throughput, " / ", fn {_, r} -> :erlang.float_to_binary(r, decimals: 1) end)} | | 2 vs 1: #{Float.round(t2 / t1, 2)} |
| port request round trip (`list`) with 50 up, median / p99 | #{Bench.median(ping)} µs / #{Bench.pct(ping, 99)} µs | | |
| port RSS with 50 up | #{Float.round(rss / 1024, 1)} MiB | | |
| destroying 50 containers | #{Bench.ms(destroy_us)} ms | | |
"""

IO.puts(report)
File.write!(Path.join(__DIR__, "results.md"), report)
