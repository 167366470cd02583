# The cold start alone, taken apart: a distribution container, a sandbox and a `:peer`
# node, start → one call → stop, interleaved (each side first as often as the others), with
# where each side's time went. Run with `script/bench cold` (as root). Prints a Markdown
# report and writes it to bench/cold_results.md.
#
# Per sample of a distribution container: the port's own phases (its debug log, `ready in
# … ms: prepare, config, start_lock, lxc_start, …`), then this side's steps, timed around
# the very calls `Ampule.spawn/1` makes (`Ampule.Distribution.start_container/2`: the
# port's answer, then the connection), the first `:rpc.call` and
# `destroy`; and the node's age at that first call (`:erlang.system_info(:start_time)`),
# which places the BEAM's start on the same time line. A sandbox's: the port's phases
# (`started in …`) and its agent's hello. Medians over the samples, so that the load of
# a shared machine distorts each phase as little as it can.
#
# Sizes (environment): BENCH_COLD (samples per side, 30). AMPULE_BRIDGE, AMPULE_SUBNET and
# AMPULE_STATE_DIR as for the suite (bench/support.exs).

Code.require_file("support.exs", __DIR__)
Bench.Env.apply()
Application.put_env(:ampule, :log_level, "debug")

defmodule Bench.Cold.Log do
  # A :logger handler that keeps the port's "ready in" and "started in" lines by container.
  def log(%{msg: msg, meta: meta}, _config) do
    text =
      case msg do
        {:string, s} -> IO.chardata_to_string(s)
        {:report, _} -> ""
        {format, args} -> :io_lib.format(format, args) |> IO.chardata_to_string()
      end

    with name when is_binary(name) <- Map.get(meta, :container),
         [_, total, phases] <- Regex.run(~r/(?:ready|started) in ([\d.]+) ms: (.*)$/, text) do
      :ets.insert(:bench_cold_log, {name, parse(total, phases)})
    end

    :ok
  end

  defp parse(total, phases) do
    marks =
      for p <- String.split(phases, ", "), [what, ms] = String.split(p, " "), into: %{} do
        {what, String.to_float(ms) * 1000}
      end

    order = for p <- String.split(phases, ", "), do: hd(String.split(p, " "))
    marks |> Map.put("total", String.to_float(total) * 1000) |> Map.put(:order, order)
  end

  def install do
    :ets.new(:bench_cold_log, [:named_table, :public, :set])
    :ok = :logger.add_handler(:bench_cold, __MODULE__, %{level: :debug})
    :logger.update_handler_config(:default, :level, :info)
    Logger.configure(level: :debug)
  end

  # The port's line for `name`: it is sent before the spawn's answer, but through the
  # logger, so wait a little for it.
  def take(name, tries \\ 200) do
    case :ets.take(:bench_cold_log, name) do
      [{^name, marks}] -> marks
      [] when tries > 0 -> Process.sleep(1) && take(name, tries - 1)
      [] -> %{}
    end
  end
end

defmodule Bench.Cold do
  alias Bench.{Cgroup, Release}

  defp now, do: System.monotonic_time(:microsecond)

  # The port's spawn of a distribution container as `Ampule.spawn/0` asks for it
  # (Ampule.Containers.start/1 → Ampule.Distribution.start_container/2); `polled` as
  # before issue 21's cut: no announcement, so the port polls the container's EPMD and
  # completes a handshake of its own before it answers.
  defp port_spawn(polled) do
    {owner, request, :distribution} = Ampule.Options.spawn!([])

    request =
      if polled,
        do: %{Map.delete(request, :announce) | args: without_announce(request.args)},
        else: request

    {:ok, hello} = Ampule.Port.hello()
    :ok = Ampule.Distribution.ensure_started(hello.host_address)
    {:ok, c} = Ampule.Port.spawn(request, owner)
    c
  end

  defp without_announce(["-s", "ampule_announce" | rest]), do: rest
  defp without_announce([arg | rest]), do: [arg | without_announce(rest)]
  defp without_announce([]), do: []

  # A first call into the node, timed, and the node's age then by its own clock (its
  # start time asked after, untimed): {sent, answered, age}.
  defp first_call(call) do
    t0 = now()
    mono = call.(:erlang, :monotonic_time, [])
    t1 = now()
    start = call.(:erlang, :system_info, [:start_time])
    {t0, t1, :erlang.convert_time_unit(mono - start, :native, :microsecond)}
  end

  # The container's CPU (untimed), `destroy` (timed), then (untimed) its release and the
  # port's phases: {cpu, destroy µs, phases}.
  defp finish(c) do
    cpu = Cgroup.cpu_us(c.name)
    t0 = now()
    Ampule.destroy(c)
    t1 = now()
    :ok = Release.wait(c)
    {cpu, t1 - t0, Bench.Cold.Log.take(c.name)}
  end

  # A distribution container, each step of `Ampule.spawn/0` timed.
  def dist do
    t0 = now()
    c = port_spawn(false)
    t_spawn = now()
    cpu_answer = Cgroup.cpu_us(c.name)
    t_read = now()
    Ampule.Distribution.set_cookie(c.nodename, c.cookie)
    true = :net_kernel.connect_node(c.nodename)
    t_connect = now()
    {sent, t_rpc, age} = first_call(&:rpc.call(c.nodename, &1, &2, &3))
    {cpu, destroy, port} = finish(c)

    %{
      total: t_rpc - t0 - (t_read - t_spawn) + destroy,
      spawn: t_spawn - t0,
      cpu_answer: cpu_answer,
      connect: t_connect - t_read,
      rpc: t_rpc - sent,
      destroy: destroy,
      # When the node's BEAM started, from the spawn's start (its age at the first call).
      beam_start: sent + div(t_rpc - sent, 2) - age - t0,
      cpu: cpu,
      port: port
    }
  end

  # The readiness of before, for an A/B in the same run: then this node's connection and
  # `Ampule.Remote` made sure of over `:erpc`, as `Ampule.spawn/0` did.
  def dist_polled do
    t0 = now()
    c = port_spawn(true)
    t_spawn = now()
    Ampule.Distribution.set_cookie(c.nodename, c.cookie)
    {:module, _} = :erpc.call(c.nodename, :code, :ensure_loaded, [Ampule.Remote])
    _ = :rpc.call(c.nodename, :erlang, :node, [])
    t_rpc = now()
    {cpu, destroy, port} = finish(c)
    %{total: t_rpc - t0 + destroy, spawn: t_spawn - t0, cpu: cpu, port: port}
  end

  # Through the front door, for the ratio the issue quotes.
  def dist_front do
    t0 = now()
    c = Ampule.spawn()
    _ = :rpc.call(c.nodename, :erlang, :node, [])
    t_rpc = now()
    {_cpu, destroy, _port} = finish(c)
    %{total: t_rpc - t0 + destroy, spawn: t_rpc - t0}
  end

  def sandbox do
    t0 = now()
    c = Ampule.spawn(sandbox: true)
    t_spawn = now()
    {sent, t_call, age} = first_call(&Ampule.call({&1, &2, &3}, c))
    {cpu, destroy, port} = finish(c)

    %{
      total: t_call - t0 + destroy,
      spawn: t_spawn - t0,
      beam_start: sent + div(t_call - sent, 2) - age - t0,
      rpc: t_call - sent,
      destroy: destroy,
      cpu: cpu,
      port: port
    }
  end

  def peer do
    t0 = now()
    {pid, node} = Bench.Peer.start()
    t_start = now()
    _ = :rpc.call(node, :erlang, :node, [])
    t_rpc = now()
    os_pid = :rpc.call(node, :os, :getpid, []) |> List.to_integer()
    t_stop = now()
    :peer.stop(pid)
    t_end = now()
    Release.wait_gone(os_pid)
    %{total: t_end - t0 - (t_stop - t_rpc), spawn: t_start - t0, rpc: t_rpc - t_start}
  end
end

alias Bench.{Cold, Stats}

n = String.to_integer(System.get_env("BENCH_COLD", "30"))
Bench.Cold.Log.install()
load_before = Bench.Env.load()

# Warm up every path (the port, distribution, the boot script, :peer's code).
for f <- [&Cold.dist/0, &Cold.dist_front/0, &Cold.dist_polled/0, &Cold.sandbox/0, &Cold.peer/0],
    do: f.()

sides = [
  dist: &Cold.dist/0,
  front: &Cold.dist_front/0,
  polled: &Cold.dist_polled/0,
  sandbox: &Cold.sandbox/0,
  peer: &Cold.peer/0
]

samples =
  Enum.reduce(1..n, %{dist: [], front: [], polled: [], sandbox: [], peer: []}, fn i, acc ->
    {a, b} = Enum.split(sides, rem(i, length(sides)))

    Enum.reduce(b ++ a, acc, fn {side, f}, acc ->
      Map.update!(acc, side, &[f.() | &1])
    end)
  end)

load_after = Bench.Env.load()
med = fn xs -> xs |> Enum.reject(&is_nil/1) |> Stats.median() end
ms = fn us -> Stats.ms(us) end
col = fn side, key -> med.(Enum.map(samples[side], &Map.get(&1, key))) end
port_col = fn side, key -> med.(Enum.map(samples[side], &Map.get(&1.port, key))) end

# Phases in the order the port marks them (every phase any sample had).
order = fn side ->
  samples[side] |> Enum.flat_map(&Map.get(&1.port, :order, [])) |> Enum.uniq()
end

port_rows = fn side ->
  keys = order.(side)

  Enum.map_join(keys, "\n", fn k -> "| port: #{k} | #{ms.(port_col.(side, k))} ms |" end) <>
    "\n| port: the whole spawn (its `… in` figure) | #{ms.(port_col.(side, "total"))} ms |"
end

report = """
# Cold start, taken apart (`script/bench cold`)

#{Bench.Env.machine()}. Load (1, 5, 15 min) at the start: #{load_before}; at the end: #{load_after}. #{n} samples per side, interleaved; medians.

| side | start → call → stop | ÷ `:peer` | CPU (container cgroup) |
|---|---|---|---|
| distribution (`Ampule.spawn/0`, `:rpc.call`, `destroy`) | #{ms.(col.(:front, :total))} ms | #{Stats.ratio(col.(:front, :total), col.(:peer, :total))} | |
| distribution, step by step (below) | #{ms.(col.(:dist, :total))} ms | #{Stats.ratio(col.(:dist, :total), col.(:peer, :total))} | #{ms.(col.(:dist, :cpu))} ms |
| distribution, readiness as before the announcement (EPMD polled, the port's handshake, `Ampule.Remote` over `:erpc`) | #{ms.(col.(:polled, :total))} ms | #{Stats.ratio(col.(:polled, :total), col.(:peer, :total))} | #{ms.(col.(:polled, :cpu))} ms |
| sandbox (`Ampule.spawn(sandbox: true)`, `Ampule.call/2`, `destroy`) | #{ms.(col.(:sandbox, :total))} ms | #{Stats.ratio(col.(:sandbox, :total), col.(:peer, :total))} | #{ms.(col.(:sandbox, :cpu))} ms |
| `:peer` (`start`, `:rpc.call`, `stop`) | #{ms.(col.(:peer, :total))} ms | 1.00 | |

## Distribution container, step by step

| step | median |
|---|---|
#{port_rows.(:dist)}
| the port's answer received (from the spawn's start) | #{ms.(col.(:dist, :spawn))} ms |
| the node's BEAM started (from the spawn's start; its age at the first call) | #{ms.(col.(:dist, :beam_start))} ms |
| CPU of the container's cgroup at the port's answer | #{ms.(col.(:dist, :cpu_answer))} ms |
| cookie + `:net_kernel.connect_node/1` (this node's handshake) | #{ms.(col.(:dist, :connect))} ms |
| first `:rpc.call` | #{ms.(col.(:dist, :rpc))} ms |
| `destroy` | #{ms.(col.(:dist, :destroy))} ms |

## Distribution container, readiness as before

| step | median |
|---|---|
#{port_rows.(:polled)}
| the port's answer received (from the spawn's start) | #{ms.(col.(:polled, :spawn))} ms |

## Sandbox, step by step

| step | median |
|---|---|
#{port_rows.(:sandbox)}
| the node's BEAM started (from the spawn's start; its age at the first call) | #{ms.(col.(:sandbox, :beam_start))} ms |
| `Ampule.spawn(sandbox: true)` returned (agent's hello) | #{ms.(col.(:sandbox, :spawn))} ms |
| first `Ampule.call/2` | #{ms.(col.(:sandbox, :rpc))} ms |
| `destroy` | #{ms.(col.(:sandbox, :destroy))} ms |

## `:peer`

| step | median |
|---|---|
| `:peer.start/1` returned (the node connected back) | #{ms.(col.(:peer, :spawn))} ms |
| first `:rpc.call` | #{ms.(col.(:peer, :rpc))} ms |
"""

IO.puts(report)
File.write!(Path.join(__DIR__, "cold_results.md"), report)
