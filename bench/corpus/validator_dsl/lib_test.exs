defmodule Corpus.ValidatorTest do
  use ExUnit.Case, async: true
  alias Corpus.Validator.User

  test "fields in order" do
    assert User.fields() == [:name, :age, :tags, :admin]
  end

  test "valid" do
    assert {:ok, _} = User.validate(%{name: "ann", age: 30})
  end

  test "required" do
    assert User.validate(%{age: 3}) == {:error, [{:name, :required}]}
  end

  test "types" do
    assert User.validate(%{name: "ann", age: "old"}) == {:error, [{:age, {:type, :integer}}]}
  end

  test "bounds" do
    assert User.validate(%{name: "a", age: 200, tags: [1, 2, 3, 4]}) ==
             {:error, [{:name, {:min, 2}}, {:age, {:max, 150}}, {:tags, {:max, 3}}]}
  end

  test "rules" do
    assert User.validate(%{name: "kid", age: 10, admin: true}) == {:error, ["admins are adults"]}
    assert {:ok, _} = User.validate(%{name: "boss", age: 40, admin: true})
  end

  test "a module of its own" do
    defmodule Point do
      use Corpus.Validator
      field(:x, :integer, required: true)
      field(:y, :integer, required: true)
    end

    assert Point.validate(%{x: 1}) == {:error, [{:y, :required}]}
  end
end
