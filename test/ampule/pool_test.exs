defmodule Ampule.PoolTest do
  # Pools of pristine single-use containers: real containers, real concurrency.
  use ExUnit.Case, async: true

  import Ampule.Test.Host, only: [wait_until: 2]

  @moduletag :root
  @moduletag :lxc

  defp unique, do: :"pool_#{System.unique_integer([:positive])}"

  defp start_pool(opts) do
    name = unique()
    start_supervised!({Ampule.Pool, [name: name] ++ opts})
    name
  end

  # A call that proves its container is fresh: it finds no marker, leaves one, and says
  # which container it ran in.
  defp mark_and_name do
    {:os, :cmd, [~c"test -e /tmp/used && echo USED || (touch /tmp/used; hostname)"]}
  end

  test "20 concurrent callers on a pool of 4: every result right, no container serves two" do
    # Callers wait for refills (4 boots at a time): give them time on a loaded machine.
    pool = start_pool(size: 4, checkout_timeout: 120_000)
    assert wait_until(fn -> Ampule.Pool.stats(pool).idle == 4 end, 30_000)

    # Each call is alone in its container: a square, and proof of freshness.
    results =
      1..20
      |> Enum.map(fn i ->
        Task.async(fn ->
          {i, Ampule.call({:erlang, :*, [i, i]}, pool: pool),
           Ampule.call(mark_and_name(), pool: pool, timeout: 10_000)}
        end)
      end)
      |> Task.await_many(60_000)

    for {i, square, _} <- results, do: assert(square == i * i)
    names = Enum.map(results, fn {_, _, name} -> to_string(name) end)
    refute Enum.any?(names, &(&1 =~ "USED"))
    assert length(Enum.uniq(names)) == 20

    # Nothing of the used containers is left once they are given back.
    for name <- names do
      assert wait_until(fn -> Ampule.Test.Host.traces_of(String.trim(name)) == [] end, 10_000)
    end
  end

  test "stopping the pool destroys its containers, idle and checked out" do
    pool = start_pool(size: 2)
    assert wait_until(fn -> Ampule.Pool.stats(pool).idle == 2 end, 30_000)
    {:ok, held} = Ampule.Pool.checkout(pool)
    assert wait_until(fn -> Ampule.Pool.stats(pool).idle == 2 end, 30_000)
    idle = :sys.get_state(pool).idle |> :queue.to_list()
    all = [held | idle]
    {:ok, names} = Ampule.list()
    assert Enum.all?(all, &(&1.name in names))

    stop_supervised!(pool)
    {:ok, left} = Ampule.list()
    assert Enum.filter(all, &(&1.name in left)) == []

    for c <- all do
      assert wait_until(fn -> Ampule.Test.Host.traces_of(c.name) == [] end, 10_000)
    end
  end

  test "a pooled call's options: only :timeout goes with :pool" do
    pool = start_pool(size: 1)

    assert_raise ArgumentError, ~r/only other option/, fn ->
      Ampule.call({:erlang, :node, []}, pool: pool, memory: 1)
    end

    assert {:erlang, :node, []} |> Ampule.call(pool: pool) |> is_atom()
  end

  test "the pool's owner exiting (it linked the pool) destroys the pool's containers" do
    parent = self()
    name = unique()

    owner =
      spawn(fn ->
        {:ok, _} = Ampule.Pool.start_link(name: name, size: 2)
        send(parent, :started)
        Process.sleep(:infinity)
      end)

    # start_link returns once the pool's processes run (not its boots): well within a
    # second, but a loaded machine took over ExUnit's default 100 ms.
    assert_receive :started, 10_000
    assert wait_until(fn -> Ampule.Pool.stats(name).idle == 2 end, 30_000)
    idle = :sys.get_state(name).idle |> :queue.to_list()
    ref = Process.monitor(Process.whereis(name))
    Process.exit(owner, :kill)
    assert_receive {:DOWN, ^ref, _, _, _}, 30_000
    {:ok, left} = Ampule.list()
    assert Enum.filter(idle, &(&1.name in left)) == []
  end

  test "a container killed while idle in the pool is replaced and never handed out" do
    pool = start_pool(size: 2)
    assert wait_until(fn -> Ampule.Pool.stats(pool).idle == 2 end, 30_000)
    # Find the idle containers: the only ones of the pool so far.
    {:ok, first} = Ampule.Pool.checkout(pool)
    Ampule.Pool.checkin(pool, first)
    assert wait_until(fn -> Ampule.Pool.stats(pool).idle == 2 end, 30_000)
    idle_names = fn -> :sys.get_state(pool).idle |> :queue.to_list() |> Enum.map(& &1.name) end
    victim = :sys.get_state(pool).idle |> :queue.to_list() |> hd()
    System.cmd("kill", ["-9", to_string(victim.init_pid)])
    # Once the pool hears of the death (the port's exit event), the victim is out of it...
    assert wait_until(fn -> victim.name not in idle_names.() end, 10_000)
    # ...and a replacement boots.
    assert wait_until(fn -> Ampule.Pool.stats(pool).idle == 2 end, 30_000)

    handed =
      for _ <- 1..4 do
        {:ok, c} = Ampule.Pool.checkout(pool)
        Ampule.Pool.checkin(pool, c)
        c.name
      end

    refute victim.name in handed
  end

  test "a caller that exits holding a container gets it destroyed" do
    pool = start_pool(size: 1)
    parent = self()

    holder =
      spawn(fn ->
        {:ok, c} = Ampule.Pool.checkout(pool)
        send(parent, {:held, c})
        Process.sleep(:infinity)
      end)

    assert_receive {:held, c}, 30_000
    Process.exit(holder, :kill)
    assert wait_until(fn -> c.name not in elem(Ampule.list(), 1) end, 10_000)
    assert wait_until(fn -> Ampule.Test.Host.traces_of(c.name) == [] end, 10_000)
  end

  test "a checkout that waits longer than the checkout timeout gives up" do
    # A pool whose containers never become usable: their nodes listen on their loopback
    # only, so the connection that makes them ready never reaches them, and every boot
    # fails. (An `-eval` that sleeps does not hold a node back: init runs it after the
    # node has announced itself, and a lean boot is ready within the 200 ms.)
    pool =
      start_pool(
        size: 1,
        checkout_timeout: 200,
        boot_timeout: 5_000,
        args: ["-kernel", "inet_dist_use_interface", "{127,0,0,1}"]
      )

    assert {:error, :checkout_timeout} = Ampule.Pool.checkout(pool)
  end

  test "reuse: n serves a container n times, then destroys it" do
    pool = start_pool(size: 1, reuse: 2)

    seen =
      for _ <- 1..4 do
        Ampule.Pool.with_container(pool, fn c -> c.name end)
      end

    assert [a, a, b, b] = seen
    assert a != b
  end

  test "options are checked when the pool starts" do
    assert_raise ArgumentError, ~r/:size/, fn ->
      Ampule.Pool.start_link(name: unique(), size: -1)
    end

    assert_raise ArgumentError, ~r/owns its containers/, fn ->
      Ampule.Pool.start_link(name: unique(), owner: self())
    end

    assert_raise ArgumentError, ~r/memory/, fn ->
      Ampule.Pool.start_link(name: unique(), memory: :lots)
    end
  end
end
