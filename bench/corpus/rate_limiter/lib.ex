defmodule Corpus.RateLimiter do
  @moduledoc "A token-bucket rate limiter per key, as a GenServer with an injectable clock."

  use GenServer

  def start_link(opts) do
    GenServer.start_link(__MODULE__, Map.new(opts))
  end

  def allow?(server, key, now \\ nil), do: GenServer.call(server, {:allow, key, now})

  def tokens(server, key, now), do: GenServer.call(server, {:tokens, key, now})

  @impl true
  def init(opts) do
    {:ok,
     %{
       capacity: Map.get(opts, :capacity, 5),
       per_ms: Map.get(opts, :refill_per_ms, 0.01),
       buckets: %{}
     }}
  end

  @impl true
  def handle_call({:allow, key, now}, _from, state) do
    now = now || System.monotonic_time(:millisecond)
    {tokens, state} = refill(state, key, now)

    if tokens >= 1 do
      {:reply, true, put_in(state.buckets[key], {tokens - 1, now})}
    else
      {:reply, false, put_in(state.buckets[key], {tokens, now})}
    end
  end

  def handle_call({:tokens, key, now}, _from, state) do
    {tokens, state} = refill(state, key, now)
    {:reply, Float.floor(tokens / 1, 2), state}
  end

  defp refill(state, key, now) do
    case Map.fetch(state.buckets, key) do
      {:ok, {tokens, at}} -> {min(state.capacity, tokens + (now - at) * state.per_ms), state}
      :error -> {state.capacity, state}
    end
  end
end
