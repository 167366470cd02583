defmodule Corpus.RunLengthTest do
  use ExUnit.Case, async: true
  alias Corpus.RunLength

  test "encode" do
    assert RunLength.encode("AABCCCDEEEE") == "2AB3CD4E"
    assert RunLength.encode("") == ""
  end

  test "decode" do
    assert RunLength.decode("2AB3CD4E") == "AABCCCDEEEE"
    assert RunLength.decode("12W") == String.duplicate("W", 12)
  end

  test "round trip" do
    for s <- ["a", "  hsqq qww  ", "zzz ZZ  zZ", String.duplicate("x", 100)] do
      assert RunLength.decode(RunLength.encode(s)) == s
    end
  end

  test "lists" do
    assert RunLength.encode_list([1, 1, 2, 3, 3, 3]) == [{1, 2}, {2, 1}, {3, 3}]
    assert RunLength.decode_list([{:a, 2}, {:b, 1}]) == [:a, :a, :b]
  end

  test "delta" do
    assert RunLength.delta([10, 12, 15, 15, 11]) == [10, 2, 3, 0, -4]
    assert RunLength.undelta(RunLength.delta([10, 12, 15, 15, 11])) == [10, 12, 15, 15, 11]
  end

  test "bits" do
    assert RunLength.compress_bits(<<0b11110000>>) == [{1, 4}, {0, 4}]
  end

  test "ratio" do
    assert RunLength.ratio(String.duplicate("a", 10)) == 0.3
  end

  test "stream" do
    assert 1..6 |> Stream.map(&div(&1, 3)) |> RunLength.stream_encode() |> Enum.to_list() == [
             {0, 2},
             {1, 3},
             {2, 1}
           ]
  end
end
