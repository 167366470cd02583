defmodule Ampule.HostileFilesTest do
  # Attacks on the root port through files a container controls: its home is the
  # container's to fill with links, FIFOs and lies. The port must never follow a link,
  # block, read without bound or believe what it reads there (docs/security.md).
  use ExUnit.Case, async: true

  import Ampule.Test.Host, only: [wait_until: 2]

  @moduletag :root
  @moduletag :lxc
  @moduletag :hostile

  defp sh!(container, script) do
    Ampule.call({:os, :cmd, [String.to_charlist(script)]}, container, 10_000)
  end

  # Halts the container's node with `status`, from inside.
  defp halt(container, status) do
    Node.spawn(container.nodename, :erlang, :halt, [status])
  end

  # Boot arguments that run `eval` in a node that never becomes ready (it does not listen
  # for distribution), so that its exit is a failed boot.
  defp failing_boot(eval), do: ["-dist_listen", "false", "-eval", eval]

  defp port_rss_kib do
    {:ok, _} = Ampule.Port.hello()
    pid = Ampule.Port.os_pid()
    [_, rss] = Regex.run(~r/^VmRSS:\s+(\d+) kB/m, File.read!("/proc/#{pid}/status"))
    String.to_integer(rss)
  end

  # The port answers a request, and can still make a container, within seconds.
  defp assert_port_serves do
    {time_us, {:ok, _}} = :timer.tc(fn -> Ampule.list() end)
    assert time_us < 1_000_000
    other = Ampule.spawn(boot_timeout: 10_000)
    assert Ampule.call({:erlang, :node, []}, other) == other.nodename
    :ok = Ampule.destroy(other)
  end

  test "a status forged in ~/exit_status is not believed: the owner hears the kernel's" do
    c = Ampule.spawn()
    sh!(c, "echo 7 > $HOME/exit_status")
    halt(c, 3)
    assert_receive {:ampule_exit, ^c, 3}, 10_000
  end

  test "~/exit_status linked to a FIFO the container made: the port does not freeze" do
    c = Ampule.spawn()
    sh!(c, "cd $HOME && mkfifo fifo && ln -sf $HOME/fifo exit_status && ln -sf fifo boot.log")
    halt(c, 4)
    assert_receive {:ampule_exit, ^c, 4}, 10_000
    assert_port_serves()
  end

  test "~/exit_status linked to /dev/zero: the port does not grow" do
    before = port_rss_kib()
    c = Ampule.spawn()
    sh!(c, "cd $HOME && ln -sf /dev/zero exit_status && ln -sf /dev/zero boot.log")
    halt(c, 0)
    assert_receive {:ampule_exit, ^c, 0}, 10_000
    assert_port_serves()
    # A read of /dev/zero grew the port by ~1.5 GB/s; a few MiB cover its normal churn.
    assert port_rss_kib() - before < 4 * 1024
  end

  test "a boot.log linked to a host file is not read into the error" do
    # Code that runs while the node boots (an -eval here; a library's start would do)
    # replaces its log with a link to the host's /etc/shadow, then fails the boot.
    eval = ~s|os:cmd("ln -sf /etc/shadow boot.log"), erlang:halt(5).|

    assert {:error, {:boot_failed, 5, tail}} = Ampule.start(args: failing_boot(eval))
    refute tail =~ "root:"
    assert tail =~ "not read"
  end

  test "a boot.log replaced by a FIFO does not hold the failed boot's answer" do
    eval = ~s|os:cmd("rm -f boot.log; mkfifo boot.log"), erlang:halt(6).|
    {time_us, result} = :timer.tc(fn -> Ampule.start(args: failing_boot(eval)) end)
    assert {:error, {:boot_failed, 6, _tail}} = result
    assert time_us < 10_000_000
    assert_port_serves()
  end

  describe "links to the host in a container's files" do
    setup do
      victim = Path.join(System.tmp_dir!(), "ampule-victim-#{System.unique_integer([:positive])}")
      File.mkdir_p!(Path.join(victim, "dir"))
      File.write!(Path.join([victim, "dir", "keep"]), "host data")
      File.write!(Path.join(victim, "file"), "host file")
      on_exit(fn -> File.rm_rf!(victim) end)
      %{victim: victim}
    end

    test "destroying an application container removes the links, never their targets",
         %{victim: victim} do
      c = Ampule.spawn()

      sh!(c, """
      cd $HOME && ln -s #{victim}/dir dirlink && ln -s #{victim}/file filelink &&
      mkdir -p nest/deeper && ln -s #{victim} nest/deeper/up && ln -s / rootlink
      """)

      assert sh!(c, "ls $HOME") |> to_string() =~ "dirlink"
      :ok = Ampule.destroy(c)

      assert wait_until(
               fn -> Ampule.Test.Host.traces_of(c.name) == [] end,
               Ampule.Test.Host.release_bound_ms()
             )

      assert File.read!(Path.join([victim, "dir", "keep"])) == "host data"
      assert File.read!(Path.join(victim, "file")) == "host file"
    end
  end

  describe "a tree deeper than PATH_MAX (issue 19)" do
    # 25 nested directories of 200 characters in the sandbox's home (5 KB of path) and a
    # file in the deepest: the node reaches each level by chdir, as a full path fails. It
    # answers its container's name (the host name).
    # Sent as parsed expressions for erl_eval, so that nothing of this module need exist in
    # the sandbox.
    @deep_tree ~S"""
    ok = file:set_cwd(os:getenv("HOME")),
    N = lists:duplicate(200, $d),
    [ok = begin ok = file:make_dir(N), file:set_cwd(N) end || _ <- lists:seq(1, 25)],
    ok = file:write_file("deepest", <<"x">>),
    {ok, Name} = inet:gethostname(),
    Name.
    """

    defp deep_tree_call do
      {:ok, tokens, _} = :erl_scan.string(String.to_charlist(@deep_tree))
      {:ok, exprs} = :erl_parse.parse_exprs(tokens)
      {:erl_eval, :exprs, [exprs, []]}
    end

    test "a pooled sandbox call that makes one leaves nothing under STATE/apps" do
      pool = :"pool_deep_#{System.unique_integer([:positive])}"
      start_supervised!({Ampule.Pool, name: pool, size: 1, sandbox: true})
      apps = Path.join(Ampule.Test.Host.state_dir(), "apps")

      assert {:value, name, _} = Ampule.call(deep_tree_call(), pool: pool, timeout: 20_000)
      serving = to_string(name)
      assert String.starts_with?(serving, "x-")

      assert wait_until(
               fn -> Ampule.Test.Host.traces_of(serving) == [] end,
               Ampule.Test.Host.release_bound_ms()
             )

      refute File.exists?(Path.join(apps, serving))
    end
  end
end
