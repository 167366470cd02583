defmodule Corpus.JobQueueTest do
  use ExUnit.Case, async: true
  alias Corpus.JobQueue

  setup do
    start_supervised!({Task.Supervisor, name: Corpus.JobQueue.Tasks})
    %{queue: start_supervised!({JobQueue, 2})}
  end

  test "results come back in order of submission", %{queue: q} do
    assert JobQueue.run_all(q, Enum.map(1..5, fn i -> fn -> i * i end end)) ==
             Enum.map(1..5, &{:ok, &1 * &1})
  end

  test "at most limit jobs at once", %{queue: q} do
    JobQueue.run_all(q, for(_ <- 1..6, do: fn -> Process.sleep(5) end))
    assert %{peak: 2, done: 6, running: 0, waiting: 0} = JobQueue.stats(q)
  end

  test "a crashing job is reported, the queue goes on", %{queue: q} do
    [bad, good] = JobQueue.run_all(q, [fn -> exit(:boom) end, fn -> :fine end])
    assert {:error, :boom} = bad
    assert good == {:ok, :fine}
  end

  test "jobs run in other processes", %{queue: q} do
    [{:ok, pid}] = JobQueue.run_all(q, [fn -> self() end])
    assert pid != self()
  end

  test "many jobs", %{queue: q} do
    results = JobQueue.run_all(q, for(i <- 1..40, do: fn -> rem(i, 7) end))
    assert length(results) == 40
    assert Enum.all?(results, &match?({:ok, _}, &1))
  end
end
