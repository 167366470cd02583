defmodule Ampule.Grade.Formatter do
  @moduledoc false
  # Inside the sandbox: the ExUnit formatter of a grading (`formatters: [this]`). It turns
  # each finished test into plain data (names as strings, a status atom, the failure as a
  # person reads it, made by ExUnit's own `ExUnit.Formatter`) and hands it to the capture
  # (Ampule.Grade.Capture), synchronously: when ExUnit stops its formatters at the end of
  # `ExUnit.run/0`, every result is already with the capture.
  #
  # A failure is formatted in a throwaway process with a capped heap and a deadline: the
  # exception is the tested code's, and its `message/1` may raise (Exception.message/1
  # answers for that), loop or grow without end.

  use GenServer

  @format_timeout 5_000
  # 64 MiB of heap for formatting one failure.
  @format_heap 8 * 1024 * 1024
  @width 80

  @impl true
  def init(opts) do
    {:ok, %{capture: Keyword.fetch!(opts, :ampule_grade_capture), failures: 0}}
  end

  @impl true
  def handle_cast({:test_started, %ExUnit.Test{module: module, name: name}}, state) do
    :ok = Ampule.Grade.Capture.started(state.capture, {module, name})
    {:noreply, state}
  end

  def handle_cast({:test_finished, %ExUnit.Test{} = test}, state) do
    {status, state} = status(test.state, state)

    entry = %{
      module: inspect(test.module),
      name: Atom.to_string(test.name),
      file: file(test.tags[:file]),
      line: if(is_integer(test.tags[:line]), do: test.tags[:line], else: nil),
      status: status,
      message: message(test, state.failures),
      log: test.logs || "",
      log_bytes: byte_size(test.logs || ""),
      time: test.time || 0
    }

    :ok = Ampule.Grade.Capture.finished(state.capture, {test.module, test.name}, entry)
    {:noreply, state}
  end

  def handle_cast(_event, state), do: {:noreply, state}

  defp status(nil, state), do: {:passed, state}
  defp status({:failed, _}, state), do: {:failed, %{state | failures: state.failures + 1}}
  defp status({:skipped, _}, state), do: {:skipped, state}
  defp status({:excluded, _}, state), do: {:excluded, state}
  defp status({:invalid, _}, state), do: {:invalid, %{state | failures: state.failures + 1}}

  defp file(file) when is_binary(file), do: Path.relative_to_cwd(file)
  defp file(_file), do: nil

  defp message(%ExUnit.Test{state: {:failed, failures}} = test, counter) do
    bounded(fn ->
      ExUnit.Formatter.format_test_failure(test, failures, counter, @width, &plain/2)
    end)
  end

  # setup_all failed: every test of the module is invalid, with the module's failure.
  defp message(%ExUnit.Test{state: {:invalid, %{state: {:failed, failures}} = module}}, counter) do
    bounded(fn ->
      ExUnit.Formatter.format_test_all_failure(module, failures, counter, @width, &plain/2)
    end)
  end

  defp message(%ExUnit.Test{state: {:invalid, _}}, _counter), do: "setup_all failed"

  defp message(%ExUnit.Test{state: {kind, reason}}, _) when kind in [:skipped, :excluded],
    do: if(is_binary(reason), do: reason, else: nil)

  defp message(_test, _counter), do: nil

  # ExUnit's formatter callback, without colours.
  defp plain(:diff_enabled?, _default), do: false
  defp plain(_key, text), do: text

  defp bounded(fun) do
    {pid, ref} =
      :erlang.spawn_opt(fn -> exit({:formatted, IO.iodata_to_binary(fun.())}) end, [
        :monitor,
        max_heap_size: %{size: @format_heap, kill: true, error_logger: false}
      ])

    receive do
      {:DOWN, ^ref, :process, ^pid, {:formatted, text}} -> text
      {:DOWN, ^ref, :process, ^pid, :killed} -> "(the failure's message took too much memory)"
      {:DOWN, ^ref, :process, ^pid, _} -> "(the failure's message could not be formatted)"
    after
      @format_timeout ->
        Process.exit(pid, :kill)
        Process.demonitor(ref, [:flush])
        "(the failure's message took more than #{@format_timeout} ms to format)"
    end
  end
end
