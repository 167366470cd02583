# What makes a container's boot cheaper: A/B of one idea at a time against the same
# baseline, in one run, samples alternating (A B, then B A, ...) so that the machine's
# drift hits both sides alike. Run with `script/bench boot` (as root). Prints a Markdown
# table and writes it to bench/boot_results.md.
#
# Each sample: `Ampule.start/1` timed until the container is ready (a sandbox's agent has
# said hello; a distribution node has completed the handshake and has Ampule.Remote),
# then the container's cgroup CPU time at ready and 150 ms later (what a boot costs in
# all: a refill of a pool), its cgroup's peak memory and the PSS of its processes, then
# 200 small calls (the idea must not break them), then real work: one project of
# bench/corpus graded in it (bench/work/grader.ex: `ExUnit.start`, the module and its
# tests compiled, the tests run), its wall time and its cgroup's CPU, and its counts
# checked against the same grading in a stock sandbox; then destroy, and an untimed wait
# for the release. An idea is judged on the sum, boot plus work (issue 21): a flag that
# saves a boot a few milliseconds of CPU and costs a compile a quarter more is no win.
#
# Environment: BOOT_N (pairs per idea, 20), BOOT_IDEAS (comma-separated names: only
# those), BOOT_MODES (sandbox,distribution), BOOT_BASE (`lean`: A is Ampule's default
# boot instead of a stock node), BOOT_WORK (comma-separated projects of bench/corpus,
# graded in turn, pair by pair, so that both sides of a pair grade the same one; `none`
# for boot alone), BENCH_CPU_SHARES (bench/support.exs).

Code.require_file("support.exs", __DIR__)
Bench.Env.apply()

alias Bench.{Cgroup, Memory, Stats}

Bench.Grading.compile!()

defmodule Bench.Boot do
  @grade_timeout 300_000

  # `{lean, opts}`: Ampule's lean boot (Ampule.Boot) on or off, and spawn options; `work`:
  # the project to grade once the container is up (nil: none). `paths:` among the options
  # is the bench's, not Ampule's: `:otp_first` or `:host_first` puts the container's
  # code path in that order after its boot, before the work.
  def sample({lean, opts}, work) do
    Application.put_env(:ampule, :lean_boot, lean)
    {paths, opts} = Keyword.pop(opts, :paths)
    t0 = System.monotonic_time(:microsecond)

    case Ampule.start([owner: false] ++ opts) do
      {:ok, c} -> measure(c, t0, paths, work)
      {:error, reason} -> %{failed: reason, ok: false}
    end
  end

  defp measure(c, t0, paths, work) do
    wall = System.monotonic_time(:microsecond) - t0
    cpu_ready = Cgroup.cpu_us(c.name)
    Process.sleep(150)
    cpu_settled = Cgroup.cpu_us(c.name)
    peak = Cgroup.peak_kib(c.name)
    {_rss, pss} = Memory.of_container(c.name)

    # 200 small calls: what the idea does to a call's round trip.
    rtts =
      for _ <- 1..200 do
        {us, result} = :timer.tc(fn -> call(c) end)
        {us, result}
      end

    ok = Enum.all?(rtts, fn {_, r} -> r == 2 end)
    rtt = rtts |> Enum.map(&elem(&1, 0)) |> Stats.median()
    order_paths(c, paths)
    {work_wall, work_cpu, graded} = grade(c, work)
    Ampule.destroy(c)
    :ok = Bench.Release.wait(c)

    %{
      wall: wall,
      cpu: cpu_ready,
      cpu_settled: cpu_settled,
      peak: peak,
      pss: pss,
      rtt: rtt,
      work_wall: work_wall,
      work_cpu: work_cpu,
      sum_wall: wall + work_wall,
      sum_cpu: cpu_settled + work_cpu,
      ok: ok and graded
    }
  end

  defp order_paths(_c, nil), do: :ok

  defp order_paths(c, order) do
    root = Ampule.call({:code, :root_dir, []}, c, 5_000)
    path = Ampule.call({:code, :get_path, []}, c, 5_000)
    {otp, host} = Enum.split_with(path, &(&1 == ~c"." or List.starts_with?(&1, root)))
    new = if order == :host_first, do: host ++ otp, else: otp ++ host
    true = Ampule.call({:code, :set_path, [new]}, c, 5_000)
  end

  # The project graded in the container: its wall time, its cgroup's CPU, and whether it
  # gave the corpus's known counts.
  defp grade(_c, nil), do: {0, 0, true}

  defp grade(c, p) do
    cpu0 = Cgroup.cpu_us(c.name)
    {us, result} = :timer.tc(fn -> Ampule.call(Bench.Grading.mfa(p), c, @grade_timeout) end)
    cpu = Cgroup.cpu_us(c.name) - cpu0
    {us, cpu, Map.take(result, [:total, :failures]) == p.expected}
  end

  defp call(c) do
    Ampule.call({:erlang, :+, [1, 1]}, c, 5_000)
  rescue
    _ -> :failed
  end

  # n pairs, alternating the order; pair i grades project i of `work` (round robin).
  def ab(a, b, n, work) do
    Enum.reduce(1..n, {[], []}, fn i, {as, bs} ->
      p = if work == [], do: nil, else: Enum.at(work, rem(i - 1, length(work)))

      if rem(i, 2) == 1 do
        x = sample(a, p)
        y = sample(b, p)
        {[x | as], [y | bs]}
      else
        y = sample(b, p)
        x = sample(a, p)
        {[x | as], [y | bs]}
      end
    end)
  end

  def med(samples, key) do
    samples
    |> Enum.reject(&Map.has_key?(&1, :failed))
    |> Enum.map(&Map.fetch!(&1, key))
    |> Stats.median()
  end

  def failure(samples) do
    case Enum.find(samples, &Map.has_key?(&1, :failed)) do
      nil -> nil
      s -> {Enum.count(samples, &Map.has_key?(&1, :failed)), s.failed}
    end
  end
end

alias Bench.Boot

n = String.to_integer(System.get_env("BOOT_N", "20"))
only = System.get_env("BOOT_IDEAS", "") |> String.split(",", trim: true)
lean_base = System.get_env("BOOT_BASE") == "lean"

# Mixed on purpose: compile-heavy with macros, String and Enum, processes.
work_names =
  case System.get_env("BOOT_WORK", "unit_conv,word_freq,router_dsl,counter_server,roman") do
    "none" -> []
    names -> String.split(names, ",", trim: true)
  end

work = Enum.filter(Bench.Grading.corpus(:all), &(&1.name in work_names))
length(work) == length(work_names) || raise "BOOT_WORK names a project not in bench/corpus"

modes =
  System.get_env("BOOT_MODES", "sandbox,distribution")
  |> String.split(",", trim: true)
  |> Enum.map(&String.to_existing_atom/1)

# Each idea: a name, what it is, what it changes, the modes it applies to. A, the
# baseline, is a stock node (`config :ampule, lean_boot: false`: Ampule adds no flag of
# its own); B is a stock node with the idea's spawn options, or (`:lean`) Ampule's lean
# boot, everything kept (Ampule.Boot), or (`{:lean_without, flags}`) that without some.
both = [:sandbox, :distribution]
lean_script = Ampule.Boot.script()

smallboot =
  case lean_script do
    {:ok, dir, boot} -> [code_paths: [dir], args: ["-boot", boot]]
    :none -> raise "no lean boot script could be made"
  end

ideas = [
  {"S1", "`+S 1:1`: one scheduler (the container's quota is one CPU)", [args: ~w(+S 1:1)], both},
  {"dirty1",
   "`+SDcpu 1:1 +SDio 1 +A 0`: one dirty CPU and one dirty I/O scheduler, no async thread",
   [args: ~w(+SDcpu 1:1 +SDio 1 +A 0)], both},
  {"threads", "`+S 1:1 +SDcpu 1:1 +SDio 1 +A 0`: both of the above",
   [args: ~w(+S 1:1 +SDcpu 1:1 +SDio 1 +A 0)], both},
  {"sbwt", "`+sbwt none +sbwtdcpu none +sbwtdio none`: schedulers sleep at once, no spinning",
   [args: ~w(+sbwt none +sbwtdcpu none +sbwtdio none)], both},
  {"Mea", "`+Mea min`: no per-purpose allocators, malloc for all", [args: ~w(+Mea min)], both},
  {"allocs", "`+MMmcs 0 +Mummbcs 0`: no cached segments, no main carriers",
   [args: ~w(+MMmcs 0 +Mummbcs 0)], both},
  {"tables", "`+P 65536 +Q 8192`: smaller process and port tables", [args: ~w(+P 65536 +Q 8192)],
   both},
  {"atoms", "`+t 200000`: a smaller atom table", [args: ~w(+t 200000)], both},
  {"designset",
   "the DESIGN's memory set: `+S 1 +A 0 +SDio 1 +SDcpu 1 +Mea min +P 32768 +Q 4096 +t 200000`",
   [args: ~w(+S 1 +A 0 +SDio 1 +SDcpu 1 +Mea min +P 32768 +Q 4096 +t 200000)], both},
  {"nodot", "`-boot no_dot_erlang`: the system's script without `c:erlangrc`",
   [args: ~w(-boot no_dot_erlang)], both},
  {"smallboot",
   "Ampule's boot script: no `erl_eval`, `erl_lint`, `erl_parse` at boot, no `c:erlangrc` (its directory mounted)",
   smallboot, both},
  {"embedded", "`-mode embedded`: every module of the boot script loaded at boot",
   [args: ~w(-mode embedded)], both},
  {"nologger", "`-kernel logger [{handler,default,undefined}]`: no default log handler",
   [args: ["-kernel", "logger", "[{handler,default,undefined}]"]], both},
  {"JMsingle", "`+JMsingle true`: the JIT's code in one mapping, not two",
   [args: ~w(+JMsingle true)], both},
  {"nohostpaths",
   "`host_code_paths: false`: no Elixir or project `-pa` directories, no their mounts",
   [host_code_paths: false], both},
  {"lean",
   "**Ampule's lean boot: everything kept** (`+S`, `+SDcpu`, `+SDio`, `+A`, `+sbwt*`, `+MMmcs`, `+Mummbcs`, `+P`, `+Q`, the boot script)",
   :lean, both},
  {"leanS2",
   "the lean boot with two schedulers and dirty CPU schedulers (`+S 2:2 +SDcpu 2:2` after it)",
   {:lean, [args: ~w(+S 2:2 +SDcpu 2:2)]}, both},
  {"leanvs",
   "the lean boot, the scheduler spinning a very short while (`+sbwt very_short` after it)",
   {:lean, [args: ~w(+sbwt very_short)]}, both},
  {"leanio",
   "the lean boot, the dirty I/O scheduler spinning as stock (`+sbwtdio short` after it)",
   {:lean, [args: ~w(+sbwtdio short)]}, both},
  {"leanspin",
   "the lean boot, but schedulers spin as stock (`+sbwt medium +sbwtdcpu short +sbwtdio short` after it)",
   {:lean, [args: ~w(+sbwt medium +sbwtdcpu short +sbwtdio short)]}, both},
  {"leanmcs", "the lean boot with the stock segment cache (`+MMmcs 10` after it)",
   {:lean, [args: ~w(+MMmcs 10)]}, both},
  {"cpus2", "the lean boot with a quota of two CPUs (`cpus: 2`: two schedulers)",
   {:lean, [cpus: 2]}, both},
  {"otpfirst", "the lean boot, OTP's directories first on the code path after the boot",
   {:lean, [paths: :otp_first]}, both},
  {"hostfirst",
   "the lean boot, Elixir's and the project's directories first on the code path after the boot",
   {:lean, [paths: :host_first]}, both},
  {"noseccomp", "the lean boot without a seccomp filter (`seccomp: false`)",
   {:lean, [seccomp: false]}, both},
  {"nolimits",
   "the lean boot with no CPU quota nor seccomp filter (`cpus: :infinity, seccomp: false`)",
   {:lean, [cpus: :infinity, seccomp: false]}, both},
  {"leanwork",
   "the lean boot for work: host directories first, schedulers spinning as stock, `+MMmcs 10`",
   {:lean, [paths: :host_first, args: ~w(+sbwt medium +sbwtdcpu short +sbwtdio short +MMmcs 10)]},
   both}
]

ideas = if only == [], do: ideas, else: Enum.filter(ideas, fn {k, _, _, _} -> k in only end)

# Warm up (page cache, the port's first container, distribution), and each project's
# counts as a stock sandbox gives them: every sample must give the same.
for mode <- modes,
    lean <- [false, true],
    do: Boot.sample({lean, [sandbox: mode == :sandbox]}, nil)

work =
  for p <- work do
    {:ok, c} = Ampule.start(owner: false, sandbox: true)
    result = Ampule.call(Bench.Grading.mfa(p), c, 300_000)
    Ampule.destroy(c)
    :ok = Bench.Release.wait(c)
    Map.put(p, :expected, Map.take(result, [:total, :failures]))
  end

rows =
  for mode <- modes, {key, what, change, for_modes} <- ideas, mode in for_modes do
    load = Bench.Env.load()
    IO.puts(:stderr, "#{mode} #{key} (load #{load})")
    base = [sandbox: mode == :sandbox] ++ Bench.Env.spawn_opts()

    b =
      case change do
        :lean -> {true, base}
        {:lean, opts} -> {true, base ++ opts}
        opts -> {false, base ++ opts}
      end

    a = {lean_base, base}
    {as, bs} = Boot.ab(a, b, n, work)
    ok = Enum.all?(bs, & &1.ok) and Enum.all?(as, & &1.ok)
    {mode, key, what, as, bs, ok, load}
  end

Application.delete_env(:ampule, :lean_boot)

base_name =
  if lean_base,
    do: "Ampule's default boot (the lean boot)",
    else: "a stock node (`config :ampule, lean_boot: false`)"

work_line =
  if work == [],
    do: "No work graded (BOOT_WORK=none).",
    else:
      "Work: one project graded per sample, in turn: #{Enum.map_join(work, ", ", & &1.name)}; " <>
        "boot + work is the wall time to ready plus the grading's, and the CPU incl. 150 ms after plus the grading's."

header = """
Boot A/B, #{n} alternating pairs per idea, medians (B / A ratio). #{Bench.Env.machine()}.
A: #{base_name}; B: the idea. #{work_line}

| mode | idea | wall to ready A → B | CPU at ready | CPU incl. 150 ms after | cgroup peak | PSS | call round trip | work, wall | work, CPU | boot + work, wall | boot + work, CPU | calls work | load |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
"""

lines =
  for {mode, _key, what, as, bs, ok, load} <- rows do
    cell = fn key, fmt ->
      a = Boot.med(as, key)
      b = Boot.med(bs, key)
      "#{fmt.(a)} → #{fmt.(b)} (#{Stats.ratio(b, a)})"
    end

    works =
      case {ok, Boot.failure(bs)} do
        {true, nil} ->
          "yes"

        {false, nil} ->
          "**no** (a call failed, or a grading gave other counts)"

        {_, {k, reason}} ->
          "**no**: #{k}/#{length(bs)} boots failed (`#{inspect(reason, limit: 4, printable_limit: 60)}`)"
      end

    "| #{mode} | #{what} | #{cell.(:wall, &"#{Stats.ms(&1)} ms")} | " <>
      "#{cell.(:cpu, &"#{Stats.ms(&1)} ms")} | #{cell.(:cpu_settled, &"#{Stats.ms(&1)} ms")} | " <>
      "#{cell.(:peak, &"#{Stats.mib(&1)} MiB")} | #{cell.(:pss, &"#{Stats.mib(&1)} MiB")} | " <>
      "#{cell.(:rtt, &"#{&1} µs")} | " <>
      "#{cell.(:work_wall, &"#{Stats.ms(&1)} ms")} | #{cell.(:work_cpu, &"#{Stats.ms(&1)} ms")} | " <>
      "#{cell.(:sum_wall, &"#{Stats.ms(&1)} ms")} | #{cell.(:sum_cpu, &"#{Stats.ms(&1)} ms")} | " <>
      "#{works} | #{load} |"
  end

report = header <> Enum.join(lines, "\n") <> "\n"
IO.puts(report)
File.write!(Path.join(__DIR__, "boot_results.md"), report)
