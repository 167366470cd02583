defmodule Corpus.UnitConvTest do
  use ExUnit.Case, async: true
  alias Corpus.UnitConv

  test "lengths" do
    assert UnitConv.convert(1, :km, :m) == {:ok, 1000.0}
    assert UnitConv.round_to(UnitConv.convert(1, :mi, :km), 3) == {:ok, 1.609}
  end

  test "identity" do
    for d <- UnitConv.dimensions(),
        u <- UnitConv.units(d),
        do: assert(UnitConv.convert(2, u, u) == {:ok, 2.0})
  end

  test "incompatible" do
    assert UnitConv.convert(1, :kg, :m) == {:error, {:incompatible, :kg, :m}}
  end

  test "dimensions" do
    assert UnitConv.dimension(:oz) == :mass
    assert UnitConv.dimension(:parsec) == nil
    assert UnitConv.units(:time) == [:d, :h, :min, :ms, :s, :wk]
  end

  test "temperatures" do
    assert UnitConv.temperature(100, :c, :f) == 212.0
    assert UnitConv.temperature(0, :c, :k) == 273.15
  end

  test "parsing" do
    assert UnitConv.round_to(UnitConv.parse("3 h in min"), 1) == {:ok, 180.0}
    assert UnitConv.parse("three hours") == {:error, :unparsable}
    assert UnitConv.parse("3 zz to qq") == {:error, :unknown_unit}
  end
end
