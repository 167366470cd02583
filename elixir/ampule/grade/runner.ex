defmodule Ampule.Grade.Runner do
  @moduledoc false
  # Inside the sandbox: one grading, called by the host as `{Ampule.Grade.Runner, :run,
  # [job]}` (Ampule's ebin is on every sandbox's code path). Everything it returns is
  # plain data the host has atoms for: strings, integers, maps with this module's keys,
  # and the status atoms of Ampule.Grade.
  #
  # The steps: start `:elixir`, `:logger` and `:ex_unit` (a sandbox's lean boot starts
  # none of them); make the capture (Ampule.Grade.Capture) the group leader of the work
  # and the node's `:standard_error`; in a worker, `ExUnit.start/1` (one test at a time,
  # our formatter, logs captured per test), compile the modules, then the tests, in the
  # order given, then `ExUnit.run/0`. The worker has the run's time (`timeout`); when it
  # passes, it is killed, and what was gathered so far is returned with the tests still
  # running marked `:timeout`. Either way, every process whose group leader is the
  # capture (the tests and whatever they started, unless they changed it) is killed at the
  # end.

  alias Ampule.Grade.{Capture, Formatter, Text}

  @doc false
  def run(%{lib: lib, test: test, timeout: timeout, limits: limits, ex_unit: ex_unit}) do
    started = System.monotonic_time(:microsecond)
    {:ok, _} = Application.ensure_all_started(:ex_unit)
    {:ok, _} = Application.ensure_all_started(:logger)
    {:ok, capture} = Capture.start(limits)
    stderr = swap_stderr(capture)

    outcome =
      try do
        work(capture, fn -> graded(lib, test, ex_unit, capture, limits) end, timeout)
      after
        restore_stderr(stderr, capture)
      end

    {outcome, gathered} = gathered(capture, outcome)

    Map.merge(gathered, %{
      status: status(outcome),
      error: error(outcome, limits),
      time: System.monotonic_time(:microsecond) - started
    })
  end

  # The capture is in reach of the tested code (it is its group leader): if it was killed,
  # what it gathered went with it.
  defp gathered(capture, outcome) do
    gathered = Capture.result(capture, outcome == :timeout)
    GenServer.stop(capture)
    {outcome, gathered}
  catch
    :exit, _ ->
      {{:crashed, "the grading's capture process was killed: no test's result was kept"},
       Capture.nothing()}
  end

  defp status(:ran), do: :ok
  defp status(:timeout), do: :timeout
  defp status({:compile_error, _, _}), do: :compile_error
  defp status({:crashed, _}), do: :crashed

  defp error({:compile_error, file, message}, limits),
    do: %{file: file, message: Text.cut(message, limits.message)}

  defp error({:crashed, message}, limits),
    do: %{file: nil, message: Text.cut(message, limits.message)}

  defp error(_outcome, _limits), do: nil

  defp work(capture, fun, timeout) do
    {pid, ref} =
      spawn_monitor(fn ->
        Process.group_leader(self(), capture)
        exit({:graded, fun.()})
      end)

    outcome =
      receive do
        {:DOWN, ^ref, :process, ^pid, {:graded, outcome}} -> outcome
        {:DOWN, ^ref, :process, ^pid, reason} -> {:crashed, Exception.format_exit(reason)}
      after
        timeout ->
          Process.exit(pid, :kill)
          :timeout
      end

    # As a `mix test` ends with its VM: nothing the run started goes on printing into a
    # sandbox that is kept (`container:`), or delays the result.
    kill_below(capture)
    outcome
  end

  # Everything the run started prints to the capture, unless it chose another leader.
  defp kill_below(capture) do
    for pid <- Process.list(),
        pid != self(),
        Process.info(pid, :group_leader) == {:group_leader, capture},
        do: Process.exit(pid, :kill)
  end

  defp graded(lib, test, ex_unit, capture, limits) do
    ExUnit.start(
      ex_unit ++
        [
          autorun: false,
          formatters: [Formatter],
          ampule_grade_capture: capture,
          max_cases: 1,
          capture_log: true,
          colors: [enabled: false]
        ]
    )

    with :ok <- compile(lib, limits), :ok <- compile(test, limits) do
      :ok = Capture.runner(capture, self())
      _ = ExUnit.run()
      :ran
    end
  end

  defp compile(files, limits) do
    Enum.reduce_while(files, :ok, fn {name, source}, :ok ->
      try do
        _ = Code.compile_string(source, name)
        {:cont, :ok}
      catch
        kind, reason ->
          message =
            Text.cut(Exception.format_banner(kind, reason, __STACKTRACE__), limits.message)

          {:halt, {:compile_error, name, message}}
      end
    end)
  end

  defp swap_stderr(capture) do
    old = Process.whereis(:standard_error)
    if old, do: Process.unregister(:standard_error)
    Process.register(capture, :standard_error)
    old
  end

  defp restore_stderr(old, capture) do
    if Process.whereis(:standard_error) == capture, do: Process.unregister(:standard_error)
    if old && Process.alive?(old), do: Process.register(old, :standard_error)
  end
end
