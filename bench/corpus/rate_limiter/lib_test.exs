defmodule Corpus.RateLimiterTest do
  use ExUnit.Case, async: true
  alias Corpus.RateLimiter

  setup do
    %{rl: start_supervised!({RateLimiter, capacity: 3, refill_per_ms: 0.01})}
  end

  test "a burst up to capacity", %{rl: rl} do
    assert Enum.map(1..4, fn _ -> RateLimiter.allow?(rl, :k, 0) end) == [true, true, true, false]
  end

  test "refills over time", %{rl: rl} do
    for _ <- 1..3, do: RateLimiter.allow?(rl, :k, 0)
    refute RateLimiter.allow?(rl, :k, 50)
    assert RateLimiter.allow?(rl, :k, 100)
  end

  test "keys are independent", %{rl: rl} do
    for _ <- 1..3, do: RateLimiter.allow?(rl, :a, 0)
    assert RateLimiter.allow?(rl, :b, 0)
  end

  test "never above capacity", %{rl: rl} do
    RateLimiter.allow?(rl, :k, 0)
    assert RateLimiter.tokens(rl, :k, 1_000_000) == 3.0
  end

  test "the real clock", %{rl: rl} do
    assert RateLimiter.allow?(rl, :now)
  end

  test "concurrent callers share a bucket", %{rl: rl} do
    allowed =
      1..10
      |> Task.async_stream(fn _ -> RateLimiter.allow?(rl, :shared, 0) end)
      |> Enum.count(&(&1 == {:ok, true}))

    assert allowed == 3
  end
end
