defmodule Corpus.JsonLiteTest do
  use ExUnit.Case, async: true
  alias Corpus.JsonLite

  test "scalars" do
    assert JsonLite.encode(nil) == "null"
    assert JsonLite.encode(42) == "42"
    assert JsonLite.encode(1.5) == "1.5"
    assert JsonLite.encode(:ok) == ~s("ok")
  end

  test "escapes" do
    assert JsonLite.encode("a\"b\n") == ~S("a\"b\n")
    assert JsonLite.encode(<<1>>) == ~S("\u0001")
  end

  test "nested" do
    assert JsonLite.encode(%{b: [1, 2], a: %{"c" => true}}) == ~s({"a":{"c":true},"b":[1,2]})
  end

  test "decode scalars and lists" do
    assert JsonLite.decode(" [1, 2.5, \"x\", null, true] ") == {:ok, [1, 2.5, "x", nil, true]}
  end

  test "decode strings with escapes" do
    assert JsonLite.decode(~S("a\"b\nc")) == {:ok, "a\"b\nc"}
  end

  test "round trip of lists" do
    v = [1, [2, [3, "four"]], false]
    assert JsonLite.decode(JsonLite.encode(v)) == {:ok, v}
  end

  test "errors" do
    assert JsonLite.decode("[1 2]") == {:error, :invalid}
    assert JsonLite.decode("1 x") == {:error, :trailing}
  end
end
