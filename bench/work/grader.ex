defmodule Bench.Work.Grader do
  @moduledoc false
  # Grades one project of bench/corpus in the node it runs in: the same code on every side
  # of bench/work.exs (a local `elixir`, a `:peer` node, a sandbox, a distribution
  # container), so that they differ only in where it runs. This file is compiled to disk
  # by bench/work.exs (closures and modules of a script live only in that script's node's
  # memory and cannot travel), onto the code path that containers mount.
  #
  # Returns plain data, as a sandbox's result must be: the ExUnit result and the time each
  # phase took, in µs of this node's monotonic clock.

  @doc "Grades `module_source` with `test_source` in this node; call it once per node."
  def grade(module_source, test_source) do
    t0 = now()
    # A sandbox's lean boot starts neither :elixir (the compiler needs it) nor :ex_unit.
    {:ok, _} = Application.ensure_all_started(:elixir)
    # No formatter: a grader wants the counts, not the report.
    ExUnit.start(autorun: false, formatters: [])
    t1 = now()
    Code.compile_string(module_source, "lib.ex")
    t2 = now()
    Code.compile_string(test_source, "lib_test.exs")
    t3 = now()
    result = ExUnit.run()
    t4 = now()

    %{
      total: result.total,
      failures: result.failures,
      phases: %{start: t1 - t0, module: t2 - t1, tests: t3 - t2, run: t4 - t3}
    }
  end

  @doc """
  The local side's entry point: `elixir -pa DIR -e 'Bench.Work.Grader.cli()' LIB TEST`
  grades the two files and prints the result, base64 of its external term format, on one
  line after a marker (anything the tests print goes before it).
  """
  def cli do
    [lib, test] = System.argv()
    result = grade(File.read!(lib), File.read!(test))
    IO.puts("\n#{marker()}" <> Base.encode64(:erlang.term_to_binary(result)))
  end

  def marker, do: "BENCH-WORK-RESULT:"

  defp now, do: System.monotonic_time(:microsecond)
end
