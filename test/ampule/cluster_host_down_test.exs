defmodule Ampule.ClusterHostDownTest do
  # One host's BEAM killed with SIGKILL, with work of every kind on it: calls in flight to
  # a sandbox and to a distribution container, a container held out of a pool, a caller
  # waiting for a pool's boot there, containers owned from here. Everyone elsewhere hears
  # {:host_down, node} within a second; its port destroys its containers; the pool goes
  # on with the other hosts; nothing is left anywhere. A lab of its own: the host dies.
  use ExUnit.Case, async: false

  import Ampule.Test.Host, only: [wait_until: 2]

  alias Ampule.Test.ClusterLab
  alias Ampule.Cluster

  @moduletag :root
  @moduletag :lxc

  test "SIGKILL of a host's BEAM: typed errors within a second, its containers gone, the pool serves on" do
    lab = ClusterLab.start(3)
    on_exit(fn -> ClusterLab.stop(lab) end)
    [h1, h2, h3] = hosts = ClusterLab.nodes(lab)
    assert wait_until(fn -> hosts -- Enum.map(Cluster.hosts(), & &1.node) == [] end, 10_000)

    pool = :"down_pool_#{System.unique_integer([:positive])}"

    start_supervised!(
      {Ampule.Pool, name: pool, size: 6, sandbox: true, hosts: hosts, checkout_timeout: 60_000}
    )

    assert wait_until(fn -> Ampule.Pool.stats(pool).hosts == Map.new(hosts, &{&1, 2}) end, 60_000)

    # Owned from here, on h1: a sandbox and a distribution container, each with a call in
    # flight.
    s = Ampule.spawn(sandbox: true, on: h1)
    d = Ampule.spawn(on: h1)
    s_call = sleeping_call(s)
    d_call = sleeping_call(d)

    # Held out of the pool: one of its containers on h1.
    held = checkout_on(pool, h1)

    # A caller waiting for a boot on h1: a pool that boots only there, whose boot is held
    # up in h1's port (suspended), so that it is under way when h1 dies.
    waiter_pool = :"down_waiter_#{System.unique_integer([:positive])}"

    start_supervised!(
      {Ampule.Pool,
       name: waiter_pool,
       size: 0,
       max_overflow: 1,
       sandbox: true,
       hosts: [h1],
       checkout_timeout: 30_000},
      id: :waiter
    )

    port_pid = :erpc.call(h1, Ampule.Port, :os_pid, [])
    :ok = :erpc.call(h1, :sys, :suspend, [Ampule.Port])
    waiter = Task.async(fn -> Ampule.Pool.checkout(waiter_pool) end)
    assert wait_until(fn -> Ampule.Pool.stats(waiter_pool).booting == 1 end, 5_000)

    pool_idle_h1 = idle_on(pool, h1)
    names = [s.name, d.name, held.name | Enum.map(pool_idle_h1, & &1.name)]
    assert ClusterLab.cgroups_of(names) != []

    killed_at = System.monotonic_time(:millisecond)
    ClusterLab.kill(lab, 1)
    waited = fn task -> Task.await(task, 1_000) end

    assert waited.(s_call) == {:error, {:host_down, h1}}
    assert waited.(d_call) == {:error, {:host_down, h1}}
    assert waited.(waiter) == {:error, {:host_down, h1}}
    assert_receive {:ampule_exit, %{name: name_s}, {:host_down, ^h1}}, 1_000
    assert_receive {:ampule_exit, %{name: name_d}, {:host_down, ^h1}}, 1_000
    assert_receive {:ampule_exit, %{name: name_held}, {:host_down, ^h1}}, 1_000
    assert Enum.sort([name_s, name_d, name_held]) == Enum.sort([s.name, d.name, held.name])
    elapsed = System.monotonic_time(:millisecond) - killed_at
    assert elapsed < 1_000

    # New calls to what was there fail the same way, at once.
    assert Ampule.yield(Ampule.async_call({:erlang, :+, [1, 1]}, s), 1_000) ==
             {:error, {:host_down, h1}}

    assert Ampule.yield(Ampule.async_call({:erlang, :+, [1, 1]}, d), 1_000) ==
             {:error, {:host_down, h1}}

    # h1 is no longer a host; the pool dropped what it had there.
    refute Cluster.host?(h1)
    assert wait_until(fn -> idle_on(pool, h1) == [] end, 1_000)

    # Its port destroyed every container it had, then exited.
    assert wait_until(
             fn -> ClusterLab.cgroups_of(names) == [] and ClusterLab.exited?(port_pid) end,
             10_000
           ),
           "left: #{inspect(ClusterLab.cgroups_of(names))}"

    # The pool serves on, from h2 and h3.
    Ampule.Pool.checkin(pool, held)

    results =
      1..8
      |> Enum.map(fn i -> Task.async(fn -> Ampule.call({:erlang, :*, [i, 2]}, pool: pool) end) end)
      |> Task.await_many(60_000)

    assert results == Enum.map(1..8, &(&1 * 2))
    assert wait_until(fn -> Ampule.Pool.stats(pool).idle == 6 end, 60_000)
    assert Map.keys(Ampule.Pool.stats(pool).hosts) |> Enum.sort() == Enum.sort([h2, h3])

    IO.puts("\n  host killed: every caller elsewhere had {:host_down, node} #{elapsed} ms after")

    # Nothing left anywhere, once the lab is gone.
    stop_supervised!(pool)
    stop_supervised!(:waiter)
    ClusterLab.stop(lab)
    assert ClusterLab.cgroups_of(names) == []
    assert ClusterLab.links() == []
    assert ClusterLab.state_dirs() == []
  end

  defp idle_on(pool, host) do
    :sys.get_state(pool).idle |> :queue.to_list() |> Enum.filter(&(&1.host == host))
  end

  # Checks out containers until one is on `host`; gives the others back.
  defp checkout_on(pool, host, others \\ []) do
    {:ok, c} = Ampule.Pool.checkout(pool)

    if c.host == host do
      Enum.each(others, &Ampule.Pool.checkin(pool, &1))
      c
    else
      checkout_on(pool, host, [c | others])
    end
  end

  # A call that sleeps in container `c`, running there when this returns.
  defp sleeping_call(c) do
    name = :"sleeper_#{System.unique_integer([:positive])}"
    sleep = {Ampule.RemoteHelpers, :register_and_sleep, [name, 60_000]}
    task = Task.async(fn -> Ampule.yield(Ampule.async_call(sleep, c), 30_000) end)
    assert wait_until(fn -> name in Ampule.call({Process, :registered, []}, c) end, 10_000)
    task
  end
end
