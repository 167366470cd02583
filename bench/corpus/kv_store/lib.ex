defmodule Corpus.KvStore do
  @moduledoc "A key-value store: a GenServer owning an ETS table, readers going to the table directly."

  use GenServer

  def start_link(name), do: GenServer.start_link(__MODULE__, name)

  def put(server, key, value), do: GenServer.call(server, {:put, key, value})
  def delete(server, key), do: GenServer.call(server, {:delete, key})

  def get(server, key, default \\ nil) do
    case :ets.lookup(table(server), key) do
      [{^key, value}] -> value
      [] -> default
    end
  end

  def keys(server),
    do: server |> table() |> :ets.tab2list() |> Enum.map(&elem(&1, 0)) |> Enum.sort()

  def update(server, key, initial, fun), do: GenServer.call(server, {:update, key, initial, fun})

  def table(server), do: GenServer.call(server, :table)

  @impl true
  def init(_name) do
    {:ok, :ets.new(:kv, [:set, :protected, read_concurrency: true])}
  end

  @impl true
  def handle_call({:put, key, value}, _from, table) do
    :ets.insert(table, {key, value})
    {:reply, :ok, table}
  end

  def handle_call({:delete, key}, _from, table) do
    :ets.delete(table, key)
    {:reply, :ok, table}
  end

  def handle_call({:update, key, initial, fun}, _from, table) do
    new =
      case :ets.lookup(table, key) do
        [{^key, old}] -> fun.(old)
        [] -> initial
      end

    :ets.insert(table, {key, new})
    {:reply, new, table}
  end

  def handle_call(:table, _from, table), do: {:reply, table, table}
end
