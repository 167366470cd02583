defmodule Corpus.KvStoreTest do
  use ExUnit.Case, async: true
  alias Corpus.KvStore

  setup do
    {:ok, pid} = KvStore.start_link(:test)
    %{kv: pid}
  end

  test "put and get", %{kv: kv} do
    assert KvStore.put(kv, :a, 1) == :ok
    assert KvStore.get(kv, :a) == 1
    assert KvStore.get(kv, :b, :none) == :none
  end

  test "delete", %{kv: kv} do
    KvStore.put(kv, :a, 1)
    KvStore.delete(kv, :a)
    assert KvStore.get(kv, :a) == nil
  end

  test "keys", %{kv: kv} do
    for k <- [:c, :a, :b], do: KvStore.put(kv, k, 0)
    assert KvStore.keys(kv) == [:a, :b, :c]
  end

  test "update", %{kv: kv} do
    assert KvStore.update(kv, :n, 1, &(&1 + 1)) == 1
    assert KvStore.update(kv, :n, 1, &(&1 + 1)) == 2
  end

  test "concurrent updates are serialised", %{kv: kv} do
    1..100 |> Task.async_stream(fn _ -> KvStore.update(kv, :n, 1, &(&1 + 1)) end) |> Stream.run()
    assert KvStore.get(kv, :n) == 100
  end

  test "others cannot write the table", %{kv: kv} do
    table = KvStore.table(kv)
    assert_raise ArgumentError, fn -> :ets.insert(table, {:x, 1}) end
  end

  test "the table dies with its owner", %{kv: kv} do
    table = KvStore.table(kv)
    Process.unlink(kv)
    ref = Process.monitor(kv)
    Process.exit(kv, :kill)
    assert_receive {:DOWN, ^ref, :process, _, :killed}
    assert :ets.info(table) == :undefined
  end
end
