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

  test "mix ampule.check names a missing tool a template runs, with its package" do
    assert {:ok, "tools", found, nil} = Mix.Tasks.Ampule.Check.tools()
    assert found =~ "rsync"

    assert {:missing, "tools", "not found: rsync", "apt-get install rsync"} =
             Mix.Tasks.Ampule.Check.tools(&(&1 != "rsync"))
  end

  test "mix ampule.check names the apparmor package on a kernel that enforces AppArmor" do
    alias Mix.Tasks.Ampule.Check
    # This host, whatever it is: nothing missing (the suite's containers start).
    assert {:ok, "apparmor", _, nil} = Check.apparmor()

    # A stock Debian 12 kernel without the apparmor package: every start would fail.
    assert {:missing, "apparmor", detail, "apt-get install apparmor"} =
             Check.apparmor(%{enabled: true, parser: nil, profiles: []})

    assert detail =~ "Failed to write AppArmor profile lxc-container-default-cgns"

    parser = "/usr/sbin/apparmor_parser"

    assert {:missing, "apparmor", detail, fix} =
             Check.apparmor(%{enabled: true, parser: parser, profiles: ["unconfined"]})

    assert detail =~ "lxc-container-default-cgns is not loaded"
    assert fix =~ "apparmor_parser --replace /etc/apparmor.d/lxc-containers"

    profiles = ["lxc-container-default", "lxc-container-default-cgns"]

    assert {:ok, "apparmor", _, nil} =
             Check.apparmor(%{enabled: true, parser: parser, profiles: profiles})

    assert {:ok, "apparmor", "not enabled" <> _, nil} =
             Check.apparmor(%{enabled: false, parser: nil, profiles: nil})
  end

  test "mix ampule.check names a code path the containers' root cannot reach" do
    alias Mix.Tasks.Ampule.Check
    # This host: the suite's own build is reachable (its containers start).
    assert {:ok, "code paths", _, nil} = Check.code_paths()

    # A project cloned into root's home on a stock Debian 12 (/root is 0700).
    paths = ["/root/app/_build/dev", "/root/app/_build/dev/lib/app/ebin", "/srv/lib/ebin"]
    reachable? = &(not String.starts_with?(&1, "/root"))

    assert {:missing, "code paths", detail, fix} = Check.code_paths(paths, 1_000_000, reachable?)

    assert detail =~ "uid 1000000) cannot search /root, so liblxc cannot bind-mount"
    assert detail =~ "/root/app/_build/dev (and 1 more)"
    assert fix =~ "setfacl -m u:1000000:x /root"

    # The real probe, as the containers' root: a directory of mode 0700 stops it.
    dir = Path.join(System.tmp_dir!(), "ampule_check_#{System.unique_integer([:positive])}")
    File.mkdir_p!(Path.join(dir, "ebin"))

    try do
      File.chmod!(dir, 0o755)
      assert {:ok, "code paths", _, nil} = Check.code_paths([Path.join(dir, "ebin")], 1_000_000)
      File.chmod!(dir, 0o700)

      assert {:missing, "code paths", detail, _} =
               Check.code_paths([Path.join(dir, "ebin")], 1_000_000)

      assert detail =~ "cannot search #{dir},"
    after
      File.rm_rf!(dir)
    end
  end

  test "the port compiler does nothing when the port is up to date" do
    # The suite was compiled just now, so priv/ampule_port is newer than native/.
    assert {:noop, []} = Mix.Tasks.Compile.AmpulePort.run([])
    assert File.regular?(Mix.Tasks.Compile.AmpulePort.dest())
  end

  test "a prebuilt port from AMPULE_PORT_PATH is replaced by a source build once unset" do
    alias Mix.Tasks.Compile.AmpulePort
    built = File.read!(AmpulePort.dest())
    # A stand-in "prebuilt" binary, newer than every source file, as a real one would be.
    prebuilt = Path.join(System.tmp_dir!(), "ampule_port_prebuilt_#{System.os_time()}")
    File.write!(prebuilt, built <> "prebuilt")
    File.chmod!(prebuilt, 0o755)

    try do
      System.put_env("AMPULE_PORT_PATH", prebuilt)
      capture_io(fn -> assert {:ok, []} = AmpulePort.run([]) end)
      assert File.read!(AmpulePort.dest()) == built <> "prebuilt"
      System.delete_env("AMPULE_PORT_PATH")
      # Newer than the sources, but not built from them: rebuilt (cargo has nothing to do).
      capture_io(fn -> assert {:ok, []} = AmpulePort.run([]) end)
      assert File.read!(AmpulePort.dest()) == built
      assert {:noop, []} = AmpulePort.run([])
    after
      System.delete_env("AMPULE_PORT_PATH")
      File.rm(prebuilt)
    end
  end
end
