defmodule Ampule.LimitsTest do
  # cgroup limits: a container that exceeds one is stopped there, its owner hears why, and
  # the host and the other containers go on. See docs/security.md.
  use ExUnit.Case, async: true

  alias Ampule.Test.Host

  @moduletag :root
  @moduletag :lxc

  @mib 1024 * 1024

  setup_all do
    %{bystander: Ampule.spawn()}
  end

  defp alive?(container), do: Ampule.call({:erlang, :node, []}, container) == container.nodename

  test "a container over its memory limit is killed; its owner hears :oom", %{bystander: b} do
    c = Ampule.spawn(memory: 128 * @mib)
    # Well under the limit: fine.
    assert Ampule.call({:binary, :copy, [<<0>>, 16 * @mib]}, c) |> byte_size() == 16 * @mib

    error =
      assert_raise Ampule.Error, fn ->
        Ampule.call({:binary, :copy, [<<0>>, 400 * @mib]}, c, 10_000)
      end

    assert error.reason == :noconnection
    assert_receive {:ampule_exit, %Ampule.Container{name: name}, :oom}, 5_000
    assert name == c.name
    assert Host.traces_of(c.name) == []
    assert alive?(b)
  end

  test "an anonymous call over its memory limit raises :oom and leaves nothing",
       %{bystander: b} do
    name = "oom-#{System.unique_integer([:positive])}"

    error =
      assert_raise Ampule.Error, fn ->
        Ampule.call({:binary, :copy, [<<0>>, 400 * @mib]},
          name: name,
          memory: 128 * @mib,
          timeout: 10_000
        )
      end

    assert error.reason == :oom
    assert Exception.message(error) =~ "memory limit"
    assert Host.traces_of(name) == []
    assert alive?(b)
  end

  test "a fork bomb stops at the process limit; the host and the others go on",
       %{bystander: b} do
    c = Ampule.spawn(pids: 100)
    pids_dir = Host.cgroup_dir(c.name, "pids")
    assert File.read!(Path.join(pids_dir, "pids.max")) == "100\n"

    # The classic bomb, detached so that the call returns while it runs.
    :ok = Ampule.cast({:os, :cmd, [~c"sh -c 'f() { f | f & }; f' >/dev/null 2>&1 &"]}, c)

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

  test "a CPU quota caps the CPU time a busy container gets" do
    c = Ampule.spawn(cpus: 0.2)
    assert Host.cpu_quota(c.name) == {20_000, 100_000}

    before = Host.cpu_usage_us(c.name)
    # One second of wall time spinning on one scheduler.
    spun = Ampule.call({Ampule.RemoteHelpers, :spin, [1_000]}, c, 10_000)
    used_ms = div(Host.cpu_usage_us(c.name) - before, 1_000)

    assert spun >= 1_000
    # 20 % of one CPU over ~1 s is ~200 ms; unthrottled it would be ~1,000 ms.
    assert used_ms < 500, "used #{used_ms} ms of CPU in #{spun} ms"
    :ok = Ampule.destroy(c)
  end

  defp pids_events_max(dir) do
    case File.read(Path.join(dir, "pids.events")) do
      {:ok, "max " <> n} -> n |> String.trim() |> String.to_integer()
      _ -> 0
    end
  end
end
