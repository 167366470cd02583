defmodule Corpus.CounterServer do
  @moduledoc "A GenServer of named counters, with a reset and a snapshot."

  use GenServer

  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, %{}, opts)

  def incr(server, name, by \\ 1), do: GenServer.call(server, {:incr, name, by})
  def decr(server, name), do: incr(server, name, -1)
  def get(server, name), do: GenServer.call(server, {:get, name})
  def snapshot(server), do: GenServer.call(server, :snapshot)
  def reset(server), do: GenServer.cast(server, :reset)
  def incr_async(server, name), do: GenServer.cast(server, {:incr, name, 1})

  @impl true
  def init(state), do: {:ok, state}

  @impl true
  def handle_call({:incr, name, by}, _from, state) do
    state = Map.update(state, name, by, &(&1 + by))
    {:reply, Map.fetch!(state, name), state}
  end

  def handle_call({:get, name}, _from, state), do: {:reply, Map.get(state, name, 0), state}

  def handle_call(:snapshot, _from, state) do
    {:reply, state |> Enum.sort() |> Enum.reject(fn {_k, v} -> v == 0 end), state}
  end

  @impl true
  def handle_cast(:reset, _state), do: {:noreply, %{}}

  def handle_cast({:incr, name, by}, state),
    do: {:noreply, Map.update(state, name, by, &(&1 + by))}

  @impl true
  def handle_info(:tick, state), do: {:noreply, Map.update(state, :ticks, 1, &(&1 + 1))}
  def handle_info(_other, state), do: {:noreply, state}
end
