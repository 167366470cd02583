defmodule Ampule.MapTest do
  # Ampule.map: each element in a container of its own, as Task.async_stream would.
  use ExUnit.Case, async: true

  alias Ampule.RemoteHelpers

  @moduletag :root
  @moduletag :lxc

  setup do
    pool = :"map_pool_#{System.unique_integer([:positive])}"
    start_supervised!({Ampule.Pool, name: pool, size: 3, checkout_timeout: 60_000})
    %{pool: pool}
  end

  test "results come in the enumerable's order, one container each", %{pool: pool} do
    results =
      1..6
      |> Ampule.map({:erlang, :*, [10]}, pool: pool, max_concurrency: 3)
      |> Enum.to_list()

    assert results == Enum.map(1..6, &{:ok, &1 * 10})

    names =
      1..4
      |> Ampule.map(&RemoteHelpers.hostname/1, pool: pool)
      |> Enum.map(fn {:ok, name} -> name end)

    assert length(Enum.uniq(names)) == 4
  end

  test "ordered: false gives each result as soon as it is done", %{pool: pool} do
    order =
      [1_500, 1, 2]
      |> Ampule.map(&RemoteHelpers.sleep_then/1,
        pool: pool,
        ordered: false,
        max_concurrency: 3
      )
      |> Enum.map(fn {:ok, ms} -> ms end)

    assert List.last(order) == 1_500
    assert Enum.sort(order) == [1, 2, 1_500]
  end

  test "a slow element times out alone, a failing one says why, the rest go on", %{pool: pool} do
    results =
      [{:sleep, 60_000}, {:raise, "no"}, {:throw, :t}, {:exit, :e}, {:ok, 7}]
      # Each element's timeout covers its checkout too, and a loaded machine's pool may be
      # booting replacements: 5 s were too few in a CI run beside other suites.
      |> Ampule.map({RemoteHelpers, :behave, []}, pool: pool, timeout: 12_000, max_concurrency: 5)
      |> Enum.to_list()

    assert [
             {:error, :timeout},
             {:error, {:exception, %ArgumentError{message: "no"}, _}},
             {:error, {:throw, :t}},
             {:error, {:exit, :e}},
             {:ok, 7}
           ] = results
  end

  test "cold containers with start/1's options, sandboxes included" do
    assert [{:ok, "A"}, {:ok, "B"}] =
             ["a", "b"] |> Ampule.map(&String.upcase/1, sandbox: true) |> Enum.to_list()

    assert [{:ok, 6}] =
             [[1, 2, 3]]
             |> Ampule.map({Enum, :sum, []}, memory: 64 * 1024 * 1024)
             |> Enum.to_list()
  end

  test "a bad function is refused before anything starts" do
    assert_raise ArgumentError, fn -> Ampule.map([1], :not_a_function) end

    assert_raise ArgumentError, ~r/only in this node's memory/, fn ->
      Ampule.map([1], fn x -> x end)
    end
  end
end
