defmodule Ampule.MixTasksTest do
  # Not async: MixDependencyTest makes the port look stale for a moment.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  @moduletag :root

  test "mix ampule.check: this host (root, liblxc, subuid, cgroups) can run containers" do
    output = capture_io(fn -> Mix.Tasks.Ampule.Check.run([]) end)
    refute output =~ "MISSING", output
    assert output =~ "can run Ampule's containers"

    for {status, what, _detail, _fix} <- Mix.Tasks.Ampule.Check.checks() do
      assert status in [:ok, :note], what
    end
  end

  test "the port compiler does nothing when the port is up to date" do
    # The suite was compiled just now, so priv/ampule_port is newer than native/.
    assert {:noop, []} = Mix.Tasks.Compile.AmpulePort.run([])
    assert File.regular?(Mix.Tasks.Compile.AmpulePort.dest())
  end
end
