defmodule Ampule.LoadTest do
  # Many containers through one port: what the port holds (file descriptors, memory) and
  # what the machine holds (containers, addresses, veths, cgroups) returns to where it
  # started. Not async: it compares machine-wide counts before and after.
  use ExUnit.Case, async: false

  alias Ampule.Test.Host

  @moduletag :root
  @moduletag :lxc
  @moduletag timeout: 600_000

  # The port's heap may keep a little of what it grew to (allocator caches, tokio's
  # worker buffers); a leak of a few KiB per container would pass 200 containers' worth.
  @rss_slack_kib 3 * 1024

  test "200 anonymous calls in a row, then 20 spawns at once, leak nothing" do
    # Warm up once, so that one-time allocations (thread stacks, caches) are in the base.
    assert Ampule.call({:erlang, :node, []}) |> is_atom()
    before = settled_snapshot(nil)

    results = for i <- 1..200, do: Ampule.call({:erlang, :+, [i, 1]})
    assert results == Enum.map(1..200, &(&1 + 1))
    after_calls = settled_snapshot(before)

    test_process = self()

    containers =
      1..20
      |> Enum.map(fn _ -> Task.async(fn -> Ampule.spawn(owner: test_process) end) end)
      |> Task.await_many(120_000)

    assert length(Enum.uniq_by(containers, & &1.address)) == 20
    up = snapshot()
    assert Enum.all?(containers, &(&1.name in up.containers and &1.address in up.leases))

    assert Enum.map(Ampule.multicall({:erlang, :node, []}, containers, 10_000), &elem(&1, 1)) ==
             Enum.map(containers, & &1.nodename)

    Enum.each(containers, &(:ok = Ampule.destroy(&1)))
    done = settled_snapshot(before)

    IO.puts(
      "\n  port: #{before.fds} fds and #{before.rss_kib} KiB RSS before; " <>
        "#{after_calls.fds} fds, #{after_calls.rss_kib} KiB after 200 calls; " <>
        "#{up.fds} fds, #{up.rss_kib} KiB with 20 up; #{done.fds} fds, #{done.rss_kib} KiB after"
    )

    for s <- [after_calls, done] do
      assert s.fds == before.fds
      assert s.containers == before.containers
      assert s.leases == before.leases
      assert s.veths == before.veths
      assert s.cgroups == before.cgroups
      assert s.rss_kib <= before.rss_kib + @rss_slack_kib
    end
  end

  # `destroy` answers once a container's node is dead; its veth, cgroups and address are
  # released right behind. Count once the releases have finished: back to `base` (the
  # assertions below say what differs if that never happens), or for the base itself,
  # when every lease and every cgroup belongs to a listed container (the tests before
  # this one may still be releasing theirs).
  @settled [:fds, :containers, :leases, :veths, :cgroups]
  defp settled_snapshot(base) do
    Host.wait_until(fn ->
      s = snapshot()

      if base,
        do: Map.take(s, @settled) == Map.take(base, @settled),
        else:
          length(s.leases) == length(s.containers) and
            Enum.all?(s.cgroups, &(cgroup_container(&1) in s.containers))
    end)

    snapshot()
  end

  defp cgroup_container(path) do
    path |> Path.basename() |> String.replace(~r/^lxc\.(payload|monitor)\./, "")
  end

  defp snapshot do
    {:ok, _} = Ampule.Port.hello()
    pid = Ampule.Port.os_pid()
    {:ok, names} = Ampule.list()
    {:ok, fds} = File.ls("/proc/#{pid}/fd")
    [_, rss] = Regex.run(~r/^VmRSS:\s+(\d+) kB/m, File.read!("/proc/#{pid}/status"))

    %{
      fds: length(fds),
      rss_kib: String.to_integer(rss),
      containers: Enum.sort(names),
      leases: Enum.sort(Host.leases()),
      veths: Enum.sort(Host.veths()),
      cgroups: Enum.sort(Host.cgroups())
    }
  end
end
