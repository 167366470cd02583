defmodule Corpus.InventoryTest do
  use ExUnit.Case, async: true
  alias Corpus.Inventory

  setup do
    inv =
      Inventory.new()
      |> Inventory.add("a1", "apple", 10, 3)
      |> Inventory.add("b1", "banana", 2, 5)
      |> Inventory.add("a2", "avocado", 4, 7)

    %{inv: inv}
  end

  test "value", %{inv: inv} do
    assert Inventory.value(inv) == 30 + 10 + 28
  end

  test "adding again sums quantities", %{inv: inv} do
    inv = Inventory.add(inv, "a1", "apple", 5, 4)
    assert inv.items["a1"].qty == 15
    assert inv.items["a1"].price == 4
  end

  test "remove", %{inv: inv} do
    assert {:ok, inv} = Inventory.remove(inv, "a1", 3)
    assert inv.items["a1"].qty == 7
    assert Inventory.remove(inv, "b1", 3) == {:error, :insufficient}
    assert Inventory.remove(inv, "zz", 1) == {:error, :unknown_sku}
  end

  test "low stock", %{inv: inv} do
    assert Inventory.low_stock(inv, 5) == %{"b1" => 2, "a2" => 4}
  end

  test "grouped by first letter", %{inv: inv} do
    assert Inventory.by_letter(inv) == %{"A" => ["a1", "a2"], "B" => ["b1"]}
  end

  test "history", %{inv: inv} do
    {:ok, inv} = Inventory.remove(inv, "a1", 1)
    assert Inventory.history(inv, "a1") == [{:add, "a1", 10}, {:remove, "a1", 1}]
  end

  test "merge", %{inv: inv} do
    other = Inventory.new() |> Inventory.add("a1", "apple", 1, 9)
    merged = Inventory.merge(inv, other)
    assert merged.items["a1"] == %{name: "apple", qty: 11, price: 9}
  end
end
