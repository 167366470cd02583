defmodule Ampule.Grade.Capture do
  @moduledoc false
  # Inside the sandbox (see Ampule.Grade.Runner): the group leader of everything the
  # grading runs, the node's `:standard_error` while it runs, and the keeper of the
  # results. One process, so that a test's output and its result meet in one place.
  #
  # Whose output is it? ExUnit (`max_cases: 1`) runs one test at a time, but processes a
  # test started may go on printing after it ended, so output is attributed by who wrote
  # it, not by when: the writer's chain of parents (`process_info(_, parent)`, OTP 25)
  # is climbed to the runner (the process that called `ExUnit.run/0`). Below the runner
  # are ExUnit's module processes; below a module process, its tests' processes (spawned
  # afresh for each test) and its `setup_all` process. A writer under a live test process is that test's; the test is
  # the module process's current one (`Process.put(ExUnit.Runner, test)`, read once per
  # test process). Anything else (compiler warnings, `setup_all`, `on_exit`, a process
  # whose test is over, so its parent is dead) is the run's own output.
  #
  # Every text is bounded here, as it arrives: a test's output keeps its first
  # `max_output` bytes and counts the rest; so does the run's own output.

  use GenServer

  @depth 64

  @doc "Starts the capture (not linked: the runner stops it)."
  def start(limits), do: GenServer.start(__MODULE__, limits)

  @doc "The process that runs `ExUnit.run/0`: the anchor of the chains of parents."
  def runner(capture, pid), do: GenServer.call(capture, {:runner, pid})

  @doc "A test started (from the formatter)."
  def started(capture, key), do: GenServer.call(capture, {:started, key}, 30_000)

  @doc "A test finished (from the formatter), as a map of plain data without its output."
  def finished(capture, key, entry),
    do: GenServer.call(capture, {:finished, key, entry}, 30_000)

  @doc "What the run gathered; `timed_out?` marks the tests still running."
  def result(capture, timed_out?), do: GenServer.call(capture, {:result, timed_out?}, 30_000)

  @impl true
  def init(limits) do
    {:ok,
     %{
       limits: limits,
       runner: nil,
       owners: %{},
       running: %{},
       outs: %{},
       done: MapSet.new(),
       entries: [],
       listed: 0,
       budget: limits.total,
       counts: %{passed: 0, failed: 0, skipped: 0, excluded: 0, invalid: 0, timeout: 0},
       other: text()
     }}
  end

  defp text, do: %{kept: [], size: 0, bytes: 0}

  @doc "The result of a run whose capture is gone."
  def nothing do
    {:ok, state} = init(%{total: 0})
    summary(state)
  end

  @impl true
  def handle_call({:runner, pid}, _from, state), do: {:reply, :ok, %{state | runner: pid}}

  def handle_call({:started, key}, _from, state) do
    now = System.monotonic_time(:microsecond)
    {:reply, :ok, put_in(state.running[key], now)}
  end

  def handle_call({:finished, key, entry}, _from, state) do
    {out, outs} = Map.pop(state.outs, key, text())

    state = %{
      state
      | running: Map.delete(state.running, key),
        outs: outs,
        done: MapSet.put(state.done, key)
    }

    {:reply, :ok, add(state, entry, out)}
  end

  def handle_call({:result, timed_out?}, _from, state) do
    state =
      if timed_out?,
        do: Enum.reduce(state.running, %{state | running: %{}}, &cut_off/2),
        else: state

    {:reply, summary(state), state}
  end

  # A test still running when the run's time ran out.
  defp cut_off({{module, name} = key, started}, state) do
    {out, outs} = Map.pop(state.outs, key, text())

    entry = %{
      module: inspect(module),
      name: Atom.to_string(name),
      file: nil,
      line: nil,
      status: :timeout,
      message: "the run's timeout passed while this test ran",
      log: "",
      log_bytes: 0,
      time: System.monotonic_time(:microsecond) - started
    }

    add(%{state | outs: outs}, entry, out)
  end

  defp add(state, entry, out) do
    counts = Map.update!(state.counts, entry.status, &(&1 + 1))
    state = %{state | counts: counts}

    if state.listed >= state.limits.tests do
      state
    else
      # The run's texts share one budget: past it, a test keeps its counts, not its text.
      limits = state.limits
      {output, budget} = spend(IO.iodata_to_binary(Enum.reverse(out.kept)), state.budget)
      {message, budget} = spend(Ampule.Grade.Text.cut(entry.message, limits.message), budget)
      {log, budget} = spend(Ampule.Grade.Text.head(entry.log, limits.output), budget)

      entry = %{
        entry
        | message: message,
          log: log
      }

      entry = Map.merge(entry, %{output: output, output_bytes: out.bytes})
      %{state | entries: [entry | state.entries], listed: state.listed + 1, budget: budget}
    end
  end

  defp spend(nil, budget), do: {nil, budget}

  defp spend(text, budget) when byte_size(text) <= budget,
    do: {text, budget - byte_size(text)}

  defp spend(_text, budget), do: {"", budget}

  defp summary(state) do
    %{
      tests: Enum.reverse(state.entries),
      counts: state.counts,
      output: IO.iodata_to_binary(Enum.reverse(state.other.kept)),
      output_bytes: state.other.bytes
    }
  end

  # The I/O protocol (a device's side of it): output is kept, input is at its end.
  @impl true
  def handle_info({:io_request, from, reply_as, request}, state) do
    {reply, state} = request(request, from, state)
    send(from, {:io_reply, reply_as, reply})
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp request({:put_chars, encoding, chars}, from, state) do
    case bytes(encoding, chars) do
      {:ok, bytes} -> {:ok, write(state, from, bytes)}
      :error -> {{:error, :put_chars}, state}
    end
  end

  # `:io.format/2` and friends: only io_lib's formatting is run here (any other module
  # would run a writer's choice of code in the process that keeps the results).
  defp request({:put_chars, encoding, :io_lib, fun, args}, from, state) do
    chars = apply(:io_lib, fun, args)
    request({:put_chars, encoding, chars}, from, state)
  catch
    _, _ -> {{:error, :put_chars}, state}
  end

  defp request({:put_chars, _encoding, _m, _f, _a}, _from, state),
    do: {{:error, :request}, state}

  defp request({:requests, requests}, from, state) when is_list(requests) do
    Enum.reduce_while(requests, {:ok, state}, fn request, {_, state} ->
      case request(request, from, state) do
        {:ok, state} -> {:cont, {:ok, state}}
        other -> {:halt, other}
      end
    end)
  end

  defp request(:getopts, _from, state), do: {[binary: true, encoding: :unicode], state}
  defp request({:setopts, _opts}, _from, state), do: {:ok, state}
  defp request({:get_geometry, _}, _from, state), do: {{:error, :enotsup}, state}

  defp request(request, _from, state)
       when elem(request, 0) in [:get_chars, :get_line, :get_until, :get_password],
       do: {:eof, state}

  defp request(_request, _from, state), do: {{:error, :request}, state}

  # Unicode chardata becomes UTF-8; latin1 is bytes as they are (IO.binwrite/2), as a
  # terminal in binary mode writes them. Bytes that are not UTF-8 are kept as they are
  # rather than failing the test that printed them: a grade's texts are bytes anyway.
  defp bytes(:unicode, chars) do
    case :unicode.characters_to_binary(chars) do
      bin when is_binary(bin) -> {:ok, bin}
      _ -> bytes(:latin1, chars)
    end
  catch
    _, _ -> bytes(:latin1, chars)
  end

  defp bytes(:latin1, chars) do
    {:ok, IO.iodata_to_binary(chars)}
  catch
    _, _ -> :error
  end

  defp bytes(_encoding, _chars), do: :error

  defp write(state, from, bytes) do
    {key, state} = owner(state, from)

    # A test's output may come before the formatter says it started; once it has
    # finished, what its processes print is the run's.
    if key == :other or MapSet.member?(state.done, key) do
      %{state | other: keep(state.other, bytes, state.limits.output)}
    else
      out = Map.get(state.outs, key, text())
      put_in(state.outs[key], keep(out, bytes, state.limits.output))
    end
  end

  defp keep(out, bytes, max) do
    room = max - out.size
    size = byte_size(bytes)
    out = %{out | bytes: out.bytes + size}

    cond do
      room <= 0 -> out
      size <= room -> %{out | kept: [bytes | out.kept], size: out.size + size}
      true -> %{out | kept: [binary_part(bytes, 0, room) | out.kept], size: max}
    end
  end

  # The test a writer belongs to ({module, name}), or :other.
  defp owner(%{runner: runner} = state, pid) when is_pid(runner) do
    case climb(pid, nil, runner, @depth) do
      {:test, test_pid, module_pid} ->
        case state.owners do
          %{^test_pid => key} ->
            {key, state}

          _ ->
            key = current_test(module_pid)
            {key, put_in(state.owners[test_pid], key)}
        end

      :other ->
        {:other, state}
    end
  end

  defp owner(state, _pid), do: {:other, state}

  defp climb(_pid, _child, _runner, 0), do: :other

  defp climb(pid, child, runner, depth) do
    case parent(pid) do
      ^runner when child != nil ->
        if test_process?(child), do: {:test, child, pid}, else: :other

      parent when is_pid(parent) and parent != runner ->
        climb(parent, pid, runner, depth - 1)

      _ ->
        :other
    end
  end

  defp parent(pid) do
    case Process.info(pid, :parent) do
      {:parent, parent} -> parent
      nil -> nil
    end
  rescue
    # `parent` is OTP 25's: without it, everything is the run's own output.
    ArgumentError -> nil
  end

  # A test's process, not the module's `setup_all` one, which stays alive while the tests
  # run, waiting in ExUnit.Runner's fun (a fun spawned raw has `erlang:apply/2` as its
  # initial call, so that one tells nothing).
  defp test_process?(pid) do
    case Process.info(pid, :current_function) do
      {:current_function, {ExUnit.Runner, fun, _}} ->
        not String.contains?(Atom.to_string(fun), "setup_all")

      {:current_function, _} ->
        true

      nil ->
        false
    end
  end

  defp current_test(module_pid) do
    with {:dictionary, dict} <- Process.info(module_pid, :dictionary),
         %ExUnit.Test{module: module, name: name} <- :proplists.get_value(ExUnit.Runner, dict) do
      {module, name}
    else
      _ -> :other
    end
  end
end
