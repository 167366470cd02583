defmodule Corpus.UnitConv do
  @moduledoc """
  Unit conversions generated at compile time: one function clause per pair of units of a
  dimension, from a table, with `for` and `unquote` (many clauses to compile).
  """

  @units %{
    length: [
      m: 1.0,
      km: 1000.0,
      cm: 0.01,
      mm: 0.001,
      mi: 1609.344,
      yd: 0.9144,
      ft: 0.3048,
      in: 0.0254
    ],
    mass: [kg: 1.0, g: 0.001, mg: 1.0e-6, t: 1000.0, lb: 0.45359237, oz: 0.028349523125],
    time: [s: 1.0, ms: 0.001, min: 60.0, h: 3600.0, d: 86400.0, wk: 604_800.0],
    volume: [l: 1.0, ml: 0.001, m3: 1000.0, gal: 3.785411784, qt: 0.946352946, cup: 0.2365882365]
  }

  for {dimension, units} <- @units, {from, a} <- units, {to, b} <- units do
    def convert(value, unquote(from), unquote(to)) when is_number(value),
      do: {:ok, value * unquote(a / b)}

    def dimension(unquote(from)), do: unquote(dimension)
    _ = to
  end

  def convert(_value, from, to), do: {:error, {:incompatible, from, to}}

  def dimension(_), do: nil

  def units(dimension), do: @units |> Map.fetch!(dimension) |> Keyword.keys() |> Enum.sort()

  def dimensions, do: @units |> Map.keys() |> Enum.sort()

  @doc "Celsius, Fahrenheit and Kelvin are not ratios: one clause each."
  def temperature(v, :c, :f), do: v * 9 / 5 + 32
  def temperature(v, :f, :c), do: (v - 32) * 5 / 9
  def temperature(v, :c, :k), do: v + 273.15
  def temperature(v, :k, :c), do: v - 273.15
  def temperature(v, same, same), do: v

  def parse(text) do
    case Regex.run(~r/^\s*(-?\d+(?:\.\d+)?)\s*([a-z0-9]+)\s+(?:to|in)\s+([a-z0-9]+)\s*$/, text) do
      [_, n, from, to] ->
        {value, ""} = Float.parse(n)
        convert(value, String.to_existing_atom(from), String.to_existing_atom(to))

      nil ->
        {:error, :unparsable}
    end
  rescue
    ArgumentError -> {:error, :unknown_unit}
  end

  def round_to({:ok, v}, digits), do: {:ok, Float.round(v, digits)}
  def round_to(error, _digits), do: error
end
