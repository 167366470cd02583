defmodule Corpus.MatrixTest do
  use ExUnit.Case, async: true
  alias Corpus.Matrix

  @a [[1, 2], [3, 4]]

  test "identity" do
    assert Matrix.identity(2) == [[1, 0], [0, 1]]
  end

  test "transpose" do
    assert Matrix.transpose([[1, 2, 3], [4, 5, 6]]) == [[1, 4], [2, 5], [3, 6]]
  end

  test "add and scale" do
    assert Matrix.add(@a, @a) == Matrix.scale(@a, 2)
  end

  test "multiply" do
    assert Matrix.multiply(@a, @a) == [[7, 10], [15, 22]]
    assert Matrix.multiply(@a, Matrix.identity(2)) == @a
  end

  test "power" do
    assert Matrix.power(@a, 3) == Matrix.multiply(@a, Matrix.multiply(@a, @a))
  end

  test "determinant" do
    assert Matrix.determinant(@a) == -2
    assert Matrix.determinant([[2, 0, 1], [1, 3, 2], [1, 1, 2]]) == 6
  end

  test "fibonacci by matrix power" do
    assert Enum.map(1..10, &Matrix.fibonacci/1) == [1, 1, 2, 3, 5, 8, 13, 21, 34, 55]
    assert Matrix.fibonacci(90) == 2_880_067_194_370_816_120
  end

  test "format" do
    assert Matrix.format(@a) == "1 2\n3 4"
  end
end
