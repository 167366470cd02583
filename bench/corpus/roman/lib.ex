defmodule Corpus.Roman do
  @moduledoc "Roman numerals both ways."

  @numerals [
    {1000, "M"},
    {900, "CM"},
    {500, "D"},
    {400, "CD"},
    {100, "C"},
    {90, "XC"},
    {50, "L"},
    {40, "XL"},
    {10, "X"},
    {9, "IX"},
    {5, "V"},
    {4, "IV"},
    {1, "I"}
  ]

  def to_roman(n) when is_integer(n) and n > 0 and n < 4000 do
    {acc, 0} =
      Enum.reduce(@numerals, {"", n}, fn {value, letters}, {acc, left} ->
        {acc <> String.duplicate(letters, div(left, value)), rem(left, value)}
      end)

    acc
  end

  def to_roman(_), do: {:error, :out_of_range}

  @values %{?I => 1, ?V => 5, ?X => 10, ?L => 50, ?C => 100, ?D => 500, ?M => 1000}

  def from_roman(string) do
    chars = string |> String.upcase() |> String.to_charlist()

    if chars != [] and Enum.all?(chars, &Map.has_key?(@values, &1)) do
      values = Enum.map(chars, &Map.fetch!(@values, &1))
      total = sum(values, 0)

      if to_roman(total) == String.upcase(string),
        do: {:ok, total},
        else: {:error, :not_canonical}
    else
      {:error, :invalid}
    end
  end

  defp sum([a, b | rest], acc) when a < b, do: sum([b | rest], acc - a)
  defp sum([a | rest], acc), do: sum(rest, acc + a)
  defp sum([], acc), do: acc

  def valid?(string), do: match?({:ok, _}, from_roman(string))
end
