defmodule Ampule.HostileSeccompTest do
  # Attacks from inside a real container on the kernel interfaces Ampule's seccomp policy
  # refuses (docs/security.md, "System calls"). Each is made twice: in a container with
  # the default policy, where it must fail with the policy's errno, and in one with
  # `seccomp: false`, where the same call reaches the kernel (it succeeds, or fails for
  # another reason). So a pass proves the policy, not a capability the node lacks anyway.
  #
  # The calls are made with the host's /usr/bin/perl (`syscall`, x86_64 numbers) and
  # /usr/bin/unshare, through `:os.cmd`, as the node's unprivileged user, in both kinds of
  # application container: a distributed node (`Ampule.spawn()`) and a sandbox.
  #
  # The policy is an allow-list: a call it refuses by name answers the errno it names
  # (EPERM, or ENOSYS for clone3, inotify and message queues), and a call it does not name
  # at all answers ENOSYS, as a kernel without the call would. The numbers of the calls
  # newer than Debian 12's headers are the kernel's (arch/x86/entry/syscalls/syscall_64.tbl):
  # lsm_get_self_attr 459, lsm_set_self_attr 460, lsm_list_modules 461, open_tree_attr 467,
  # file_getattr 468, file_setattr 469.
  use ExUnit.Case, async: true

  @moduletag :hostile
  @moduletag :root
  @moduletag :lxc
  @moduletag :x86_64

  @eperm 1
  @enosys 38

  setup_all do
    %{
      guarded: Ampule.spawn(),
      open: Ampule.spawn(seccomp: false),
      sandbox: Ampule.spawn(sandbox: true),
      open_sandbox: Ampule.spawn(sandbox: true, seccomp: false)
    }
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
    {"socket(AF_VSOCK)", "syscall(41, 40, 1, 0)", @eperm},
    # Refused by Docker's profile too (granted there only with a capability), and now
    # here: without the policy each reaches the kernel, which answers the bad argument.
    {"chroot", ~s|my $p = "/nonexistent"; syscall(161, $p)|, @eperm},
    {"pidfd_getfd", "syscall(438, -1, 0, 0)", @eperm},
    {"process_madvise", "syscall(440, -1, 0, 0, 0, 0)", @eperm},
    {"get_mempolicy", "syscall(239, 0, 0, 0, 0, 0)", @eperm},
    {"fanotify_init", "syscall(300, 0x200, 0)", @eperm},
    # Counted per user up to root, the owner of every container's user namespace:
    # refused as by a kernel without them (hostile_kernel_counts_test.exs has the attack).
    {"inotify_init1", "syscall(294, 0)", @enosys},
    {"mq_open", ~s|my $n = "ampule-probe"; syscall(240, $n, 0x42, 0600, 0)|, @enosys},
    # Not on the allow-list at all: newer than it (Linux 6.8 to 6.17), or granted by
    # Docker only with CAP_SYS_ADMIN (sethostname: the kernel's own answer is EPERM), or
    # a personality Docker does not allow (ADDR_NO_RANDOMIZE turns off ASLR).
    {"lsm_list_modules", "syscall(461, 0, 0, 0)", @enosys},
    {"lsm_get_self_attr", "syscall(459, 0, 0, 0, 0)", @enosys},
    {"lsm_set_self_attr", "syscall(460, 0, 0, 0, 0)", @enosys},
    {"open_tree_attr", "syscall(467, -1, 0, 0, 0, 0)", @enosys},
    {"file_getattr", "syscall(468, -1, 0, 0, 0, 0)", @enosys},
    {"file_setattr", "syscall(469, -1, 0, 0, 0, 0)", @enosys},
    {"sethostname", "syscall(170, 0, 0)", @enosys},
    {"personality(ADDR_NO_RANDOMIZE)", "syscall(135, 0x0040000)", @enosys}
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

  for {kind, guarded, open} <- [{:node, :guarded, :open}, {:sandbox, :sandbox, :open_sandbox}],
      {name, code, errno} <- @calls do
    test "#{kind}: #{name} is refused with errno #{errno}; without the policy it reaches the kernel",
         context do
      guarded = context[unquote(guarded)]
      open = context[unquote(open)]
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

  test "the calls Docker allows by argument are allowed with those arguments",
       %{guarded: guarded, sandbox: sandbox} do
    for c <- [guarded, sandbox] do
      # personality: a query; clone without namespace flags (a fork); socket: AF_INET.
      assert perl(c, "syscall(135, 0xffffffff)") == {:ok, 0}

      assert {:ok, pid} =
               perl(
                 c,
                 "use POSIX; my $r = syscall(56, 17, 0, 0, 0, 0); " <>
                   "POSIX::_exit(0) if $r == 0; waitpid($r, 0) if $r > 0; $r"
               )

      assert pid > 0
      assert {:ok, fd} = perl(c, "syscall(41, 2, 1, 0)")
      assert fd > 0
    end
  end

  test "a node, Elixir's compiler, ExUnit and python3 work under the policy in a sandbox",
       %{sandbox: sandbox} do
    # A pristine sandbox's node has Elixir's code but not its application started.
    assert {:ok, _} = Ampule.call({:application, :ensure_all_started, [:elixir]}, sandbox)
    # The compiler: a module compiled in the sandbox, then called there.
    source = """
    defmodule Ampule.SeccompWork do
      def double(list), do: Enum.map(list, &(&1 * 2))
    end
    """

    assert [{Ampule.SeccompWork, beam}] = Ampule.call({Code, :compile_string, [source]}, sandbox)

    assert is_binary(beam)
    assert Ampule.call({Ampule.SeccompWork, :double, [[1, 2, 3]]}, sandbox) == [2, 4, 6]

    # ExUnit: started, a test module compiled, run; its two tests pass, its third fails
    # as written (so a run that ran nothing cannot pass for one that ran).
    run = """
    ExUnit.start(autorun: false)

    defmodule Ampule.SeccompWorkTest do
      use ExUnit.Case
      test "one", do: assert(Ampule.SeccompWork.double([2]) == [4])
      test "two", do: assert(File.write!("/tmp/x", "y") == :ok and File.read!("/tmp/x") == "y")
      test "three", do: assert(1 + 1 == 3)
    end

    ExUnit.run()
    """

    {result, _binding} = Ampule.call({Code, :eval_string, [run]}, sandbox)
    assert %{total: 3, failures: 1} = result

    # python3: files, a directory listing, a subprocess, a thread.
    script = ~S"""
    import os, subprocess, threading, tempfile
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "a"), "w") as f: f.write("hello")
    out = subprocess.run(["cat", os.path.join(d, "a")], capture_output=True, text=True).stdout
    t = threading.Thread(target=lambda: None); t.start(); t.join()
    print(out, sorted(os.listdir(d)), os.cpu_count() > 0)
    """

    :ok = Ampule.call({File, :write!, ["/tmp/work.py", script]}, sandbox)
    assert sh(sandbox, "python3 /tmp/work.py 2>&1") == "hello ['a'] True\n"
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
