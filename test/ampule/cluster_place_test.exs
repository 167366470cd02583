defmodule Ampule.ClusterPlaceTest do
  # Ampule.Cluster.place/2 is pure: the rules of placement, without hosts.
  use ExUnit.Case, async: true

  alias Ampule.Cluster

  doctest Ampule.Cluster

  @gib 1024 * 1024 * 1024

  defp load(node, containers, opts \\ []) do
    Map.merge(
      %{
        node: node,
        containers: containers,
        cpus: 2,
        cpu_idle: 1.0,
        memory_available: 8 * @gib,
        max_containers: :infinity
      },
      Map.new(opts)
    )
  end

  test "the fewest containers per CPU wins: a host with twice the CPUs takes twice as many" do
    loads = [load(:a, 4, cpus: 2), load(:b, 7, cpus: 4)]
    assert Cluster.place(loads) == {:ok, :b}
    assert Cluster.place([load(:a, 4, cpus: 2), load(:b, 8, cpus: 4)]) == {:ok, :a}
  end

  test "pending placements spread a burst over equal hosts, round robin" do
    loads = [load(:a, 0), load(:b, 0), load(:c, 0)]

    {placed, _} =
      Enum.map_reduce(1..9, %{}, fn _, pending ->
        {:ok, node} = Cluster.place(loads, pending: pending)
        {node, Map.update(pending, node, 1, &(&1 + 1))}
      end)

    assert Enum.frequencies(placed) == %{a: 3, b: 3, c: 3}
  end

  test "ties go to the most idle CPU, then the most memory, then the name" do
    assert Cluster.place([load(:a, 1, cpu_idle: 0.5), load(:b, 1, cpu_idle: 1.5)]) == {:ok, :b}

    assert Cluster.place([load(:a, 1, memory_available: 9 * @gib), load(:b, 1)]) ==
             {:ok, :a}

    assert Cluster.place([load(:b, 1), load(:a, 1)]) == {:ok, :a}
  end

  test "a host at its maximum, or short of memory, is skipped" do
    assert Cluster.place([load(:a, 3, max_containers: 3), load(:b, 10)]) == {:ok, :b}

    assert Cluster.place([load(:a, 0, memory_available: 10 * 1024 * 1024), load(:b, 10)]) ==
             {:ok, :b}

    # Memory less what the pending containers take.
    loads = [load(:a, 0, memory_available: 200 * 1024 * 1024), load(:b, 10)]
    assert Cluster.place(loads, pending: %{a: 3}, memory: 64 * 1024 * 1024) == {:ok, :b}
    assert Cluster.place(loads, pending: %{a: 2}, memory: 64 * 1024 * 1024) == {:ok, :a}
  end

  test "among: only the nodes listed; none left is :no_host" do
    loads = [load(:a, 0), load(:b, 5)]
    assert Cluster.place(loads, among: [:b, :z]) == {:ok, :b}
    assert Cluster.place(loads, among: [:z]) == {:error, :no_host}
    assert Cluster.place([]) == {:error, :no_host}
  end
end
