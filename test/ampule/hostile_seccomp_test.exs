defmodule Ampule.HostileSeccompTest do
  # Attacks from inside a real container on the kernel interfaces Ampule's seccomp policy
  # refuses (docs/security.md, "System calls"). Each is made twice: in a container with
  # the default policy, where it must fail with the policy's errno, and in one with
  # `seccomp: false`, where the same call reaches the kernel (it succeeds, or fails for
  # another reason). So a pass proves the policy, not a capability the node lacks anyway.
  #
  # The calls are made with the host's /usr/bin/perl (`syscall`, x86_64 numbers) and
  # /usr/bin/unshare, through `:os.cmd`, as the node's unprivileged user.
  use ExUnit.Case, async: true

  @moduletag :hostile
  @moduletag :root
  @moduletag :lxc
  @moduletag :x86_64

  @eperm 1
  @enosys 38

  setup_all do
    %{guarded: Ampule.spawn(), open: Ampule.spawn(seccomp: false)}
  end

  defp sh(container, command),
    do: {:os, :cmd, [to_charlist(command)]} |> Ampule.call(container) |> to_string()

  # Runs `perl` code whose last expression is a syscall's return value: `{:ok, value}`, or
  # `{:error, errno}` when it returned -1.
  defp perl(container, code) do
    out =
      sh(container, ~s|perl -e '$r = do { #{code} }; print(($r == -1) ? "E" . ($! + 0) : "R$r")'|)

    case out do
      "E" <> errno -> {:error, String.to_integer(errno)}
      "R" <> value -> {:ok, String.to_integer(value)}
    end
  end

  # {name, Perl code making the call, the errno the policy answers with}. Without the
  # policy each call gets past the filter's errno: it returns, or the kernel refuses the
  # bad argument it was given (EFAULT, EINVAL, E2BIG, EBADF) before any permission check.
  @calls [
    {"io_uring_setup", "syscall(425, 1, 0)", @eperm},
    {"add_key", ~s|my ($t, $d, $p) = ("user", "ampule", "x"); syscall(248, $t, $d, $p, 1, -2)|,
     @eperm},
    {"keyctl", "syscall(250, 0, -2, 1)", @eperm},
    {"bpf", ~s|my $a = "\\0" x 8192; syscall(321, 0, $a, 8192)|, @eperm},
    {"perf_event_open", "syscall(298, 0, 0, -1, -1, 0)", @eperm},
    {"userfaultfd", "syscall(323, 1)", @eperm},
    {"setns", "syscall(308, -1, 0)", @eperm},
    {"mount", "syscall(165, 1, 1, 1, 0, 0)", @eperm},
    {"unshare(CLONE_NEWUSER)", "syscall(272, 0x10000000)", @eperm},
    {"clone3", "syscall(435, 0, 0)", @enosys},
    {"socket(AF_VSOCK)", "syscall(41, 40, 1, 0)", @eperm}
  ]

  # Before Linux 6.5, a kernel with kernel.unprivileged_bpf_disabled set (Debian 12's 6.1
  # sets 2) refuses every unprivileged bpf() with EPERM before it reads the arguments: the
  # same errno as the policy's, with or without it. There the policy is a second wall that
  # no errno can show, and the open container gets the kernel's own EPERM.
  defp kernel_refuses_bpf? do
    {major, minor} =
      case :os.version() do
        {major, minor, _} -> {major, minor}
      end

    File.read!("/proc/sys/kernel/unprivileged_bpf_disabled") |> String.trim() != "0" and
      {major, minor} < {6, 5}
  end

  for {name, code, errno} <- @calls do
    test "#{name} is refused with errno #{errno}; without the policy it reaches the kernel",
         %{guarded: guarded, open: open} do
      assert perl(guarded, unquote(code)) == {:error, unquote(errno)}

      if unquote(name) == "bpf" and kernel_refuses_bpf?() do
        assert perl(open, unquote(code)) == {:error, unquote(errno)}
      else
        refute perl(open, unquote(code)) == {:error, unquote(errno)}
      end
    end
  end

  test "clone(CLONE_NEWUSER) is refused; without the policy the child is made",
       %{guarded: guarded, open: open} do
    # A raw clone is a fork: the child (0) exits at once, the parent reaps it.
    code =
      "use POSIX; my $r = syscall(56, 0x10000000 | 17, 0, 0, 0, 0); " <>
        "POSIX::_exit(0) if $r == 0; waitpid($r, 0) if $r > 0; $r"

    assert perl(guarded, code) == {:error, @eperm}
    assert {:ok, pid} = perl(open, code)
    assert pid > 0
  end

  test "`unshare -U` fails; without the policy it gives a namespace with every capability",
       %{guarded: guarded, open: open} do
    caps = "unshare -Ur sh -c 'grep CapEff /proc/self/status' 2>&1; echo status=$?"

    assert sh(guarded, "unshare -U true 2>&1; echo status=$?") =~
             ~r/Operation not permitted\nstatus=1\n$/

    assert sh(guarded, caps) =~ "status=1"
    # The attack as reported: a child namespace with every capability (CapEff
    # 000001ffffffffff), CAP_SYS_ADMIN (bit 21) among them, so it can mount.
    [_, hex] = Regex.run(~r/CapEff:\s+([0-9a-f]+)\nstatus=0/, sh(open, caps))
    assert Bitwise.band(String.to_integer(hex, 16), Bitwise.bsl(1, 21)) != 0
  end

  test "the node runs under a seccomp filter; seccomp: false runs it under none",
       %{guarded: guarded, open: open} do
    assert sh(guarded, "grep Seccomp: /proc/self/status") =~ ~r/Seccomp:\s+2/
    assert sh(open, "grep Seccomp: /proc/self/status") =~ ~r/Seccomp:\s+0/
  end

  test "seccomp: :lxc loads LXC's short list only, which lets a user namespace be made" do
    c = Ampule.spawn(seccomp: :lxc)
    assert sh(c, "grep Seccomp: /proc/self/status") =~ ~r/Seccomp:\s+2/
    assert sh(c, "unshare -U true 2>&1; echo status=$?") == "status=0\n"
    assert {:ok, _serial} = perl(c, "syscall(250, 0, -2, 1)")
    :ok = Ampule.destroy(c)
  end

  test "seccomp: a profile file of one's own is the one loaded" do
    path = Path.join(System.tmp_dir!(), "ampule-#{System.unique_integer([:positive])}.seccomp")
    # keyctl answers EOPNOTSUPP (95), an errno no policy of Ampule's uses.
    File.write!(path, "2\ndenylist\n[all]\nkeyctl errno 95\n")

    try do
      c = Ampule.spawn(seccomp: path)
      assert perl(c, "syscall(250, 0, -2, 1)") == {:error, 95}
      # Only what the file says: io_uring_setup gets past it (to EFAULT for its NULL).
      refute perl(c, "syscall(425, 1, 0)") == {:error, @eperm}
      :ok = Ampule.destroy(c)
    after
      File.rm!(path)
    end
  end
end
