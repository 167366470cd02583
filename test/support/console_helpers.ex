defmodule Ampule.Test.ConsoleHelpers do
  @moduledoc false
  # Reading a system container's console as its owner, for system_test.exs and
  # hostile_console_test.exs: output arrives as {:ampule_console, container, bytes}, up to
  # the :active count, then {:ampule_console_passive, container} until the owner re-arms.

  import ExUnit.Assertions

  # The count an owner that keeps up re-arms with (the default :active count).
  @active 100

  @doc """
  Reads console output until `text` has been seen, within `timeout` ms in all, re-arming
  the console whenever it goes passive; returns everything read, starting with `seen`
  (output the caller has taken from the mailbox already). Only the tail is searched, so a
  flood of megabytes costs linear time.
  """
  def read_until(container, text, timeout \\ 30_000, seen \\ "") do
    deadline = System.monotonic_time(:millisecond) + timeout
    keep = max(byte_size(text), 64)
    read_until(container, text, {deadline, keep}, [seen], seen)
  end

  defp read_until(container, text, {deadline, keep} = limits, acc, tail) do
    if String.contains?(tail, text) do
      IO.iodata_to_binary(acc)
    else
      left = max(deadline - System.monotonic_time(:millisecond), 0)
      tail = binary_part(tail, max(byte_size(tail) - keep, 0), min(byte_size(tail), keep))

      receive do
        {:ampule_console, ^container, bytes} ->
          read_until(container, text, limits, [acc, bytes], tail <> bytes)

        {:ampule_console_passive, ^container} ->
          :ok = Ampule.console_active(container, @active)
          read_until(container, text, limits, acc, tail)
      after
        left -> flunk("no #{inspect(text)} on the console; ends with #{inspect(tail)}")
      end
    end
  end

  @doc "Logs in with the busybox template's default user and password; waits for the prompt."
  def login(container) do
    read_until(container, "login:")
    "ubuntu\n" |> Ampule.console(container)
    read_until(container, "Password:")
    "ubuntu\n" |> Ampule.console(container)
    read_until(container, "$ ")
  end

  @doc "The next console message, in mailbox order: `{:data, bytes}` or `:passive`."
  def next_console(container, timeout \\ 10_000) do
    receive do
      {:ampule_console, ^container, bytes} -> {:data, bytes}
      {:ampule_console_passive, ^container} -> :passive
    after
      timeout -> flunk("no console message within #{timeout} ms")
    end
  end

  @doc "No console message comes (within 300 ms: what a credit window that holds looks like)."
  def refute_console(container) do
    refute_receive {:ampule_console, ^container, _}, 300
    refute_received {:ampule_console_passive, ^container}
  end

  @doc """
  `text` holds the echo of `seq 1 N; echo MARK-$((6*7))`, then exactly 1..N, one a line,
  then the marker: every byte, in order.
  """
  def assert_seq_then_mark(text, n) do
    [_echo, output] = String.split(text, "MARK-$((6*7))\r\n", parts: 2)
    [numbers, _prompt] = String.split(output, "MARK-42", parts: 2)
    lines = String.split(numbers, "\r\n")
    assert List.last(lines) == ""
    got = lines |> Enum.drop(-1) |> Enum.map(&String.to_integer/1)
    first_gap = Enum.zip(got, 1..n) |> Enum.find(fn {a, b} -> a != b end)
    assert {length(got), first_gap} == {n, nil}
  end
end
