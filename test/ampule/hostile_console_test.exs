defmodule Ampule.HostileConsoleTest do
  # A container that floods its console at an owner that does not read (docs/security.md,
  # "Console flood"). Not async: it measures the whole BEAM's memory, so it runs alone,
  # after the async modules.
  use ExUnit.Case, async: false

  @moduletag :root
  @moduletag :lxc
  @moduletag :hostile

  import Ampule.Test.ConsoleHelpers

  alias Ampule.Test.Host

  # Numbered lines, so that a lost or reordered byte shows: ~6.9 MB with the tty's \r\n.
  @lines 1_000_000
  # How long the owner does not read once the flood has reached it.
  @ignore_ms 5_000
  # The default :active count.
  @n 100

  test "a console flood stalls in the container: the owner's mailbox and the BEAM stay bounded" do
    container = Ampule.create()
    login(container)
    name = container.name
    # Logging in used part of the count: start the flood with exactly @n.
    :ok = Ampule.console_active(container, false)
    receive do: ({:ampule_console_passive, ^container} -> :ok), after: (0 -> :ok)
    :ok = Ampule.console_active(container, @n)

    total_before = :erlang.memory(:total)
    binary_before = :erlang.memory(:binary)
    "seq 1 #{@lines}; echo MARK-$((6*7))\n" |> Ampule.console(container)

    # The flood reaches the owner: @n chunks, then the passive message.
    assert Host.wait_until(fn -> queue_len() >= @n + 1 end, 30_000),
           "only #{queue_len()} messages arrived"

    # The flood's writer, on the host: busybox's seq, in the container's cgroup.
    [seq] = for pid <- Host.container_pids(name), comm(pid) == "seq", do: pid

    # The owner does not read. Watch the mailbox, Ampule's port process, the BEAM and seq.
    samples = watch(@ignore_ms, seq)
    worst = fn key -> samples |> Enum.map(& &1[key]) |> Enum.max() end

    assert worst.(:queue) == @n + 1
    assert {:messages, messages} = Process.info(self(), :messages)
    assert List.last(messages) == {:ampule_console_passive, container}
    chunk_bytes = for {:ampule_console, _, b} <- messages, do: byte_size(b)
    assert Enum.max(chunk_bytes) <= 16 * 1024

    # What waits in Ampule's port process is at most the port's 256 KiB window (and one
    # read), joined into few chunks, so the process stays about that size.
    assert worst.(:port_bytes) <= 256 * 1024 + 16 * 1024
    assert worst.(:port_memory) < 1024 * 1024
    assert worst.(:port_queue) <= 2

    # The BEAM: at most @n chunks of 16 KiB and the window (~1.8 MiB) over where it
    # started, with room for the rest of the VM's churn; the unbounded reader of the
    # issue grew by 330 MiB in 19 s.
    grew = worst.(:total) - total_before
    grew_binary = worst.(:binary) - binary_before
    assert grew < 16 * 1024 * 1024, "the BEAM grew by #{grew} bytes"

    # It stalls in the container: seq is alive, blocked on the console, and got no CPU
    # time over the last two seconds of the watch (samples are newest first).
    assert Host.runs?(seq)
    last_two_seconds = samples |> Enum.take(20) |> Enum.map(& &1.seq_cpu) |> Enum.uniq()
    assert length(last_two_seconds) == 1, "seq still ran: #{inspect(last_two_seconds)}"

    IO.puts(
      "\nConsole flood: #{@ignore_ms} ms unread; owner's mailbox #{worst.(:queue)} messages " <>
        "(#{Enum.sum(chunk_bytes)} bytes), Ampule.Port held #{worst.(:port_bytes)} bytes " <>
        "in #{worst.(:port_chunks)} chunks (its memory: #{kib(worst.(:port_memory))} KiB), " <>
        "BEAM total +#{kib(grew)} KiB (binary +#{kib(grew_binary)} KiB)"
    )

    # Re-armed, the rest flows: every line in order, then the marker written after it.
    started = System.monotonic_time(:millisecond)
    text = read_until(container, "MARK-42", 120_000)
    drained_ms = System.monotonic_time(:millisecond) - started
    assert_seq_then_mark(text, @lines)
    IO.puts("Console flood: re-armed, #{byte_size(text)} bytes drained in #{drained_ms} ms")

    assert :ok = Ampule.destroy(container)
    assert Host.traces_of(name) == []
  end

  defp queue_len do
    {:message_queue_len, n} = Process.info(self(), :message_queue_len)
    n
  end

  # Samples every 100 ms for `ms`, newest first: the owner's queue, Ampule.Port's queue and
  # the console bytes it holds, the BEAM's total and binary memory, and seq's CPU time.
  defp watch(ms, seq) do
    deadline = System.monotonic_time(:millisecond) + ms
    watch(deadline, seq, [])
  end

  defp watch(deadline, seq, acc) do
    port = Process.whereis(Ampule.Port)
    {:message_queue_len, port_queue} = Process.info(port, :message_queue_len)

    sample = %{
      queue: queue_len(),
      port_queue: port_queue,
      port_bytes: waiting_bytes(port),
      port_chunks: waiting_chunks(port),
      port_memory: process_memory(port),
      total: :erlang.memory(:total),
      binary: :erlang.memory(:binary),
      seq_cpu: cpu_ticks(seq)
    }

    if System.monotonic_time(:millisecond) >= deadline do
      [sample | acc]
    else
      receive after: (100 -> watch(deadline, seq, [sample | acc]))
    end
  end

  # A process's own memory and that of the binaries it refers to.
  defp process_memory(pid) do
    {:memory, memory} = Process.info(pid, :memory)
    {:binary, binaries} = Process.info(pid, :binary)
    memory + (binaries |> Enum.map(fn {_id, size, _refs} -> size end) |> Enum.sum())
  end

  defp waiting_chunks(port), do: port |> waiting() |> elem(0)

  # Console bytes waiting in Ampule.Port for a passive owner (its internal state).
  defp waiting_bytes(port), do: port |> waiting() |> elem(1)

  defp waiting(port) do
    %{owned: owned} = :sys.get_state(port)

    for {_name, %{console: %Ampule.Port.Console{} = flow}} <- owned,
        reduce: {0, 0} do
      {chunks, bytes} ->
        {more_chunks, more_bytes} = Ampule.Port.Console.waiting(flow)
        {chunks + more_chunks, bytes + more_bytes}
    end
  end

  defp comm(pid) do
    case File.read("/proc/#{pid}/comm") do
      {:ok, comm} -> String.trim(comm)
      _ -> nil
    end
  end

  # utime + stime of a host process, in clock ticks; `:gone` once it has exited.
  defp cpu_ticks(pid) do
    case File.read("/proc/#{pid}/stat") do
      {:ok, stat} ->
        [_, after_comm] = String.split(stat, ") ")
        fields = String.split(after_comm)
        String.to_integer(Enum.at(fields, 11)) + String.to_integer(Enum.at(fields, 12))

      {:error, _} ->
        :gone
    end
  end

  defp kib(bytes), do: div(bytes, 1024)
end
