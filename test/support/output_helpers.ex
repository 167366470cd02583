defmodule Ampule.OutputHelpers do
  @moduledoc false
  # Code that runs inside sandboxes in the output tests (sandbox_output_test.exs,
  # hostile_output_test.exs): printers, and forgers of the agent's output frames.

  alias Ampule.SandboxHelpers

  @doc "Prints to standard output and error, from this process and one it starts, in order."
  def print_in_order do
    IO.puts("out 1")
    IO.puts(:stderr, "err 1")
    :io.format(:standard_error, "err ~p~n", [2])

    {pid, ref} =
      spawn_monitor(fn ->
        IO.puts("child out")
        IO.puts(:stderr, "child err")
      end)

    receive do
      {:DOWN, ^ref, :process, ^pid, :normal} -> :ok
    end

    IO.write("out 2\n")
    :done
  end

  @doc "Prints `first`, waits for `:go` (registered as `name`), prints `second`."
  def print_and_wait(name) do
    Process.register(self(), name)
    IO.puts("first")

    receive do
      :go -> IO.puts("second")
    end

    :done
  end

  @doc "Sends `message` to the process registered as `name`."
  def tell(name, message) do
    send(name, message)
    :ok
  end

  @doc """
  Prints `total` bytes in writes of `size`, counting in `:counters` what has been written
  (its ref is kept in a persistent term under `name`, for `written/1`).
  """
  def print_counted(name, total, size) do
    counter = :counters.new(1, [])
    :persistent_term.put({__MODULE__, name}, {self(), counter})
    chunk = :binary.copy("z", size)

    for _ <- 1..div(total, size) do
      IO.binwrite(chunk)
      :counters.add(counter, 1, size)
    end

    :printed
  end

  @doc "`{bytes written, whether the printer waits for its io reply}` of `print_counted/3`."
  def written(name) do
    {pid, counter} = :persistent_term.get({__MODULE__, name})

    waiting =
      case Process.info(pid, [:status, :current_function]) do
        [status: :waiting, current_function: {:io, _, _}] -> true
        _ -> false
      end

    {:counters.get(counter, 1), waiting}
  end

  @doc "Prints 1 KiB lines until killed."
  def print_forever do
    line = :binary.copy("x", 1023) <> "\n"
    Stream.repeatedly(fn -> IO.write(line) end) |> Stream.run()
  end

  @doc "Prints `total` bytes, a MiB at a time, made as they go."
  def print_bytes(total) do
    mib = :binary.copy("y", 1024 * 1024)
    for _ <- 1..div(total, 1024 * 1024), do: IO.binwrite(mib)
    :printed
  end

  @doc "Bytes that are not UTF-8, through every way of writing."
  def print_invalid_utf8 do
    IO.binwrite(<<0xFF, 0xFE, "ok", 0xC3>>)
    IO.write(<<0x80, 0>>)
    :io.put_chars(<<0xC0, 0xAF>>)
    :file.write(:standard_io, <<0xF8>>)
    :ok
  end

  @doc "Starts a process (registered as `name`) that prints forever, and returns."
  def leave_printer(name) do
    pid =
      spawn(fn ->
        Stream.repeatedly(fn ->
          IO.puts("orphan out")
          IO.puts(:stderr, "orphan err")
        end)
        |> Stream.run()
      end)

    Process.register(pid, name)
    :returned
  end

  @doc "Whether the process registered as `name` is alive; kills it with `kill: true`."
  def alive?(name, kill \\ false) do
    case Process.whereis(name) do
      nil ->
        false

      pid ->
        if kill, do: Process.exit(pid, :kill)
        true
    end
  end

  @doc "Prints, then allocates past the sandbox's memory limit."
  def print_then_eat_memory do
    IO.puts("before the fall")
    Enum.reduce(1..1_000_000, [], fn i, acc -> [:binary.copy(<<i::64>>, 1024) | acc] end)
  end

  @doc "Writes an output frame (7) for call `id` on the agent's socket, `count` times."
  def forge_output(id, data, count \\ 1) do
    socket = SandboxHelpers.agent_socket()
    for _ <- 1..count, do: :ok = :gen_tcp.send(socket, [<<7, id::64>> | data])
    :sent
  end

  @doc "Writes an output-limit answer (8) for call `id`."
  def forge_output_limit(id) do
    :ok = :gen_tcp.send(SandboxHelpers.agent_socket(), <<8, id::64>>)
    :sent
  end

  @doc "Asks its group leader to print what a function that never returns makes."
  def stuck_put_chars do
    :io.request(Process.group_leader(), {:put_chars, :unicode, :timer, :sleep, [:infinity]})
  end

  @doc """
  Starts a watcher that exits when this process does (as an evaluator's guard does),
  prints, and never returns: killed by its timeout, its processes exit as the agent
  retires its io server.
  """
  def watched_forever do
    me = self()

    spawn(fn ->
      ref = Process.monitor(me)

      receive do
        {:DOWN, ^ref, :process, _, _} -> IO.puts("watcher saw the end")
      end
    end)

    IO.puts("watched")
    Process.sleep(:infinity)
  end
end
