defmodule Corpus.Inventory do
  @moduledoc "A shop's stock as nested maps: Map.update, get_in, Enum.group_by."

  defstruct items: %{}, log: []

  def new, do: %__MODULE__{}

  def add(inv, sku, name, qty, price) when qty > 0 do
    items =
      Map.update(inv.items, sku, %{name: name, qty: qty, price: price}, fn item ->
        %{item | qty: item.qty + qty, price: price}
      end)

    %{inv | items: items, log: [{:add, sku, qty} | inv.log]}
  end

  def remove(inv, sku, qty) do
    case inv.items do
      %{^sku => %{qty: have}} when have >= qty ->
        items = Map.update!(inv.items, sku, &%{&1 | qty: have - qty})
        {:ok, %{inv | items: items, log: [{:remove, sku, qty} | inv.log]}}

      %{^sku => _} ->
        {:error, :insufficient}

      _ ->
        {:error, :unknown_sku}
    end
  end

  def value(inv) do
    inv.items |> Map.values() |> Enum.map(&(&1.qty * &1.price)) |> Enum.sum()
  end

  def low_stock(inv, threshold) do
    for {sku, %{qty: q}} <- inv.items, q < threshold, into: %{}, do: {sku, q}
  end

  def by_letter(inv) do
    inv.items
    |> Enum.group_by(
      fn {_sku, item} -> item.name |> String.first() |> String.upcase() end,
      fn {sku, _} -> sku end
    )
    |> Map.new(fn {k, v} -> {k, Enum.sort(v)} end)
  end

  def history(inv, sku) do
    inv.log |> Enum.reverse() |> Enum.filter(&(elem(&1, 1) == sku))
  end

  def merge(a, b) do
    items =
      Map.merge(a.items, b.items, fn _sku, x, y ->
        %{x | qty: x.qty + y.qty, price: max(x.price, y.price)}
      end)

    %__MODULE__{items: items, log: b.log ++ a.log}
  end
end
