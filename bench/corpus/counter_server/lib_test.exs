defmodule Corpus.CounterServerTest do
  use ExUnit.Case, async: true
  alias Corpus.CounterServer

  setup do
    %{server: start_supervised!(CounterServer)}
  end

  test "counts", %{server: s} do
    assert CounterServer.incr(s, :a) == 1
    assert CounterServer.incr(s, :a, 5) == 6
    assert CounterServer.decr(s, :a) == 5
    assert CounterServer.get(s, :b) == 0
  end

  test "snapshot drops zeros", %{server: s} do
    CounterServer.incr(s, :x)
    CounterServer.incr(s, :y)
    CounterServer.decr(s, :y)
    assert CounterServer.snapshot(s) == [x: 1]
  end

  test "reset", %{server: s} do
    CounterServer.incr(s, :x)
    CounterServer.reset(s)
    assert CounterServer.get(s, :x) == 0
  end

  test "many concurrent callers", %{server: s} do
    1..50
    |> Enum.map(fn _ -> Task.async(fn -> CounterServer.incr(s, :hits) end) end)
    |> Task.await_many()

    assert CounterServer.get(s, :hits) == 50
  end

  test "casts are ordered before a later call", %{server: s} do
    for _ <- 1..10, do: CounterServer.incr_async(s, :c)
    assert CounterServer.get(s, :c) == 10
  end

  test "messages", %{server: s} do
    send(s, :tick)
    send(s, :unknown)
    assert CounterServer.get(s, :ticks) == 1
  end
end
