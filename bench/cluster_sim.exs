# The membership and load traffic of Ampule.Cluster with many hosts, simulated: N
# lightweight :peer nodes on loopback (no port program, no container), each running
# Ampule's :pg scope and an Ampule.Cluster that offers (its load is real: /proc of this
# machine, 0 containers), and this node a caller (a listener, not a host). Figures for
# docs/scaling.md. Run with `script/bench cluster-sim` (MIX_ENV=test).
#
# Sizes (environment): SIM_SIZES (host counts, "5,10,20"), SIM_WINDOW (seconds of steady
# traffic measured, 10), SIM_INTERVAL (the hosts' :cluster_interval, ms, 1000).

defmodule Sim do
  @scope :ampule_cluster

  def start_hosts(n, interval) do
    paths =
      for p <- :code.get_path(),
          p = List.to_string(p),
          not String.starts_with?(p, List.to_string(:code.root_dir())),
          do: p

    for k <- 1..n do
      {:ok, peer, node} =
        :peer.start(%{
          name: ~c"sim#{k}_#{System.unique_integer([:positive])}",
          host: ~c"127.0.0.1",
          longnames: true,
          connection: :standard_io,
          args:
            [~c"-setcookie", Atom.to_charlist(Node.get_cookie())] ++
              Enum.flat_map(paths, &[~c"-pa", String.to_charlist(&1)])
        })

      true = Node.connect(node)
      {peer, node, interval}
    end
  end

  # Ampule's scope and Cluster on a host, not linked to the call that starts them.
  def offer({_peer, node, interval}) do
    {:ok, _} = :erpc.call(node, :pg, :start, [@scope])

    {:ok, _} =
      :erpc.call(node, GenServer, :start, [
        Ampule.Cluster,
        [offer: true, port: nil, interval: interval],
        [name: Ampule.Cluster]
      ])

    node
  end

  def os_pid(node), do: :erpc.call(node, :os, :getpid, []) |> List.to_integer()

  # Every node in `watchers` (this one included) sees `host` as `state` (true: listed).
  def seen_by_all?(watchers, host, state) do
    results = :erpc.multicall(watchers, Ampule.Cluster, :host?, [host], 2_000)
    Ampule.Cluster.host?(host) == state and Enum.all?(results, &(&1 == {:ok, state}))
  end

  # Milliseconds from `t0` until `fun` is true, polling.
  def until(fun, t0, deadline \\ 30_000) do
    cond do
      fun.() -> System.monotonic_time(:microsecond) - t0
      System.monotonic_time(:microsecond) - t0 > deadline * 1000 -> :timeout
      true -> until(fun, t0, deadline)
    end
  end

  # Bytes and packets over every distribution connection of `node` (its sockets' counters,
  # read there: this module exists only here).
  def dist_octets(node \\ node()) do
    ctrls = :erpc.call(node, :erlang, :system_info, [:dist_ctrl])

    for {_node, port} <- ctrls, is_port(port), reduce: {0, 0, 0, 0} do
      {ri, ro, pi, po} ->
        case :erpc.call(node, :inet, :getstat, [
               port,
               [:recv_oct, :send_oct, :recv_cnt, :send_cnt]
             ]) do
          {:ok, s} ->
            {ri + s[:recv_oct], ro + s[:send_oct], pi + s[:recv_cnt], po + s[:send_cnt]}

          _ ->
            {ri, ro, pi, po}
        end
    end
  end

  def ms(us), do: :erlang.float_to_binary(us / 1000, decimals: 1)

  def median(xs) do
    s = Enum.sort(xs)
    Enum.at(s, div(length(s), 2))
  end
end

Logger.configure(level: :warning)
{:ok, _} = Node.start(:"sim_caller_#{System.unique_integer([:positive])}@127.0.0.1", :longnames)

sizes =
  System.get_env("SIM_SIZES", "5,10,20") |> String.split(",") |> Enum.map(&String.to_integer/1)

window = String.to_integer(System.get_env("SIM_WINDOW", "10"))
interval = String.to_integer(System.get_env("SIM_INTERVAL", "1000"))

rows =
  for n <- sizes do
    IO.puts(:stderr, "#{n} hosts")
    hosts = Sim.start_hosts(n, interval)
    nodes = Enum.map(hosts, &elem(&1, 1))

    try do
      # All offer. Then the last one's Ampule.Cluster stops (it leaves) and starts again
      # (its code loaded this time): the time until every node lists it again is a join's.
      Enum.each(hosts, &Sim.offer/1)
      t = System.monotonic_time(:microsecond)
      true = Sim.until(fn -> length(Ampule.Cluster.hosts()) == n end, t) != :timeout
      # Five times: a leave (its Cluster stops) and a join (it starts again).
      {_, joined, _} = List.last(hosts)

      {leaves, joins} =
        Enum.unzip(
          for _ <- 1..5 do
            t = System.monotonic_time(:microsecond)
            :ok = :erpc.call(joined, GenServer, :stop, [Ampule.Cluster])
            leave = Sim.until(fn -> Sim.seen_by_all?(nodes -- [joined], joined, false) end, t)
            t0 = System.monotonic_time(:microsecond)

            {:ok, _} =
              :erpc.call(joined, GenServer, :start, [
                Ampule.Cluster,
                [offer: true, port: nil, interval: interval],
                [name: Ampule.Cluster]
              ])

            {leave, Sim.until(fn -> Sim.seen_by_all?(nodes, joined, true) end, t0)}
          end
        )

      join_us = Sim.median(joins)
      leave_stop_us = Sim.median(leaves)

      # Steady traffic over the window, at this node (a caller) and at one host.
      Process.sleep(1_000)
      {ri0, ro0, pi0, po0} = Sim.dist_octets()
      {hri0, hro0, _, _} = Sim.dist_octets(hd(nodes))
      Process.sleep(window * 1_000)
      {ri1, ro1, pi1, po1} = Sim.dist_octets()
      {hri1, hro1, _, _} = Sim.dist_octets(hd(nodes))

      load = hd(Ampule.Cluster.hosts())
      load_bytes = byte_size(:erlang.term_to_binary({:ampule_load, self(), load}))

      # What a placement costs here, with n hosts: the ETS read and the choice.
      place_us =
        Sim.median(
          for _ <- 1..2_000 do
            {us, _} = :timer.tc(fn -> Ampule.Cluster.place(Ampule.Cluster.hosts()) end)
            us
          end
        )

      cluster_mem =
        case Process.whereis(Ampule.Cluster) do
          pid when is_pid(pid) -> elem(Process.info(pid, :memory), 1)
          _ -> 0
        end

      table_mem = :ets.info(Ampule.Cluster, :memory) * :erlang.system_info(:wordsize)

      # A host killed (SIGKILL): the time until every other node has dropped it.
      victim = List.last(nodes)
      os_pid = Sim.os_pid(victim)
      t1 = System.monotonic_time(:microsecond)
      {_, 0} = System.cmd("kill", ["-9", to_string(os_pid)])
      leave_us = Sim.until(fn -> Sim.seen_by_all?(nodes -- [victim], victim, false) end, t1)

      %{
        n: n,
        join_us: join_us,
        leave_stop_us: leave_stop_us,
        leave_us: leave_us,
        caller_in: (ri1 - ri0) / window,
        caller_out: (ro1 - ro0) / window,
        caller_pkts: (pi1 - pi0 + po1 - po0) / window,
        host_in: (hri1 - hri0) / window,
        host_out: (hro1 - hro0) / window,
        load_bytes: load_bytes,
        place_us: place_us,
        cluster_mem: cluster_mem,
        table_mem: table_mem
      }
    after
      for {peer, _, _} <- hosts do
        try do
          :peer.stop(peer)
        catch
          :exit, _ -> :ok
        end
      end
    end
  end

# place/2 alone, on synthetic loads of many hosts.
synthetic = fn n ->
  loads =
    for k <- 1..n,
        do: %{
          node: :"h#{k}@x",
          containers: rem(k * 7, 50),
          cpus: 8,
          cpu_idle: 4.0,
          memory_available: 8 * 1024 * 1024 * 1024,
          max_containers: :infinity
        }

  Sim.median(for _ <- 1..2_000, do: elem(:timer.tc(fn -> Ampule.Cluster.place(loads) end), 0))
end

place_pure = for n <- [10, 100, 1000], do: {n, synthetic.(n)}

report = """
Times are until every node, polled in turn (an `:erpc` each), agrees: the polling is part of them. Simulation: #{Enum.join(sizes, ", ")} hosts as :peer nodes on loopback on this machine (#{System.schedulers_online()} cores), each with Ampule's :pg scope and an Ampule.Cluster offering (no port program, no container), and one caller node; load interval #{interval} ms; steady traffic over #{window} s (bench/cluster_sim.exs, #{Date.utc_today()}).

| hosts | join seen by every node (median of 5) | leave (its Cluster stops), median of 5 | SIGKILLed host dropped by every node | caller: dist bytes/s in / out (packets/s) | one host: dist bytes/s in / out | one load message | `place(hosts())` at the caller | Ampule.Cluster + its table at the caller |
|---|---|---|---|---|---|---|---|---|
#{Enum.map_join(rows, "\n", fn r -> "| #{r.n} | #{Sim.ms(r.join_us)} ms | #{Sim.ms(r.leave_stop_us)} ms | #{Sim.ms(r.leave_us)} ms | #{round(r.caller_in)} / #{round(r.caller_out)} (#{round(r.caller_pkts)}) | #{round(r.host_in)} / #{round(r.host_out)} | #{r.load_bytes} B | #{r.place_us} µs | #{div(r.cluster_mem + r.table_mem, 1024)} KiB |" end)}

`place/2` alone on synthetic loads: #{Enum.map_join(place_pure, ", ", fn {n, us} -> "#{n} hosts #{us} µs" end)} (median).
"""

IO.puts(report)
File.write!(Path.join(__DIR__, "cluster_sim_results.md"), report)
