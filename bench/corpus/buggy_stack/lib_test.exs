defmodule Corpus.BuggyStackTest do
  use ExUnit.Case, async: true
  alias Corpus.BuggyStack, as: Stack

  test "push and pop" do
    {:ok, s} = Stack.push(Stack.new(), 1)
    assert {:ok, 1, s} = Stack.pop(s)
    assert Stack.pop(s) == {:error, :empty}
  end

  test "fills to capacity (fails: off by one)" do
    assert {:ok, s} = Stack.from_list([1, 2, 3], 3)
    assert Stack.size(s) == 3
  end

  test "refuses beyond capacity" do
    assert Stack.from_list([1, 2, 3, 4], 3) == {:error, :full}
  end

  test "peek" do
    {:ok, s} = Stack.from_list([1], 3)
    assert Stack.peek(s) == {:ok, 1}
  end

  test "peek on empty (fails: returns nil)" do
    assert Stack.peek(Stack.new()) == {:error, :empty}
  end

  test "order" do
    {:ok, s} = Stack.from_list([:a, :b], 5)
    assert Stack.to_list(s) == [:b, :a]
  end
end
