defmodule Corpus.BuggyStack do
  @moduledoc """
  A bounded stack with two bugs on purpose (the grader must see failures): `full?/1` is off
  by one, and `peek/1` on an empty stack returns nil instead of an error.
  """

  defstruct items: [], size: 0, capacity: 3

  def new(capacity \\ 3), do: %__MODULE__{capacity: capacity}

  def push(%{size: size, capacity: cap} = stack, item) do
    if full?(stack) do
      {:error, :full}
    else
      {:ok, %{stack | items: [item | stack.items], size: size + 1, capacity: cap}}
    end
  end

  def pop(%{items: []}), do: {:error, :empty}

  def pop(%{items: [top | rest], size: size} = stack),
    do: {:ok, top, %{stack | items: rest, size: size - 1}}

  # Bug: a stack of capacity 3 is "full" at 2.
  def full?(%{size: size, capacity: cap}), do: size >= cap - 1

  # Bug: should be {:error, :empty}.
  def peek(%{items: []}), do: nil
  def peek(%{items: [top | _]}), do: {:ok, top}

  def to_list(%{items: items}), do: items

  def from_list(list, capacity) do
    Enum.reduce_while(list, {:ok, new(capacity)}, fn x, {:ok, s} ->
      case push(s, x) do
        {:ok, s} -> {:cont, {:ok, s}}
        error -> {:halt, error}
      end
    end)
  end

  def size(%{size: size}), do: size
end
