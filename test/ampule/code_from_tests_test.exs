defmodule Ampule.CodeFromTestsTest do
  # Code that exists only in this node's memory (this very test module, a script's top
  # level): refused before anything is sent when it cannot travel, and run through
  # Ampule.run/2 when it is sent as code.
  use ExUnit.Case, async: true

  require Ampule

  @moduletag :root
  @moduletag :lxc

  test "a closure of a test module is refused on the host, naming the module" do
    error =
      assert_raise ArgumentError, fn ->
        Ampule.call(fn -> :never_sent end, sandbox: true)
      end

    assert error.message =~ inspect(__MODULE__)
    assert error.message =~ "Ampule.run"
    # Also when it hides inside another closure, and in Ampule.map.
    inner = fn -> :never_sent end
    assert_raise ArgumentError, fn -> Ampule.call(fn -> inner.() end, sandbox: true) end
    assert_raise ArgumentError, fn -> Ampule.map([1], fn x -> x end) end
    assert {:ok, []} = Ampule.list() |> then(fn {:ok, l} -> {:ok, l -- l} end)
  end

  test "Ampule.run sends the block and the variables it uses, in both kinds of container" do
    words = ["tests", "run"]
    suffix = "!"

    assert Ampule.run(sandbox: true, do: Enum.map(words, &(String.upcase(&1) <> suffix))) ==
             ["TESTS!", "RUN!"]

    c = Ampule.spawn()

    joined =
      Ampule.run c do
        Enum.join(words, " ")
      end

    assert joined == "tests run"

    :ok = Ampule.destroy(c)
  end

  test "defmodule works inside, as in iex: Ampule.run starts Elixir there" do
    value =
      Ampule.run sandbox: true do
        defmodule Greeter do
          def hi(name), do: "hi " <> name
        end

        Greeter.hi("there")
      end

    assert value == "hi there"
  end

  test "raises (as Ampule.RemoteError), throws and timeouts come back as from Ampule.call" do
    error = catch_error(Ampule.run(sandbox: true, do: raise(ArgumentError, "from inside")))
    assert %Ampule.RemoteError{module: "ArgumentError", message: "from inside"} = error

    c = Ampule.spawn(sandbox: true)

    error =
      assert_raise Ampule.Error, fn ->
        Ampule.run c, timeout: 200 do
          Process.sleep(5_000)
        end
      end

    assert error.reason == :timeout
    :ok = Ampule.destroy(c)
  end
end
