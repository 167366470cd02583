defmodule Ampule.Grade do
  @moduledoc """
  Grading: a project's ExUnit tests run in a sandbox, each test's result back as data.

      {:ok, grade} =
        Ampule.Grade.run(
          lib: [{"stack.ex", student_source}],
          test: ["exercises/stack/stack_test.exs"]
        )

      grade.status                      #=> :ok
      {grade.passed, grade.failed}      #=> {4, 2}

      for %{status: :failed} = t <- grade.tests, do: {t.name, t.message}
      #=> [{"test fills to capacity", "  1) test fills to capacity (StackTest)\\n     stack_test.exs:11\\n     Assertion with == failed\\n     code:  assert Stack.size(s) == 3\\n     left:  2\\n     right: 3\\n ..."}, ...]

  `run/2` boots a sandbox (`Ampule.Sandbox`: code you do not trust), starts `:elixir`,
  `:logger` and `:ex_unit` there, compiles the modules (`:lib`) then the tests (`:test`),
  runs them with ExUnit under a formatter of Ampule's, and returns a `t:t/0` whose
  `:tests` are `Ampule.Grade.Test` structs: module, name, status, the failure as `mix
  test` prints it, what the test printed and logged, its time. The sandbox is destroyed
  after (unless it is yours, `:container`). What comes back is strings, integers and
  Ampule's own atoms: the tested code's modules and atoms never reach your node.

  The name: this module grades (exercism's test runners, code graders, a course's
  autograder), and `Ampule.ExUnit` would shadow `ExUnit` wherever it was aliased.

  ## The project

  A keyword list (or map) with:

    * `:lib` - the modules' files, compiled first, in the order given (a file that uses
      another's macros or structs comes after it)
    * `:test` - the test files (ExUnit cases, `use ExUnit.Case`), compiled after them.
      No `test_helper.exs`: ExUnit is started for you (below)

  Each file is `{name, source}`, source text named as error messages and `:file` will
  show it (`{"lib/stack.ex", "defmodule Stack do ..."}`), or a path on this host, read
  now and named by its path as given. A compile error in either is a result, not a crash:
  `status: :compile_error`, and `:error` says which file and what the compiler said.

  ## What runs, and how

  In the sandbox, ExUnit is started with `autorun: false`, one test at a time
  (`max_cases: 1`, so `async: true` changes nothing but the order), `seed: 0` unless you
  pass one (tests run in the order they are defined; modules in the order compiled, those
  with `async: true` first, as ExUnit runs them),
  `capture_log: true`, and its per-test `timeout:` from `:test_timeout`. A module's
  `setup_all` failing makes its tests `:invalid`, with the failure as their message.

  ## Output

  Each test's `:output` is what it printed, standard output and standard error in the
  order written: what the test process printed, and what processes it started printed
  while it ran (each writer is followed up its chain of parents to the test; a process
  started under the test's `setup_all`, or under an application's supervisor, is not the
  test's). Its `:log` is what it logged, as ExUnit's `capture_log` collects it (every
  process's log while the test runs: one test runs at a time). Not a test's: what a
  process it started prints after the test has ended, compiler warnings and what
  `setup_all` prints; they are the grade's own `:output`. Not captured at all: what is
  written to the `:user` device directly, or by a process that changed its group leader
  (both go to the sandbox's log, `Ampule.Sandbox`).

  ## Limits, and what happens past them

  Output is cut where it arrives, inside the sandbox, so a test that prints a gigabyte
  costs the sandbox its time, not your node's memory: a test keeps the first
  `:max_output` bytes of its output (and of its log) and counts the rest in
  `:output_bytes` (`:log_bytes`); the grade's own output likewise. A failure's message
  keeps `:max_message` bytes and a line saying how many more there were; it is formatted
  in a process of its own with 5 s and 64 MiB, so an exception whose `message/1` raises
  or never ends gets a message that says so. All the texts of a grading together keep at
  most `:max_total` bytes: past it, tests still come with their status, counts and time,
  and empty texts. At most `:max_tests` tests are listed; the counts (`:total`,
  `:passed`, ...) count them all.

  The run as a whole has `:timeout` milliseconds, from the moment the sandbox starts on
  it (a fresh sandbox's boot has its `:boot_timeout` besides): when they pass, the tests
  and every process they started are killed (as they are when a run ends), and the result is `status: :timeout`, with
  the tests that finished, and the one that was running as a test of status `:timeout`
  with its output so far. A test that loops, or prints without end, ends so, or earlier
  by its `:test_timeout` (then it is `:failed`, with ExUnit's "test timed out" message).
  The sandbox's limits (`:memory`, `:cpus`, `:pids`) are those of `Ampule.start/1`: a
  grading that passes the memory limit loses its sandbox and is `{:error, :oom}`.

  ## What a grade is worth

  The tested code runs in the same node as the grading, so it can lie about its own
  results: load its own `ExUnit.Assertions`, write to the formatter, end the run. Your
  node is safe whatever it does (it gets bounded data, checked again here), but a
  grade is the sandbox's word. Run hidden tests apart from code that may target them, and
  see `docs/security.md`.

  ## Options

    * `:timeout` - milliseconds for the whole run: compiling and testing (default
      60_000, or `:infinity`)
    * `:test_timeout` - ExUnit's timeout of one test, in milliseconds (default 60_000)
    * `:max_output` - bytes kept of one test's output, and of its log (default 65_536)
    * `:max_message` - bytes kept of one failure's message (default 16_384)
    * `:max_total` - bytes kept of all the texts of the grading (default 4 MiB)
    * `:max_tests` - tests listed (default 10_000)
    * `:seed` - ExUnit's seed (default 0: the order of definition)
    * `:exclude`, `:include` - ExUnit's tag filters (`exclude: [:slow]`); excluded tests
      are listed as `:excluded`
    * `:pool` - grade in a sandbox of this `Ampule.Pool` (a pool of sandboxes; see
      `prepare/0` for its `prepare:`), given back after
    * `:container` - grade in this sandbox of yours, which stays yours: the project's
      modules stay loaded there (a second grading redefines them, with warnings in the
      grade's `:output`), and so does whatever the tests left but processes: those whose
      group leader is still the grading's are killed when it ends
    * otherwise, every option of `Ampule.start/1` for the fresh sandbox (`:memory`,
      `:cpus`, `:boot_timeout`, ...); `sandbox: true` is implied, and `sandbox: false`
      refused: a distribution container is not for code you do not trust

  Returns `{:ok, grade}`, or `{:error, reason}` when the grading did not happen or did
  not finish: the sandbox did not boot, was killed (`:oom`), or its answer was not a
  grade (`{:bad_grade, detail}`); see "Error reasons" in `Ampule.Error`. Bad arguments
  raise `ArgumentError`.
  """

  alias Ampule.{Call, Container, Containers}
  alias Ampule.Grade.{Runner, Test, Text}

  @enforce_keys [:status]
  defstruct [
    :status,
    :error,
    tests: [],
    total: 0,
    passed: 0,
    failed: 0,
    skipped: 0,
    excluded: 0,
    invalid: 0,
    timeout: 0,
    output: "",
    output_bytes: 0,
    time: 0
  ]

  @typedoc """
  A grading's result:

    * `:status` - `:ok` (the tests ran; some may have failed), `:compile_error`,
      `:timeout` (the run's `:timeout` passed), or `:crashed` (the run itself died, e.g.
      a test killed it)
    * `:error` - for `:compile_error` and `:crashed`: `%{file: name | nil, message:
      text}`, the compiler's or the crash's message as a person reads it; else `nil`
    * `:tests` - `Ampule.Grade.Test` structs, in the order they finished
    * `:total`, `:passed`, `:failed`, `:skipped`, `:excluded`, `:invalid`, `:timeout` -
      counts of all the tests (listed or not)
    * `:output`, `:output_bytes` - output that was no test's (see "Output")
    * `:time` - microseconds the run took in the sandbox (starting ExUnit and compiling
      included)
  """
  @type t :: %__MODULE__{
          status: :ok | :compile_error | :timeout | :crashed,
          error: %{file: String.t() | nil, message: String.t()} | nil,
          tests: [Test.t()],
          total: non_neg_integer,
          passed: non_neg_integer,
          failed: non_neg_integer,
          skipped: non_neg_integer,
          excluded: non_neg_integer,
          invalid: non_neg_integer,
          timeout: non_neg_integer,
          output: binary,
          output_bytes: non_neg_integer,
          time: non_neg_integer
        }

  @typedoc "A file of the project: `{name, source}`, or a path on this host."
  @type file :: {String.t(), String.t()} | Path.t()

  @defaults [
    timeout: 60_000,
    test_timeout: 60_000,
    max_output: 65_536,
    max_message: 16_384,
    max_total: 4 * 1024 * 1024,
    max_tests: 10_000,
    seed: 0,
    exclude: [],
    include: []
  ]

  @statuses [:passed, :failed, :skipped, :excluded, :invalid, :timeout]
  @grade_statuses [:ok, :compile_error, :timeout, :crashed]

  # The sandbox answers by its own deadline; this is for its answer to arrive.
  @grace 10_000

  @doc """
  Grades `project` (`lib:` and `test:` files, see "The project") in a sandbox; see the
  module's documentation for the options.

      Ampule.Grade.run([lib: ["lib/stack.ex"], test: ["test/stack_test.exs"]], memory: 256 * 1024 * 1024)
      #=> {:ok, %Ampule.Grade{status: :ok, total: 6, passed: 4, failed: 2, tests: [...]}}
  """
  @spec run(keyword | map, keyword) :: {:ok, t} | {:error, Ampule.Error.reason()}
  def run(project, opts \\ []) do
    files = project!(project)
    {mine, start_opts} = Keyword.split(opts, Keyword.keys(@defaults) ++ [:pool, :container])
    mine = Keyword.merge(@defaults, mine)
    job = job!(files, mine)
    call_timeout = if job.timeout == :infinity, do: :infinity, else: job.timeout + @grace

    case where!(mine, start_opts) do
      {:container, container} -> grade_in(container, job, call_timeout)
      {:pool, pool} -> pooled(pool, job, call_timeout)
      {:fresh, start_opts} -> fresh(start_opts, job, call_timeout)
    end
  end

  @doc """
  A pool's `prepare:` for grading (see "Prepared containers" in `Ampule.Pool`): the
  applications a grading starts and the modules it loads, so that a pooled grading pays
  for compiling and testing only.

      {Ampule.Pool, name: MyApp.Graders, size: 4, sandbox: true, prepare: Ampule.Grade.prepare()}
  """
  @spec prepare() :: keyword
  def prepare do
    [
      applications: [:elixir, :logger, :ex_unit],
      modules: [
        Runner,
        Ampule.Grade.Capture,
        Ampule.Grade.Formatter,
        Text,
        ExUnit.Runner,
        ExUnit.Formatter,
        ExUnit.Assertions,
        ExUnit.Case,
        ExUnit.Callbacks,
        ExUnit.CaptureLog,
        Code,
        Kernel.ErrorHandler
      ]
    ]
  end

  ## Where it runs

  defp where!(mine, start_opts) do
    case {mine[:container], mine[:pool], start_opts} do
      {%Container{sandbox: true} = c, nil, []} ->
        {:container, c}

      {%Container{} = c, nil, []} ->
        raise ArgumentError,
              "Ampule.Grade runs only in sandboxes; got a distribution container: #{c.name}"

      {nil, nil, start_opts} ->
        if Keyword.get(start_opts, :sandbox, true) != true,
          do: raise(ArgumentError, "Ampule.Grade runs only in sandboxes: sandbox: false refused")

        {:fresh, Keyword.put(start_opts, :sandbox, true)}

      {nil, pool, []} when pool != nil ->
        {:pool, pool}

      {c, nil, _} when not is_struct(c, Container) ->
        raise ArgumentError,
              "invalid value for :container: expected a sandbox, got: #{inspect(c)}"

      _ ->
        raise ArgumentError,
              "Ampule.Grade: :container, :pool and the options of Ampule.start/1 go one " <>
                "without the others, got: #{inspect(Keyword.keys(start_opts))} with " <>
                if(mine[:pool], do: ":pool", else: ":container")
    end
  end

  defp fresh(start_opts, job, call_timeout) do
    with {:ok, container} <- Containers.start(start_opts) do
      try do
        case grade_in(container, job, call_timeout) do
          {:error, reason} -> {:error, Call.node_gone_reason(reason, container)}
          ok -> ok
        end
      after
        Containers.destroy(container)
      end
    end
  end

  defp pooled(pool, job, call_timeout) do
    with {:ok, container} <- Ampule.Pool.checkout(pool) do
      try do
        grade_in(container, job, call_timeout)
      after
        Ampule.Pool.checkin(pool, container)
      end
    end
  end

  defp grade_in(container, job, call_timeout) do
    case Call.await(Call.async(container, {Runner, :run, [job]}), call_timeout) do
      {:ok, raw} -> from_sandbox(raw, job.limits)
      {:error, reason} -> {:error, reason}
    end
  end

  ## Arguments

  defp project!(project) when is_list(project) or is_map(project) do
    project = Map.new(project)

    case Map.keys(project) -- [:lib, :test] do
      [] -> :ok
      keys -> raise ArgumentError, "a project has :lib and :test, got: #{inspect(keys)}"
    end

    %{lib: files!(project, :lib), test: files!(project, :test)}
  end

  defp project!(other),
    do:
      raise(
        ArgumentError,
        "a project is a keyword list of :lib and :test, got: #{inspect(other)}"
      )

  defp files!(project, key) do
    case Map.get(project, key, []) do
      files when is_list(files) ->
        Enum.map(files, &file!(&1, key))

      other ->
        raise ArgumentError, "#{inspect(key)} must be a list of files, got: #{inspect(other)}"
    end
  end

  defp file!({name, source}, _key) when is_binary(name) and is_binary(source) and name != "",
    do: {name, source}

  defp file!(path, key) when is_binary(path) do
    case File.read(path) do
      {:ok, source} ->
        {path, source}

      {:error, why} ->
        raise ArgumentError,
              "cannot read #{inspect(key)} file #{inspect(path, printable_limit: 100)}: #{why} " <>
                "(source text goes as {name, source})"
    end
  end

  defp file!(other, key) do
    raise ArgumentError,
          "a #{inspect(key)} file is {name, source} or a path, got: #{inspect(other, limit: 5)}"
  end

  defp job!(files, mine) do
    limits = %{
      output: size!(mine, :max_output),
      message: size!(mine, :max_message),
      total: size!(mine, :max_total),
      tests: size!(mine, :max_tests)
    }

    %{
      lib: files.lib,
      test: files.test,
      timeout: Ampule.Options.timeout!(mine[:timeout], :timeout),
      limits: limits,
      ex_unit: [
        timeout: Ampule.Options.timeout!(mine[:test_timeout], :test_timeout),
        seed: size!(mine, :seed),
        exclude: tags!(mine, :exclude),
        include: tags!(mine, :include)
      ]
    }
  end

  defp size!(opts, key) do
    case opts[key] do
      n when is_integer(n) and n >= 0 ->
        n

      other ->
        raise ArgumentError,
              "invalid value for #{inspect(key)}: expected a non-negative integer, got: #{inspect(other)}"
    end
  end

  defp tags!(opts, key) do
    case opts[key] do
      tags when is_list(tags) ->
        tags

      other ->
        raise ArgumentError,
              "invalid value for #{inspect(key)}: expected a list of tags, got: #{inspect(other)}"
    end
  end

  ## What the sandbox sent: checked, and bounded again

  @doc false
  @spec from_sandbox(term, map) :: {:ok, t} | {:error, {:bad_grade, term}}
  def from_sandbox(raw, limits) do
    {:ok, grade!(raw, limits)}
  catch
    {:bad_grade, _} = bad -> {:error, bad}
  end

  defp grade!(
         %{
           status: status,
           error: error,
           tests: tests,
           counts: counts,
           output: output,
           output_bytes: output_bytes,
           time: time
         },
         limits
       )
       when status in @grade_statuses and is_list(tests) and is_map(counts) do
    counts = for s <- @statuses, into: %{}, do: {s, count!(Map.get(counts, s))}

    %__MODULE__{
      status: status,
      error: error!(error, limits),
      tests: tests |> Enum.take(limits.tests) |> Enum.map(&test!(&1, limits)),
      total: counts |> Map.values() |> Enum.sum(),
      passed: counts.passed,
      failed: counts.failed,
      skipped: counts.skipped,
      excluded: counts.excluded,
      invalid: counts.invalid,
      timeout: counts.timeout,
      output: Text.head(binary!(output), limits.output),
      output_bytes: count!(output_bytes),
      time: count!(time)
    }
  end

  defp grade!(_raw, _limits), do: throw({:bad_grade, :shape})

  defp error!(nil, _limits), do: nil

  defp error!(%{file: file, message: message}, limits) when is_binary(file) or is_nil(file),
    do: %{file: file, message: Text.cut(binary!(message), limits.message)}

  defp error!(_other, _limits), do: throw({:bad_grade, :error})

  defp test!(
         %{
           module: module,
           name: name,
           file: file,
           line: line,
           status: status,
           message: message,
           output: output,
           output_bytes: output_bytes,
           log: log,
           log_bytes: log_bytes,
           time: time
         },
         limits
       )
       when status in @statuses and (is_nil(file) or is_binary(file)) and
              (is_nil(line) or is_integer(line)) and (is_nil(message) or is_binary(message)) do
    %Test{
      module: Text.head(binary!(module), 1024),
      name: Text.head(binary!(name), 1024),
      file: file && Text.head(file, 1024),
      line: line,
      status: status,
      message: Text.cut(message, limits.message),
      output: Text.head(binary!(output), limits.output),
      output_bytes: count!(output_bytes),
      log: Text.head(binary!(log), limits.output),
      log_bytes: count!(log_bytes),
      time: count!(time)
    }
  end

  defp test!(_other, _limits), do: throw({:bad_grade, :test})

  defp binary!(bin) when is_binary(bin), do: bin
  defp binary!(_other), do: throw({:bad_grade, :text})

  defp count!(n) when is_integer(n) and n >= 0, do: n
  defp count!(_other), do: throw({:bad_grade, :count})
end
