defmodule Corpus.Matrix do
  @moduledoc "Matrices as lists of lists: Enum.zip, reduce, recursion."

  def new(rows, cols, fun),
    do: for(i <- 0..(rows - 1), do: for(j <- 0..(cols - 1), do: fun.(i, j)))

  def identity(n), do: new(n, n, fn i, j -> if i == j, do: 1, else: 0 end)

  def transpose([]), do: []
  def transpose(m), do: m |> Enum.zip() |> Enum.map(&Tuple.to_list/1)

  def add(a, b), do: Enum.zip_with(a, b, fn r, s -> Enum.zip_with(r, s, &+/2) end)

  def scale(m, k), do: Enum.map(m, fn row -> Enum.map(row, &(&1 * k)) end)

  def multiply(a, b) do
    bt = transpose(b)
    for row <- a, do: for(col <- bt, do: dot(row, col))
  end

  defp dot(u, v), do: u |> Enum.zip_with(v, &*/2) |> Enum.sum()

  def power(m, 0), do: identity(length(m))
  def power(m, 1), do: m

  def power(m, n) when rem(n, 2) == 0 do
    half = power(m, div(n, 2))
    multiply(half, half)
  end

  def power(m, n), do: multiply(m, power(m, n - 1))

  def determinant([[a]]), do: a

  def determinant([first | rest]) do
    first
    |> Enum.with_index()
    |> Enum.map(fn {x, j} ->
      minor = Enum.map(rest, &List.delete_at(&1, j))
      sign = if rem(j, 2) == 0, do: 1, else: -1
      sign * x * determinant(minor)
    end)
    |> Enum.sum()
  end

  def fibonacci(n), do: [[1, 1], [1, 0]] |> power(n) |> hd() |> List.last()

  def format(m), do: Enum.map_join(m, "\n", fn row -> Enum.map_join(row, " ", &to_string/1) end)
end
