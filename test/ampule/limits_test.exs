defmodule Ampule.LimitsTest do
  # cgroup limits: the kernel holds what was asked (read back from the cgroup), a container
  # that exceeds one is stopped there, its owner hears why, and the host and the other
  # containers go on. The attacks are tagged :hostile (`mix test --only hostile` runs them
  # with hostile_seccomp_test.exs). See docs/security.md. Each runs for a distribution
  # container and for a sandbox (`sandbox: true`), each with its own kind of bystander.
  use ExUnit.Case, async: true

  alias Ampule.Test.Host

  @moduletag :root
  @moduletag :lxc

  @mib 1024 * 1024

  setup_all do
    %{distribution: Ampule.spawn(), sandbox: Ampule.spawn(sandbox: true)}
  end

  defp alive?(container), do: Ampule.call({:erlang, :+, [1, 1]}, container) == 2

  for kind <- [:distribution, :sandbox] do
    @kind kind
    defp spawn(unquote(kind), opts),
      do: Ampule.spawn([sandbox: unquote(kind) == :sandbox] ++ opts)

    describe "#{kind}" do
      setup context, do: %{bystander: context[@kind], kind: @kind}

      test "the cgroup holds exactly the limits asked for", %{bystander: b, kind: kind} do
        c = spawn(kind, memory: 96 * @mib, pids: 77, cpus: 0.35)

        assert Host.cgroup_limits(c.name) == %{
                 memory: 96 * @mib,
                 pids: 77,
                 cpu: {35_000, 100_000}
               }

        # The defaults: 512 MiB, 512 processes, one CPU.
        assert Host.cgroup_limits(b.name) == %{
                 memory: 512 * @mib,
                 pids: 512,
                 cpu: {100_000, 100_000}
               }

        # Open files, soft and hard: 65,536, or the port's hard limit where root cannot
        # raise it (this BEAM's, which the port inherits), whatever the soft limit was.
        files = min(65_536, Host.hard_open_files())

        assert Ampule.call({:os, :cmd, [~c"ulimit -Sn; ulimit -Hn"]}, b) ==
                 ~c"#{files}\n#{files}\n"

        # Two CPUs' worth is a quota of two periods a period.
        two = spawn(kind, cpus: 2)
        assert Host.cgroup_limits(two.name).cpu == {200_000, 100_000}

        # No quota at all.
        free = spawn(kind, cpus: :infinity)
        assert Host.cgroup_limits(free.name).cpu == {:max, 100_000}

        for container <- [c, two, free], do: :ok = Ampule.destroy(container)
      end

      @tag :hostile
      test "a container over its memory limit is killed; its owner hears :oom",
           %{bystander: b, kind: kind} do
        c = spawn(kind, memory: 128 * @mib)
        # Well under the limit: fine.
        assert Ampule.call({:binary, :copy, [<<0>>, 16 * @mib]}, c) |> byte_size() == 16 * @mib

        error =
          assert_raise Ampule.Error, fn ->
            Ampule.call({:binary, :copy, [<<0>>, 400 * @mib]}, c, 10_000)
          end

        # Over distribution the node is simply gone; a sandbox's channel hears why.
        assert error.reason == if(kind == :sandbox, do: :oom, else: :noconnection)
        assert_receive {:ampule_exit, %Ampule.Container{name: name}, :oom}, 5_000
        assert name == c.name
        # Told as soon as the node is gone; its release follows.
        assert Host.wait_until(fn -> Host.traces_of(c.name) == [] end, Host.release_bound_ms())
        assert alive?(b)
      end

      @tag :hostile
      test "an anonymous call over its memory limit raises :oom and leaves nothing",
           %{bystander: b, kind: kind} do
        name = "oom-#{System.unique_integer([:positive])}"

        error =
          assert_raise Ampule.Error, fn ->
            Ampule.call({:binary, :copy, [<<0>>, 400 * @mib]},
              name: name,
              memory: 128 * @mib,
              timeout: 10_000,
              sandbox: kind == :sandbox
            )
          end

        assert error.reason == :oom
        assert Exception.message(error) =~ "memory limit"
        assert Host.wait_until(fn -> Host.traces_of(name) == [] end, Host.release_bound_ms())
        assert alive?(b)
      end

      # The classic bomb, detached so that the call returns while it runs.
      @fork_bomb ~c"sh -c 'f() { f | f & }; f' >/dev/null 2>&1 &"

      @tag :hostile
      test "a fork bomb stops at the process limit; the host and the others go on",
           %{bystander: b, kind: kind} do
        c = spawn(kind, pids: 100)
        pids_dir = Host.cgroup_dir(c.name, "pids")
        assert Host.cgroup_limits(c.name).pids == 100

        :ok = Ampule.cast({:os, :cmd, [@fork_bomb]}, c)

        assert Host.wait_until(
                 fn -> pids_events_max(pids_dir) > 0 end,
                 10_000
               ),
               "the bomb reaches the limit"

        current = pids_dir |> Path.join("pids.current") |> File.read!() |> String.trim()
        assert String.to_integer(current) <= 100
        # The host forks, the bystander answers, and so does the bombed node itself (it needs
        # no new process to do so).
        assert {_, 0} = System.cmd("true", [])
        assert alive?(b)
        assert alive?(c)

        :ok = Ampule.destroy(c)
        assert Host.wait_until(fn -> Host.traces_of(c.name) == [] end, 2_000)
      end

      @tag :hostile
      test "a fork bomb's CPU stays within the default quota of one CPU",
           %{bystander: b, kind: kind} do
        c = spawn(kind, [])
        assert Host.cgroup_limits(c.name).cpu == {100_000, 100_000}
        throttled = Host.cpu_throttled(c.name)

        :ok = Ampule.cast({:os, :cmd, [@fork_bomb]}, c)
        # Throttled: the bomb wants more than the quota (unlimited, it takes every CPU).
        assert Host.wait_until(fn -> Host.cpu_throttled(c.name) > throttled end, 10_000)

        {t0, used0, throttled0} = cpu_sample(c)
        # Not a wait for an event: the window the CPU time is measured over.
        Process.sleep(2_000)
        {t1, used1, throttled1} = cpu_sample(c)

        cpus = (used1 - used0) / (t1 - t0)
        assert throttled1 > throttled0, "the bomb still wanted more than the quota"
        # At most one CPU; 10 % for the periods at either end of the window.
        assert cpus <= 1.1, "the bomb used #{Float.round(cpus, 2)} CPUs"
        assert alive?(b)

        :ok = Ampule.destroy(c)
        assert Host.wait_until(fn -> Host.traces_of(c.name) == [] end, 2_000)
      end

      test "a CPU quota caps the CPU time a busy container gets", %{kind: kind} do
        # A boot under a fifth of a CPU takes five times its CPU time: on a slow host (an
        # emulated VM: ~26 s) that is past the default boot timeout.
        c = spawn(kind, cpus: 0.2, boot_timeout: 120_000)
        assert Host.cgroup_limits(c.name).cpu == {20_000, 100_000}

        started = System.monotonic_time(:millisecond)
        before = Host.cpu_usage_us(c.name)
        # One second of wall time spinning on one scheduler.
        spun = Ampule.call({Ampule.RemoteHelpers, :spin, [1_000]}, c, 60_000)
        used_ms = div(Host.cpu_usage_us(c.name) - before, 1_000)
        wall_ms = System.monotonic_time(:millisecond) - started

        assert spun >= 1_000
        # 20 % of one CPU over the call, ~1 s here, is ~200 ms; unthrottled the spin alone
        # would take ~1,000 ms. Against the whole call's wall time, not the spin's: the
        # call itself (loading the helper module, on a slow host seconds) is throttled too.
        assert used_ms < wall_ms / 2, "used #{used_ms} ms of CPU in #{wall_ms} ms (spun #{spun})"
        :ok = Ampule.destroy(c)
      end
    end
  end

  defp cpu_sample(c) do
    {System.monotonic_time(:microsecond), Host.cpu_usage_us(c.name), Host.cpu_throttled(c.name)}
  end

  defp pids_events_max(dir) do
    case File.read(Path.join(dir, "pids.events")) do
      {:ok, "max " <> n} -> n |> String.trim() |> String.to_integer()
      _ -> 0
    end
  end
end
