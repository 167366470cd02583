defmodule Ampule.HostileKernelCountsTest do
  # Attacks from inside a sandbox on the host's per-user kernel counts (docs/security.md,
  # "Host-wide kernel counts"). The kernel charges inotify instances, fanotify groups,
  # queued signals and POSIX message queue bytes to the caller's user in its user namespace and to every
  # namespace owner above it: a container's namespace is owned by the host's root, so
  # what a sandbox holds is taken from root's share (fs.inotify.max_user_instances and
  # fs.fanotify.max_user_groups, 128 on Debian; RLIMIT_MSGQUEUE, 800 KiB). Each test has
  # a sandbox grab as many as it can and hold them, then checks that this BEAM, as root,
  # can still get one. Without the seccomp policy's refusals the host's call fails (EMFILE).
  #
  # The grab runs in `perl` through `:os.cmd`: the parent makes the objects, forks a child
  # that keeps them (it closes its standard output, so `os:cmd` returns), and prints how
  # many it made and the errno that stopped it. Message queues outlive their maker: they
  # stay in the sandbox's IPC namespace until it is destroyed.
  use ExUnit.Case, async: true

  @moduletag :hostile
  @moduletag :root
  @moduletag :lxc
  @moduletag :x86_64

  @enosys 38
  @eperm 1

  setup do
    c = Ampule.spawn(sandbox: true)
    on_exit(fn -> Ampule.destroy(c) end)
    %{sandbox: c}
  end

  # Makes objects with `make` (Perl code returning a descriptor, or -1) until one fails or
  # 2,000 are made; a child keeps them. Returns {made, errno of the failure}.
  defp grab(c, make) do
    code = """
    use POSIX; my ($n, $e) = (0, 0);
    while ($n < 2000) { my $r = do { #{make} }; if ($r < 0) { $e = $! + 0; last } $n++ }
    if (fork() == 0) { POSIX::close($_) for 0..2; sleep 3600; POSIX::_exit(0) }
    print "$n $e";
    """

    out = {:os, :cmd, [to_charlist("perl -e '#{code}'")]} |> Ampule.call(c) |> to_string()
    [made, errno] = out |> String.split() |> Enum.map(&String.to_integer/1)
    {made, errno}
  end

  # The same call made by this BEAM's user (root) on the host: :ok or {:error, errno}.
  defp host(code) do
    {out, 0} =
      System.cmd("perl", [
        "-e",
        ~s|my $r = do { #{code} }; print(($r < 0) ? "E" . ($! + 0) : "R")|
      ])

    case out do
      "R" -> :ok
      "E" <> errno -> {:error, String.to_integer(errno)}
    end
  end

  test "a sandbox cannot use up the host root's inotify instances", %{sandbox: c} do
    # inotify_init1(0)
    assert grab(c, "syscall(294, 0)") == {0, @enosys}
    assert host("syscall(294, 0)") == :ok
  end

  test "a sandbox cannot use up the host root's fanotify groups", %{sandbox: c} do
    # fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID, O_RDONLY): what an unprivileged
    # process may make.
    assert grab(c, "syscall(300, 0x200, 0)") == {0, @eperm}
    assert host("syscall(300, 0x200, 0)") == :ok
  end

  test "a sandbox cannot use up the host root's message queue bytes", %{sandbox: c} do
    # mq_open(name, O_CREAT | O_RDWR, 0600, NULL): 10 messages of 8 KiB each by default.
    assert grab(c, ~s|my $q = "ampule-$n"; syscall(240, $q, 0x42, 0600, 0)|) == {0, @enosys}

    name = "ampule-host-check-#{System.unique_integer([:positive])}"
    # mq_unlink at once: the queue is the host's, in its IPC namespace.
    assert host(
             ~s|my $q = "#{name}"; my $r = syscall(240, $q, 0x42, 0600, 0); | <>
               ~s|syscall(241, $q) if $r >= 0; $r|
           ) == :ok
  end

  test "a sandbox cannot use up the host root's queued signals", %{sandbox: c} do
    # A child blocks SIGRTMIN and kill()s itself 200,000 times: each queued signal counts
    # against its user in the sandbox's namespace and against root above it. It reports
    # its SigQ line ("queued/limit") through a pipe and keeps its signals pending.
    code = """
    use POSIX; pipe(R, W);
    if (fork() == 0) {
      close(R); sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGRTMIN));
      kill(SIGRTMIN, $$) for 1..200000;
      open(S, "/proc/self/status"); my ($q) = grep { /^SigQ/ } <S>; print W $q; close(W);
      POSIX::close($_) for 0..2; sleep 3600; POSIX::_exit(0)
    }
    close(W); print <R>;
    """

    out = {:os, :cmd, [to_charlist("perl -e '#{code}'")]} |> Ampule.call(c, 60_000) |> to_string()
    assert [_, queued, limit] = Regex.run(~r/SigQ:\s*(\d+)\/(\d+)/, out), out
    assert String.to_integer(limit) == 32
    assert String.to_integer(queued) <= 32

    # tgkill of a blocked real-time signal to itself: queued against root's own limit
    # (a kill() from user space would be queued past it; tgkill is refused at it). The
    # pid as a number (`syscall` passes a string as a pointer).
    assert host(
             "use POSIX; sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGRTMIN)); " <>
               "my $p = syscall(39); syscall(234, $p, $p, SIGRTMIN)"
           ) == :ok
  end
end
