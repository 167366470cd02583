# Real work in fresh nodes (issue 21): each project of bench/corpus (a module and its
# ExUnit tests) graded in a fresh local `elixir`, a `:peer` node, a cold sandbox, a cold
# distribution container (each also with `lean_boot: false`, the A/B of the boot on real
# work) and a pooled sandbox; then the first calls into a pristine container. Run with
# `script/bench work` (as root). Prints a Markdown report and writes it to
# bench/work_results.md.
#
# Every side runs the same grader (bench/work/grader.ex, compiled to disk here: code of a
# script lives only in this node's memory and cannot travel), and every side must agree
# with the local one on each project's result: the harness raises otherwise.
#
# Sizes (environment): BENCH_WORK_PROJECTS (projects of the corpus, all by default),
# BENCH_WORK_REPS (repetitions of each grading, 3), BENCH_WORK_FLIGHT ("2,4": gradings in
# flight for the concurrent rounds; "" for none), BENCH_WORK_FIRST (samples of each first
# call, 10). AMPULE_BRIDGE, AMPULE_SUBNET and AMPULE_STATE_DIR as for the suite;
# BENCH_CPU_SHARES (bench/support.exs) for a machine that other work shares.
#
# BENCH_WORK_GRADE=1 adds two sides that grade through `Ampule.Grade.run/2` (a cold
# sandbox, and a pool prepared with `Ampule.Grade.prepare/0`) in the same sandboxes as
# the other sides, so that the helper's cost shows beside the bare grader's. Off by
# default: the report's other figures stay comparable with earlier runs either way, but
# the helper does more (one test at a time, each test's output captured, failures
# formatted), so its rows are its own and it has no phases.

Code.require_file("support.exs", __DIR__)
Bench.Env.apply()

# The grader and the probe, where containers, `:peer` nodes and local `elixir`s load them.
ebin = Bench.Grading.compile!()

defmodule Bench.Work do
  alias Bench.{Cgroup, Release}

  @grade_timeout 300_000
  @pool :bench_work_pool
  @prepared_pool :bench_work_pool_prepared
  @grade_pool :bench_work_pool_grade

  def pool, do: @pool
  def prepared_pool, do: @prepared_pool
  def grade_pool, do: @grade_pool

  def corpus(n), do: Bench.Grading.corpus(n)

  defp mfa(p), do: Bench.Grading.mfa(p)

  # How a side grades project `p` in sandbox or container `c`: the bench's own grader, or
  # Ampule.Grade (its result cut to what the grader reports: ExUnit's failures count the
  # invalid tests too).
  def by_grader(p, c), do: Ampule.call(mfa(p), c, @grade_timeout)

  def by_helper(p, c) do
    project = [lib: [{"lib.ex", p.lib}], test: [{"lib_test.exs", p.test}]]

    case Ampule.Grade.run(project, container: c, timeout: @grade_timeout) do
      {:ok, %Ampule.Grade{status: :ok} = g} ->
        %{total: g.total, failures: g.failed + g.invalid, phases: nil}

      other ->
        raise "Ampule.Grade could not grade #{p.name}: #{inspect(other, limit: 20)}"
    end
  end

  # Each side grades project `p` and returns %{result, wall (µs), cpu (µs)}.

  # A fresh local `elixir`, as a grader would run one per project. Its CPU is what bash's
  # `times` reports for its children once it has exited (the BEAM and what it ran: no
  # other way sees a process's CPU after its exit); bash's own start counts in the wall.
  def local(p, ebin) do
    script = ~S(elixir "$@"; s=$?; times; exit $s)

    args = [
      "-c",
      script,
      "bash",
      "-pa",
      ebin,
      "-e",
      "Bench.Work.Grader.cli()",
      p.lib_path,
      p.test_path
    ]

    t0 = System.monotonic_time(:microsecond)
    {out, 0} = System.cmd("bash", args, stderr_to_stdout: true)
    wall = System.monotonic_time(:microsecond) - t0
    [_, b64] = Regex.run(~r/#{Bench.Work.Grader.marker()}(\S+)/, out)
    [_, um, us, sm, ss] = Regex.run(~r/(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*\z/, out)

    cpu =
      round(
        ((String.to_integer(um) + String.to_integer(sm)) * 60 + String.to_float(us) +
           String.to_float(ss)) * 1_000_000
      )

    %{result: :erlang.binary_to_term(Base.decode64!(b64)), wall: wall, cpu: cpu}
  end

  # A `:peer` node with this node's code path (Elixir's, Ampule's, the grader's), started
  # per project: start, grade, stop timed; its exit awaited untimed.
  def peer(p) do
    paths = Enum.flat_map(extra_paths(), &[~c"-pa", &1])
    t0 = System.monotonic_time(:microsecond)

    {:ok, pid, node} =
      :peer.start(%{
        name: :"bench_work_#{System.unique_integer([:positive])}",
        host: Bench.Env.host_address(),
        longnames: true,
        args: [~c"-hidden" | paths]
      })

    {m, f, a} = mfa(p)
    result = :erpc.call(node, m, f, a, @grade_timeout)
    os_pid = :erpc.call(node, :os, :getpid, []) |> List.to_integer()
    cpu = task_cpu_us(os_pid)
    :peer.stop(pid)
    wall = System.monotonic_time(:microsecond) - t0
    Release.wait_gone(os_pid)
    %{result: result, wall: wall, cpu: cpu}
  end

  defp extra_paths do
    root = :code.root_dir()
    for path <- :code.get_path(), not List.starts_with?(path, root), do: path
  end

  # CPU of every thread of a process, in µs (schedstat counts ns, finer than /proc/PID/stat).
  defp task_cpu_us(os_pid) do
    Path.wildcard("/proc/#{os_pid}/task/*/schedstat")
    |> Enum.map(fn f ->
      case File.read(f) do
        {:ok, t} -> t |> String.split() |> hd() |> String.to_integer()
        _ -> 0
      end
    end)
    |> Enum.sum()
    |> div(1000)
  end

  # A cold container: spawn, grade, destroy timed; its release awaited untimed. CPU is its
  # cgroup's, boot included, as for the local and :peer sides.
  def container(p, opts, grade \\ &by_grader/2) do
    t0 = System.monotonic_time(:microsecond)
    c = Ampule.spawn(opts ++ Bench.Env.spawn_opts())
    result = grade.(p, c)
    cpu = Cgroup.cpu_us(c.name)
    Ampule.destroy(c)
    wall = System.monotonic_time(:microsecond) - t0
    :ok = Release.wait(c)
    %{result: result, wall: wall, cpu: cpu}
  end

  # As `container/2` with a stock boot (`config :ampule, lean_boot: false`, read when a
  # container is spawned). Only while no pool is booting, or a refill would boot stock too.
  def stock(p, opts) do
    Application.put_env(:ampule, :lean_boot, false)

    try do
      container(p, opts)
    after
      Application.put_env(:ampule, :lean_boot, true)
    end
  end

  # A container from a pool: the call alone is timed (the boot was paid ahead); CPU is what
  # the container used during the call (its cgroup before and after).
  def pooled(p, pool, grade \\ &by_grader/2) do
    Ampule.Pool.with_container(pool, fn c ->
      cpu0 = Cgroup.cpu_us(c.name)
      t0 = System.monotonic_time(:microsecond)
      result = grade.(p, c)
      wall = System.monotonic_time(:microsecond) - t0
      %{result: result, wall: wall, cpu: Cgroup.cpu_us(c.name) - cpu0}
    end)
    |> case do
      {:ok, r} -> r
      %{} = r -> r
      other -> raise "pooled grading failed: #{inspect(other)}"
    end
  end

  # The prepared pool's `prepare:` (Ampule.Pool): what a grading and the first calls load.
  def prepare_opts do
    [
      applications: [:elixir, :ex_unit],
      # String.upcase/1 loads String.Unicode (its first call took 23 ms without it).
      modules: [
        Bench.Work.Grader,
        Bench.Work.Probe,
        String,
        String.Unicode,
        Enum,
        Map,
        Regex,
        Code
      ],
      run: {Bench.Work.Probe, :eval, ["1 + 1"]}
    ]
  end

  def start_pools(grade?) do
    shares = Bench.Env.spawn_opts()
    {:ok, _} = Ampule.Pool.start_link([name: @pool, size: 2, sandbox: true] ++ shares)

    {:ok, _} =
      Ampule.Pool.start_link(
        [name: @prepared_pool, size: 2, sandbox: true, prepare: prepare_opts()] ++ shares
      )

    if grade? do
      {:ok, _} =
        Ampule.Pool.start_link(
          [name: @grade_pool, size: 2, sandbox: true, prepare: Ampule.Grade.prepare()] ++
            shares
        )

      [@pool, @prepared_pool, @grade_pool]
    else
      [@pool, @prepared_pool]
    end
  end

  # Until every pool holds its 2 idle containers and nothing else is being released:
  # refills must not steal CPU from the sample that follows.
  def quiet(pools) do
    full = Enum.all?(pools, &match?(%{idle: 2, booting: 0}, Ampule.Pool.stats(&1)))

    released =
      case File.ls(Path.join(Bench.Env.state_dir(), "apps")) do
        {:ok, l} -> length(Enum.reject(l, &String.starts_with?(&1, "."))) <= 2 * length(pools)
        _ -> true
      end

    unless full and released do
      Process.sleep(2)
      quiet(pools)
    end
  end

  def outcome(%{result: r}), do: Map.take(r, [:total, :failures])
end

alias Bench.{Stats, Work}

n_projects = String.to_integer(System.get_env("BENCH_WORK_PROJECTS", "1000"))
reps = String.to_integer(System.get_env("BENCH_WORK_REPS", "3"))
n_first = String.to_integer(System.get_env("BENCH_WORK_FIRST", "10"))
grade? = System.get_env("BENCH_WORK_GRADE", "") == "1"

flight =
  System.get_env("BENCH_WORK_FLIGHT", "2,4")
  |> String.split(",", trim: true)
  |> Enum.map(&String.to_integer/1)

projects = Work.corpus(n_projects)
section = fn name -> IO.puts(:stderr, "#{name} (load #{Bench.Env.load()})") end
load_start = Bench.Env.load()

# Warm up: the distribution container first (it makes this node distributed, which
# `:peer` needs), then a sandbox, a peer and a local `elixir` (page cache, the port).
warm = hd(projects)
Work.container(warm, [])
Work.container(warm, sandbox: true)
Work.peer(warm)
Work.local(warm, ebin)

pools = Work.start_pools(grade?)

sides = [
  local: fn p -> Work.local(p, ebin) end,
  peer: &Work.peer/1,
  sandbox: &Work.container(&1, sandbox: true),
  sandbox_stock: &Work.stock(&1, sandbox: true),
  sandbox_cpus2: &Work.container(&1, sandbox: true, cpus: 2),
  dist: &Work.container(&1, []),
  dist_stock: &Work.stock(&1, []),
  pool: &Work.pooled(&1, Work.pool()),
  pool_prepared: &Work.pooled(&1, Work.prepared_pool())
]

sides =
  if grade?,
    do:
      sides ++
        [
          grade: fn p -> Work.container(p, [sandbox: true], &Work.by_helper/2) end,
          grade_prepared: fn p -> Work.pooled(p, Work.grade_pool(), &Work.by_helper/2) end
        ],
    else: sides

side_names = Keyword.keys(sides)

section.("grading, one at a time")

# Project by project, every side in turn (rotated), so that the machine's drift hits all
# sides alike; the pools are full and nothing is being released before each sample.
serial =
  for rep <- 1..reps,
      {p, i} <- Enum.with_index(projects),
      {side, f} <- Stats.rotate(sides, rep + i) do
    Work.quiet(pools)
    {side, p.name, f.(p)}
  end

# Every side must agree with the local `elixir` on every project.
expected = for {:local, name, r} <- serial, into: %{}, do: {name, Work.outcome(r)}

for {side, name, r} <- serial, Work.outcome(r) != expected[name] do
  raise "#{side} graded #{name} as #{inspect(Work.outcome(r))}, local as #{inspect(expected[name])}"
end

section.("grading, in flight")

# The whole corpus with k gradings in flight (Task.async_stream), each side in turn; the
# stock sides are left out (their boot flag is global and a concurrent round would mix).
flight_sides = Keyword.drop(sides, [:sandbox_stock, :sandbox_cpus2, :dist_stock])

concurrent =
  for rep <- 1..reps, k <- flight, {side, f} <- Stats.rotate(flight_sides, rep) do
    Work.quiet(pools)
    t0 = System.monotonic_time(:microsecond)

    rs =
      projects
      |> Task.async_stream(f, max_concurrency: k, timeout: :infinity)
      |> Enum.map(fn {:ok, r} -> r end)

    wall = System.monotonic_time(:microsecond) - t0

    for {p, r} <- Enum.zip(projects, rs), Work.outcome(r) != expected[p.name] do
      raise "#{side} (#{k} in flight) graded #{p.name} as #{inspect(Work.outcome(r))}"
    end

    {side, k, wall, rs |> Enum.map(& &1.cpu) |> Enum.sum()}
  end

section.("first calls")

probes = [
  {"`:erlang.node/0` (a BIF: the floor)", {:erlang, :node, []}},
  {"`String.upcase/1`", {String, :upcase, ["x"]}},
  {"`Enum.sum/1`", {Enum, :sum, [[1, 2, 3]]}},
  {"`Map.new/1`", {Map, :new, [[a: 1, b: 2]]}},
  {"`Regex.run/2`", {Regex, :run, [Regex.compile!("b+"), "abbc"]}},
  {~s[`Code.eval_string("1 + 1")` (`:elixir` started first)],
   {Bench.Work.Probe, :eval, ["1 + 1"]}},
  {"a module of the caller's project", {Bench.Work.Probe, :own, [42]}}
]

first_kinds = [
  # The call alone, into a sandbox just booted (the boot untimed).
  cold: fn mfa ->
    c = Ampule.spawn([sandbox: true] ++ Bench.Env.spawn_opts())
    us = Stats.time(fn -> Ampule.call(mfa, c) end)
    Ampule.destroy(c)
    :ok = Bench.Release.wait(c)
    us
  end,
  pooled: fn mfa -> Stats.time(fn -> Ampule.call(mfa, pool: Work.pool()) end) end,
  prepared: fn mfa -> Stats.time(fn -> Ampule.call(mfa, pool: Work.prepared_pool()) end) end
]

first =
  for i <- 1..n_first,
      {kind, f} <- Stats.rotate(first_kinds, i),
      {probe, mfa} <- Stats.rotate(probes, i) do
    Work.quiet(pools)
    {kind, probe, f.(mfa)}
  end

Enum.each(pools, &GenServer.stop/1)
load_end = Bench.Env.load()

## The report

med = &Stats.median/1
ms = &Stats.ms/1
ratio = &Stats.ratio/2

# Per side: the median of each project's samples, summed over the corpus (the corpus's
# time), so that a long project weighs as much as it costs.
per_project = fn side, key ->
  for p <- projects do
    med.(for {^side, name, r} <- serial, name == p.name, do: key.(r))
  end
  |> Enum.sum()
end

wall = Map.new(side_names, &{&1, per_project.(&1, fn r -> r.wall end)})
cpu = Map.new(side_names, &{&1, per_project.(&1, fn r -> r.cpu end)})
phase = fn side, ph -> per_project.(side, fn r -> r.result.phases[ph] end) end

side_label = %{
  local: "fresh local `elixir`",
  peer: "`:peer` node",
  sandbox: "cold sandbox",
  sandbox_stock: "cold sandbox, `lean_boot: false`",
  sandbox_cpus2: "cold sandbox, `cpus: 2` (the default quota is one CPU)",
  dist: "cold distribution container",
  dist_stock: "cold distribution container, `lean_boot: false`",
  pool: "pooled sandbox (pool of 2, no preparation)",
  pool_prepared: "prepared pooled sandbox (pool of 2, `prepare:`)",
  grade: "`Ampule.Grade.run/2`, cold sandbox",
  grade_prepared: "`Ampule.Grade.run/2`, pooled sandbox prepared with `Ampule.Grade.prepare/0`"
}

serial_rows =
  Enum.map_join(side_names, "\n", fn s ->
    "| #{side_label[s]} | #{ms.(wall[s])} ms | #{ratio.(wall[s], wall.local)} | #{ms.(cpu[s])} ms | #{ratio.(cpu[s], cpu.local)} |"
  end)

flight_rows =
  for {s, _} <- flight_sides, k <- flight do
    mine = for {^s, ^k, w, c} <- concurrent, do: {w, c}
    base = for {:local, ^k, w, c} <- concurrent, do: {w, c}
    w = med.(Enum.map(mine, &elem(&1, 0)))
    c = med.(Enum.map(mine, &elem(&1, 1)))
    bw = med.(Enum.map(base, &elem(&1, 0)))
    bc = med.(Enum.map(base, &elem(&1, 1)))

    "| #{side_label[s]} | #{k} | #{ms.(w)} ms | #{ratio.(w, bw)} | #{ms.(c)} ms | #{ratio.(c, bc)} |"
  end
  |> Enum.join("\n")

phases = [:start, :module, :tests, :run]

# Ampule.Grade times no phases.
phase_rows =
  Enum.map_join(side_names -- [:grade, :grade_prepared], "\n", fn s ->
    cells =
      Enum.map_join(phases, " | ", fn ph ->
        "#{ms.(phase.(s, ph))} (#{ratio.(phase.(s, ph), phase.(:local, ph))})"
      end)

    work = Enum.sum(Enum.map(phases, &phase.(s, &1)))
    "| #{side_label[s]} | #{cells} | #{ms.(work)} | #{ms.(wall[s] - work)} |"
  end)

first_rows =
  Enum.map_join(probes, "\n", fn {probe, _} ->
    cells =
      Enum.map_join(first_kinds, " | ", fn {kind, _} ->
        Stats.ms2(med.(for {^kind, ^probe, us} <- first, do: us)) <> " ms"
      end)

    "| #{probe} | #{cells} |"
  end)

outcomes =
  Enum.map_join(projects, "\n", fn p ->
    "| #{p.name} | #{expected[p.name].total} | #{expected[p.name].failures} |"
  end)

report = """
Machine: #{Bench.Env.machine()}. Load (1, 5, 15 min) at the start: #{load_start}; at the end: #{load_end}.
Corpus: #{length(projects)} projects of bench/corpus, #{reps} repetition(s); every side agreed with the local `elixir` on every project's result.

### Grading, one at a time

Each project graded in a fresh node (`ExUnit.start`, `Code.compile_string` of the module, then of its tests, `ExUnit.run`): start, grade, stop, for cold sides; the call alone for pooled ones (the pool booted the container ahead). The median of each project's #{reps} sample(s), summed over the corpus.

| side | wall time | ÷ local | CPU | ÷ local |
|---|---|---|---|---|
#{serial_rows}

#{if grade?, do: "The `Ampule.Grade.run/2` rows grade the same project in the same kind of sandbox through the helper, which runs one test at a time, captures each test's output and log, and formats each failure inside: its own figures, not the bare grader's.\n\n", else: ""}CPU: a local `elixir`'s as bash's `times` reports it once it has exited; a `:peer`'s, its threads' schedstat; a container's, its cgroup's (`cpuacct`/`cpu.stat`), boot included; a pooled container's, its cgroup's during the call alone.

### Grading, in flight

The whole corpus with k gradings at once (`Task.async_stream`), median of #{reps} round(s).

| side | in flight | wall time | ÷ local | CPU, all gradings | ÷ local |
|---|---|---|---|---|---|
#{flight_rows}

### Inside the node: the grading's phases

Each phase as the grader timed it inside the node, summed over the corpus (medians per project), in ms (÷ the local `elixir`'s): `start` is `Application.ensure_all_started(:elixir)` and `ExUnit.start`. "The rest" is the wall time that is not grading: boot, the call, the stop.

| side | start | compile module | compile tests | run tests | work | the rest |
|---|---|---|---|---|---|---|
#{phase_rows}

### First calls into a pristine sandbox

One call, p50 of #{n_first}: `cold` into a sandbox just booted (the boot untimed); `pooled` through a full pool of 2 (taking the container, the call, giving it back); `prepared` through a pool with `prepare:`.

| call | #{Enum.map_join(first_kinds, " | ", fn {k, _} -> to_string(k) end)} |
|---|#{Enum.map_join(first_kinds, "", fn _ -> "---|" end)}
#{first_rows}

### The corpus's results (every side agreed)

| project | tests | failures |
|---|---|---|
#{outcomes}
"""

IO.puts(report)
File.write!(Path.join(__DIR__, "work_results.md"), report)
