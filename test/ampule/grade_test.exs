defmodule Ampule.GradeTest do
  # Grading (Ampule.Grade) against real sandboxes: the bench's corpus (bench/corpus, three
  # projects failing on purpose), compile errors in either half, each test's output where
  # it belongs, the run's timeout, tests that print without end or raise exceptions whose
  # message raises, and nothing left behind. Not async: some tests count containers.
  use ExUnit.Case, async: false

  alias Ampule.Grade
  alias Ampule.Grade.Test, as: T

  @moduletag :root
  @moduletag :lxc

  @corpus Path.expand("../../bench/corpus", __DIR__)
  @grader Path.expand("../../bench/work/grader.ex", __DIR__)

  defp corpus(name),
    do: [
      lib: [Path.join([@corpus, name, "lib.ex"])],
      test: [Path.join([@corpus, name, "lib_test.exs"])]
    ]

  defp containers do
    {:ok, names} = Ampule.list()
    names
  end

  # Runs `fun` and asserts that it leaves no container it made (an earlier test's may
  # still be going away).
  defp leaves_nothing(fun) do
    before = containers()
    result = fun.()
    assert containers() -- before == []
    result
  end

  defp by_name(grade), do: Map.new(grade.tests, &{&1.name, &1})

  test "a passing project: every test passed, named, timed, with nothing printed" do
    {:ok, grade} = leaves_nothing(fn -> Grade.run(corpus("roman")) end)

    assert %Grade{status: :ok, error: nil, total: 14, passed: 14, failed: 0} = grade
    assert length(grade.tests) == 14

    for t <- grade.tests do
      assert %T{module: "Corpus.RomanTest", status: :passed, message: nil, output: ""} = t
      assert "test " <> _ = t.name
      assert t.file =~ "lib_test.exs"
      assert is_integer(t.line) and is_integer(t.time)
    end

    assert grade.time > 0
  end

  test "a failing project: the failed tests by name, their messages with the assertion's left and right" do
    {:ok, grade} = Grade.run(corpus("buggy_stack"))
    assert %Grade{status: :ok, total: 6, passed: 4, failed: 2} = grade

    failed = for %T{status: :failed} = t <- grade.tests, do: t.name

    assert Enum.sort(failed) == [
             "test fills to capacity (fails: off by one)",
             "test peek on empty (fails: returns nil)"
           ]

    peek = by_name(grade)["test peek on empty (fails: returns nil)"]
    assert peek.module == "Corpus.BuggyStackTest"
    assert peek.message =~ "Assertion with == failed"
    assert peek.message =~ "code:  assert Stack.peek(Stack.new()) == {:error, :empty}"
    assert peek.message =~ ~r/left:\s+nil/
    assert peek.message =~ ~r/right:\s+\{:error, :empty\}/
    assert peek.message =~ "lib_test.exs:26"

    fills = by_name(grade)["test fills to capacity (fails: off by one)"]
    assert fills.message =~ "match (=) failed"
    assert fills.message =~ ~r/right:\s+\{:error, :full\}/
  end

  test "a compile error in the module: which file, and the compiler's message; no test ran" do
    lib = """
    defmodule Broken do
      def f(x), do: undefined_thing(x)
    end
    """

    {:ok, grade} =
      leaves_nothing(fn ->
        Grade.run(lib: [{"lib/broken.ex", lib}], test: [{"broken_test.exs", "raise 1"}])
      end)

    assert %Grade{status: :compile_error, total: 0, tests: []} = grade
    assert grade.error.file == "lib/broken.ex"
    assert grade.error.message =~ "CompileError"
    assert grade.error.message =~ "lib/broken.ex:2"
    assert grade.error.message =~ "undefined function undefined_thing/1"
  end

  test "a compile error in the tests: the test file is named; a syntax error reads as one" do
    test = """
    defmodule T1Test do
      use ExUnit.Case
      test "x" do
        assert Corpus.Roman.to_roman(1) == "I"
      end
      test "y" do
        assert (1 +
      end
    end
    """

    [lib] = corpus("roman")[:lib]
    {:ok, grade} = Grade.run(lib: [lib], test: [{"t1_test.exs", test}])

    assert %Grade{status: :compile_error, total: 0} = grade
    assert grade.error.file == "t1_test.exs"
    assert grade.error.message =~ "t1_test.exs:"
    assert grade.error.message =~ ~r/SyntaxError|TokenMissingError/
  end

  @printing """
  defmodule PrintingTest do
    use ExUnit.Case
    require Logger

    test "a prints" do
      IO.puts("stdout of a")
      IO.puts(:stderr, "stderr of a")
      Task.await(Task.async(fn -> IO.puts("task of a") end))
      Logger.warning("logged by a")

      # Outlives the test: prints when b asks it to, once a is over.
      late = spawn(fn -> receive do {:go, from} -> IO.puts("late of a"); send(from, :printed) end end)
      Process.register(late, :late_of_a)
    end

    test "b is quiet, but wakes a's process" do
      send(:late_of_a, {:go, self()})
      assert_receive :printed, 5_000
    end

    test "c prints and fails" do
      IO.write(["c was here", <<255, 0>>])
      assert 1 + 1 == 3
    end
  end
  """

  test "each test's output is its own: stdout, stderr and its processes'; a process that outlives its test prints to the grade" do
    {:ok, grade} = Grade.run(test: [{"printing_test.exs", @printing}])
    assert %Grade{status: :ok, total: 3, passed: 2, failed: 1} = grade
    tests = by_name(grade)

    a = tests["test a prints"]
    assert a.output == "stdout of a\nstderr of a\ntask of a\n"
    assert a.output_bytes == byte_size(a.output)
    assert a.log =~ "logged by a"

    b = tests["test b is quiet, but wakes a's process"]
    assert b.status == :passed
    assert b.output == ""
    assert b.log == ""

    c = tests["test c prints and fails"]
    assert c.output == "c was here" <> <<255, 0>>
    assert c.message =~ ~r/left:\s+2/
    assert c.message =~ ~r/right:\s+3/

    assert grade.output =~ "late of a\n"
  end

  test "statuses: skipped, excluded and invalid (a failing setup_all), each with its reason" do
    test = """
    defmodule StatusesTest do
      use ExUnit.Case
      @tag :skip
      test "skipped", do: :ok
      @tag :slow
      test "excluded", do: :ok
      test "passes", do: :ok
    end

    defmodule SetupAllFailsTest do
      use ExUnit.Case
      setup_all do
        raise "no database here"
      end
      test "never runs", do: :ok
    end
    """

    {:ok, grade} = Grade.run([test: [{"statuses_test.exs", test}]], exclude: [:slow])
    tests = by_name(grade)

    assert %Grade{total: 4, passed: 1, skipped: 1, excluded: 1, invalid: 1} = grade
    assert tests["test skipped"].status == :skipped
    assert tests["test excluded"].status == :excluded
    assert tests["test never runs"].status == :invalid
    assert tests["test never runs"].module == "SetupAllFailsTest"
    assert tests["test never runs"].message =~ "no database here"
  end

  test "a test that outlasts the run's timeout: the run ends, finished tests and the running one come back, nothing is left" do
    test = """
    defmodule SlowTest do
      use ExUnit.Case
      test "first", do: assert(true)
      test "forever" do
        IO.puts("started forever")
        Process.sleep(:infinity)
      end
      test "never reached", do: :ok
    end
    """

    {:ok, grade} =
      leaves_nothing(fn -> Grade.run([test: [{"slow_test.exs", test}]], timeout: 5_000) end)

    assert %Grade{status: :timeout, passed: 1, timeout: 1, total: 2} = grade
    tests = by_name(grade)
    assert tests["test first"].status == :passed
    assert %T{status: :timeout, output: "started forever\n"} = tests["test forever"]
    refute Map.has_key?(tests, "test never reached")
  end

  test "hostile: a test that prints a gigabyte keeps max_output bytes and counts the rest; one that prints without end is cut by the timeout" do
    test = """
    defmodule FloodTest do
      use ExUnit.Case
      test "a gigabyte" do
        chunk = String.duplicate("x", 1024 * 1024)
        for _ <- 1..1024, do: IO.binwrite(chunk)
      end
      test "without end" do
        Stream.repeatedly(fn -> IO.write("y") end) |> Stream.run()
      end
    end
    """

    before = :erlang.memory(:total)

    {:ok, grade} =
      leaves_nothing(fn ->
        Grade.run([test: [{"flood_test.exs", test}]], timeout: 15_000, max_output: 1000)
      end)

    tests = by_name(grade)
    gb = tests["test a gigabyte"]
    assert gb.status == :passed
    assert gb.output == String.duplicate("x", 1000)
    assert gb.output_bytes == 1024 * 1024 * 1024

    endless = tests["test without end"]
    assert endless.status == :timeout
    assert endless.output == String.duplicate("y", 1000)
    assert endless.output_bytes > 1000
    assert grade.status == :timeout

    # The host never held the flood (a few MiB of slack for the rest of the suite).
    assert :erlang.memory(:total) - before < 64 * 1024 * 1024
  end

  test "hostile: an exception whose message raises, one whose message never returns, and a huge one are failures with messages that say so" do
    test = """
    defmodule BadMessage do
      defexception [:x]
      def message(_), do: raise("the message raised")
    end

    defmodule EndlessMessage do
      defexception [:x]
      def message(_), do: Process.sleep(:infinity)
    end

    defmodule HostileMessagesTest do
      use ExUnit.Case
      test "raising message", do: raise(BadMessage, x: 1)
      test "endless message", do: raise(EndlessMessage, x: 1)
      test "huge message", do: raise(String.duplicate("z", 1_000_000))
      test "still runs", do: :ok
    end
    """

    {:ok, grade} = Grade.run([test: [{"hostile_messages_test.exs", test}]], max_message: 4096)

    assert %Grade{status: :ok, failed: 3, passed: 1} = grade
    tests = by_name(grade)

    assert tests["test raising message"].message =~ "the message raised"
    assert tests["test endless message"].message =~ "took more than"

    huge = tests["test huge message"].message
    assert byte_size(huge) <= 4096
    assert huge =~ ~r/\[\.\.\. \d+ more bytes\]\z/
  end

  test "hostile: a test that kills the grading's capture (its group leader) crashes the run, as data, with nothing left" do
    test = """
    defmodule KillerTest do
      use ExUnit.Case
      test "kills its group leader", do: Process.exit(Process.group_leader(), :kill)
      test "after", do: :ok
    end
    """

    {:ok, grade} = leaves_nothing(fn -> Grade.run(test: [{"killer_test.exs", test}]) end)
    assert %Grade{status: :crashed, tests: []} = grade
    assert grade.error.message =~ "capture process was killed"
  end

  test "hostile: test modules and atoms made in the sandbox stay there; names come back as strings" do
    modules =
      for i <- 1..200 do
        """
        defmodule GradeAtoms.M#{i}Test do
          use ExUnit.Case
          test "t#{i}" do
            for j <- 1..50, do: String.to_atom("grade_atom_#{i}_\#{j}")
            :ok
          end
        end
        """
      end

    {:ok, grade} = Grade.run([test: [{"atoms_test.exs", Enum.join(modules)}]], timeout: 120_000)
    assert %Grade{status: :ok, total: 200, passed: 200} = grade
    assert Enum.any?(grade.tests, &(&1.module == "GradeAtoms.M17Test"))

    for name <- ["Elixir.GradeAtoms.M17Test", "test t17", "grade_atom_17_3"] do
      assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
    end
  end

  test "a pool's sandbox (prepared with prepare/0), and a sandbox of yours, which stays, without the processes its tests left" do
    pool = :"grade_pool_#{System.unique_integer([:positive])}"

    start_supervised!({Ampule.Pool, name: pool, size: 1, sandbox: true, prepare: Grade.prepare()})

    assert {:ok, %Grade{status: :ok, failed: 3, total: 9}} =
             Grade.run(corpus("buggy_dates"), pool: pool)

    {:ok, sandbox} = Ampule.start(sandbox: true)

    assert {:ok, %Grade{failed: 1, total: 6}} =
             Grade.run(corpus("buggy_template"), container: sandbox)

    # A second grading in the same sandbox: what its tests started does not outlive it.
    leaver = """
    defmodule LeaverTest do
      use ExUnit.Case
      test "leaves a process" do
        Process.register(spawn(fn -> Process.sleep(:infinity) end), :left_behind)
      end
    end
    """

    assert {:ok, %Grade{passed: 1}} =
             Grade.run([test: [{"leaver_test.exs", leaver}]], container: sandbox)

    assert Ampule.call({Process, :whereis, [:left_behind]}, sandbox) == nil
    assert sandbox.name in containers()
    assert :ok = Ampule.destroy(sandbox)
  end

  test "the options of Ampule.start/1 hold: a grading over its sandbox's memory limit is :oom, and leaves nothing" do
    test = """
    defmodule HogTest do
      use ExUnit.Case
      test "hog", do: assert(byte_size(:binary.copy("x", 400 * 1024 * 1024)) > 0)
    end
    """

    assert {:error, :oom} =
             leaves_nothing(fn ->
               Grade.run([test: [{"hog_test.exs", test}]], memory: 128 * 1024 * 1024)
             end)
  end

  test "bad arguments raise ArgumentError naming what is wrong, before any sandbox starts" do
    before = containers()

    assert_raise ArgumentError, ~r/sandbox: false/, fn ->
      Grade.run(corpus("roman"), sandbox: false)
    end

    assert_raise ArgumentError, ~r/cannot read :lib file/, fn ->
      Grade.run(lib: ["defmodule X do end"], test: [])
    end

    assert_raise ArgumentError, ~r/:lib and :test/, fn -> Grade.run(src: []) end

    assert_raise ArgumentError, ~r/max_output/, fn ->
      Grade.run(corpus("roman"), max_output: -1)
    end

    assert_raise ArgumentError, ~r/:pool/, fn ->
      Grade.run(corpus("roman"), pool: :p, memory: 1)
    end

    assert containers() -- before == []
  end

  test "what the sandbox sends is checked again: forged texts are cut, a forged shape refused" do
    limits = %{output: 10, message: 50, total: 1000, tests: 2}

    test = %{
      module: "M",
      name: "test n",
      file: nil,
      line: 1,
      status: :passed,
      message: String.duplicate("m", 500),
      output: String.duplicate("o", 500),
      output_bytes: 500,
      log: "",
      log_bytes: 0,
      time: 1
    }

    raw = %{
      status: :ok,
      error: nil,
      tests: [test, test, test],
      counts: %{passed: 3, failed: 0, skipped: 0, excluded: 0, invalid: 0, timeout: 0},
      output: String.duplicate("g", 500),
      output_bytes: 500,
      time: 5
    }

    assert {:ok, grade} = Grade.from_sandbox(raw, limits)
    assert length(grade.tests) == 2
    assert grade.total == 3
    assert byte_size(grade.output) == 10
    assert [%T{output: "oooooooooo"} = t | _] = grade.tests
    assert byte_size(t.message) <= 50

    assert {:error, {:bad_grade, :test}} =
             Grade.from_sandbox(%{raw | tests: [%{test | status: :pwned}]}, limits)

    assert {:error, {:bad_grade, :count}} =
             Grade.from_sandbox(%{raw | counts: %{passed: -1}}, limits)

    assert {:error, {:bad_grade, :shape}} = Grade.from_sandbox(:ok, limits)
  end

  # The bench's own grader (bench/work/grader.ex) in a local `elixir` gives each project's
  # counts; graded in sandboxes here they must agree, and the three buggy projects fail
  # as many tests as they were written to.
  @tag :slow
  @tag timeout: 600_000
  test "the whole corpus: counts agree with the bench's grader run locally" do
    pool = :"grade_corpus_#{System.unique_integer([:positive])}"
    start_supervised!({Ampule.Pool, name: pool, size: 2, sandbox: true, prepare: Grade.prepare()})

    projects = @corpus |> File.ls!() |> Enum.sort()
    assert length(projects) == 22

    counts =
      for name <- projects, into: %{} do
        {:ok, grade} = Grade.run(corpus(name), pool: pool)
        assert grade.status == :ok, "#{name}: #{inspect(grade.error)}"
        assert grade.total == length(grade.tests)
        {name, {grade.total, grade.failed}}
      end

    for name <- projects do
      [lib] = corpus(name)[:lib]
      [test] = corpus(name)[:test]
      assert counts[name] == local(lib, test), name
    end

    assert counts["buggy_stack"] == {6, 2}
    assert counts["buggy_dates"] == {9, 3}
    assert counts["buggy_template"] == {6, 1}

    for {name, {_, failed}} <- counts,
        not String.starts_with?(name, "buggy_"),
        do: assert(failed == 0, name)
  end

  defp local(lib, test) do
    {out, 0} =
      System.cmd("elixir", ["-r", @grader, "-e", "Bench.Work.Grader.cli()", lib, test],
        stderr_to_stdout: true
      )

    [_, b64] = Regex.run(~r/BENCH-WORK-RESULT:(\S+)/, out)
    result = :erlang.binary_to_term(Base.decode64!(b64))
    {result.total, result.failures}
  end
end
