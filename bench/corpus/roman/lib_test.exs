defmodule Corpus.RomanTest do
  use ExUnit.Case, async: true
  alias Corpus.Roman

  for {n, r} <- [
        {1, "I"},
        {4, "IV"},
        {9, "IX"},
        {14, "XIV"},
        {40, "XL"},
        {90, "XC"},
        {400, "CD"},
        {1994, "MCMXCIV"},
        {3999, "MMMCMXCIX"}
      ] do
    test "#{n} is #{r}" do
      assert Roman.to_roman(unquote(n)) == unquote(r)
      assert Roman.from_roman(unquote(r)) == {:ok, unquote(n)}
    end
  end

  test "out of range" do
    assert Roman.to_roman(0) == {:error, :out_of_range}
    assert Roman.to_roman(4000) == {:error, :out_of_range}
  end

  test "round trip of every number" do
    for n <- 1..3999, do: assert(Roman.from_roman(Roman.to_roman(n)) == {:ok, n})
  end

  test "invalid letters" do
    assert Roman.from_roman("ABC") == {:error, :invalid}
    assert Roman.from_roman("") == {:error, :invalid}
  end

  test "not canonical" do
    assert Roman.from_roman("IIII") == {:error, :not_canonical}
    refute Roman.valid?("VX")
  end

  test "lowercase" do
    assert Roman.from_roman("xiv") == {:ok, 14}
  end
end
