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

  test "AMPULE_PORT_PATH must name a port program: it is asked, and anything else refused" do
    alias Mix.Tasks.Compile.AmpulePort
    assert AmpulePort.not_a_port(AmpulePort.dest()) == nil
    assert AmpulePort.not_a_port("/etc/passwd") =~ "cannot be run"
    assert AmpulePort.not_a_port("/bin/true") =~ "exited (0) without a frame"

    try do
      System.put_env("AMPULE_PORT_PATH", "/etc/passwd")
      before = File.read!(AmpulePort.dest())

      out = capture_io(:stderr, fn -> assert {:error, [_diagnostic]} = AmpulePort.run([]) end)
      assert out =~ "not an ampule_port: it cannot be run"

      assert File.read!(AmpulePort.dest()) == before
    after
      System.delete_env("AMPULE_PORT_PATH")
    end
  end

  # Here because it changes PATH, which async tests would see.
  test "sudo: true without sudo names sudo, not the port" do
    path = System.get_env("PATH")
    name = :"sudo_port_#{System.unique_integer([:positive])}"

    try do
      System.put_env("PATH", "/nonexistent")
      {:ok, pid} = Ampule.Port.start_link(name: name, sudo: true)
      assert {:error, {:sudo_not_found, _} = reason} = Ampule.Port.request(name, :list)
      assert Ampule.format_error(reason) =~ "apt-get install sudo"
      GenServer.stop(pid)
    after
      System.put_env("PATH", path)
    end
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

  test "mix ampule.check: a code path others cannot search is staged; one they cannot read fails" do
    alias Mix.Tasks.Ampule.Check
    # This host: the suite's own build is readable (its containers start).
    assert {status, "code paths", _, nil} = Check.code_paths()
    assert status in [:ok, :note]

    dir = Path.join(System.tmp_dir!(), "ampule_check_#{System.unique_integer([:positive])}")
    ebin = Path.join(dir, "ebin")
    File.mkdir_p!(ebin)
    File.write!(Path.join(ebin, "m.beam"), "")

    try do
      File.chmod!(dir, 0o755)
      assert {:ok, "code paths", _, nil} = Check.code_paths([ebin])
      # A project in /root (0700): the port stages it, so it works, and the check says so.
      File.chmod!(dir, 0o700)
      assert {:note, "code paths", detail, nil} = Check.code_paths([ebin])
      assert detail =~ "below #{dir}, which others may not search: the port stages it"
      # Code the containers' unprivileged id cannot read cannot work anywhere.
      File.chmod!(Path.join(ebin, "m.beam"), 0o600)
      assert {:missing, "code paths", detail, fix} = Check.code_paths([ebin])
      assert detail =~ "cannot read #{ebin}"
      assert fix == "chmod -R o+rX #{ebin}"
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
