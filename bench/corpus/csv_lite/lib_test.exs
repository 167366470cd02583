defmodule Corpus.CsvLiteTest do
  use ExUnit.Case, async: true
  alias Corpus.CsvLite

  test "plain fields" do
    assert CsvLite.parse_line("a,b,c") == ["a", "b", "c"]
  end

  test "empty fields" do
    assert CsvLite.parse_line("a,,c") == ["a", "", "c"]
    assert CsvLite.parse_line("a,b,") == ["a", "b", ""]
  end

  test "quoted fields with commas" do
    assert CsvLite.parse_line(~s(1,"x, y",2)) == ["1", "x, y", "2"]
  end

  test "escaped quotes" do
    assert CsvLite.parse_line(~s("say ""hi""",ok)) == [~s(say "hi"), "ok"]
  end

  test "lines" do
    assert CsvLite.parse("a,b\r\nc,d\n") == [["a", "b"], ["c", "d"]]
  end

  test "maps with types" do
    text = "name,age,admin\nann,31,yes\nbob,42,no\n"

    assert CsvLite.to_maps(text, %{"age" => :integer, "admin" => :boolean}) == [
             %{"name" => "ann", "age" => 31, "admin" => true},
             %{"name" => "bob", "age" => 42, "admin" => false}
           ]
  end

  test "sum a column" do
    assert CsvLite.sum_column("n,v\na,1\nb,2\nc,39", "v") == 42
  end

  test "floats" do
    assert [%{"x" => 1.5}] = CsvLite.to_maps("x\n1.5", %{"x" => :float})
  end
end
