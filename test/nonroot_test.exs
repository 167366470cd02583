defmodule Ampule.NonRootTest do
  # A BEAM that is not root runs Ampule with `sudo: true`, set up by `script/sudoers` as
  # `mix ampule.check` tells that user: a system user made for the test runs a second BEAM
  # that spawns a container and a sandbox, calls into each and destroys it, and makes an
  # anonymous sandbox for one call, while its port runs as root.
  # The user reads only a copy of what that BEAM needs (the checkout may be below a
  # directory others cannot traverse, such as /root), and sudoers names the copied port.
  # Not async: it adds a user and a sudoers rule, and its second port shares the suite's
  # state directory (see MixDependencyTest on a second port's start-up sweep).
  use ExUnit.Case, async: false

  alias Ampule.Test.Host

  @moduletag :root
  @moduletag :lxc
  @moduletag timeout: 300_000

  @sudoers Path.expand("../script/sudoers", __DIR__)

  setup do
    suffix = :rand.bytes(4) |> Base.encode32(case: :lower, padding: false)
    user = "ampule-nr-#{suffix}"
    stage = Path.join(System.tmp_dir!(), "ampule-nonroot-#{suffix}")
    home = Path.join(stage, "home")

    # Started here, as root: the user's BEAM would otherwise start EPMD, which would
    # outlive it as a process of the user.
    {_, 0} = System.cmd(epmd(), ["-daemon"])

    {out, status} =
      System.cmd(
        "/usr/sbin/useradd",
        ~w(--system --user-group --no-create-home --shell /usr/sbin/nologin --home-dir) ++
          [home, user],
        stderr_to_stdout: true
      )

    assert status == 0, out
    {uid, 0} = System.cmd("id", ["-u", user])
    uid = uid |> String.trim() |> String.to_integer()

    on_exit(fn ->
      # A BEAM still running was killed by its own on_exit (which ran first); its sudo and
      # port follow it out, and userdel refuses a user with processes.
      Host.wait_until(fn -> processes_of(uid) == [] end, 30_000)
      System.cmd(@sudoers, ["--remove", user], stderr_to_stdout: true)
      {out, status} = System.cmd("/usr/sbin/userdel", [user], stderr_to_stdout: true)
      File.rm_rf!(stage)
      if status != 0, do: raise("userdel #{user}: #{out}")
    end)

    File.mkdir_p!(home)
    File.chown!(home, uid)

    # What the user's BEAM runs: the ampule app's ebin and priv, readable by everyone.
    lib = Path.join(stage, "lib/ampule")
    File.mkdir_p!(lib)
    File.cp_r!(Application.app_dir(:ampule, "ebin"), Path.join(lib, "ebin"))
    port = Path.join(lib, "priv/ampule_port")
    File.mkdir_p!(Path.dirname(port))
    File.cp!(Ampule.Port.executable(), port)
    File.chmod!(port, 0o755)
    for dir <- [stage, Path.join(stage, "lib"), lib], do: File.chmod!(dir, 0o755)

    %{user: user, uid: uid, stage: stage, home: home, port: port, lib: lib}
  end

  test "a non-root user's BEAM spawns, calls, destroys a container and a sandbox via sudo",
       %{user: user, uid: uid, port: port} = ctx do
    # The suite's bridge, subnet and state dir (config/config.exs), and sudo.
    settings =
      Application.get_all_env(:ampule)
      |> Keyword.take([:bridge, :subnet, :state_dir, :log_level])
      |> Keyword.put(:sudo, true)

    setup = "Application.put_all_env(ampule: #{inspect(settings)})\n"

    # What `mix ampule.check` says about sudo, as the user.
    check = """
    IO.puts("CHECK " <> inspect(List.keyfind(Mix.Tasks.Ampule.Check.checks(), "privileges", 1)))
    """

    # Before the rule: sudo refuses, and the check names the command that sets it up.
    {output, 0} = run_as(user, ctx, setup <> check)
    {:missing, "privileges", detail, fix} = check_line(output)
    assert detail =~ "sudo refuses the port", detail
    assert "as root: " <> command = fix

    # With the suite's own bridge, subnet and state dir (AMPULE_*), the rule pins those
    # arguments; with the defaults Ampule passes none, and the rule allows none.
    pinned = Keyword.has_key?(settings, :bridge)

    if pinned do
      assert command =~
               ~r/^#{Regex.escape(@sudoers)} #{user} #{Regex.escape(port)} --args '--bridge /
    else
      assert command == "#{@sudoers} #{user} #{port}"
    end

    {out, status} = System.cmd("sh", ["-c", command], stderr_to_stdout: true)
    assert status == 0, out
    rule = File.read!("/etc/sudoers.d/ampule-#{user}")
    assert rule =~ "Defaults:#{user} closefrom_override\n"

    if pinned,
      do: assert(rule =~ "#{user} ALL=(root) NOPASSWD: #{port} --bridge "),
      else: assert(rule =~ ~s|#{user} ALL=(root) NOPASSWD: #{port} ""|)

    assert File.stat!("/etc/sudoers.d/ampule-#{user}").mode |> Bitwise.band(0o777) == 0o440

    core = """
    {:ok, _} = Application.ensure_all_started(:ampule)
    {:ok, hello} = Ampule.Port.hello()
    c = Ampule.spawn()
    IO.puts("SPAWNED \#{c.name} \#{Ampule.Port.os_pid()} \#{hello.agents_dir}")
    IO.puts("NODE " <> inspect(Ampule.call({:erlang, :node, []}, c)))
    IO.gets("")
    IO.puts("DESTROY " <> inspect(Ampule.destroy(c)))
    s = Ampule.spawn(sandbox: true)
    IO.puts("SANDBOX \#{s.name}")
    IO.puts("SANDBOX_NODE " <> inspect(Ampule.call({:erlang, :node, []}, s)))
    IO.gets("")
    IO.puts("SANDBOX_DESTROY " <> inspect(Ampule.destroy(s)))
    IO.puts("ANONYMOUS " <> inspect(Ampule.call({:erlang, :node, []}, sandbox: true)))
    """

    {beam, os_pid} = start_as(user, ctx, setup <> check <> core)

    assert {:ok, "privileges", "sudo may run the port without a password, keeping fds 3/4", nil} =
             beam |> await_line("CHECK ") |> Code.eval_string() |> elem(0)

    [name, sudo_pid, agents_dir] = beam |> await_line("SPAWNED ") |> String.split()
    net = Regex.escape(Host.subnet_prefix())
    assert await_line(beam, "NODE ") =~ ~r/^:"#{name}@#{net}\d+"$/

    # While the container lives: the BEAM is the user's, the port root's, under sudo.
    assert uids(os_pid) == [uid, uid, uid, uid]
    assert File.read!("/proc/#{sudo_pid}/comm") == "sudo\n"
    assert [port_pid] = for(p <- descendants(sudo_pid), comm(p) == "ampule_port", do: p)
    assert uids(port_pid) == [0, 0, 0, 0]
    assert File.stat!(agents_dir).uid == uid
    assert Host.traces_of(name) != []

    Port.command(beam, "\n")
    assert await_line(beam, "DESTROY ") == ":ok"
    # destroy returns once the node is dead; the port releases the rest right behind it.
    assert Host.wait_until(fn -> Host.traces_of(name) == [] end, 10_000),
           inspect(Host.traces_of(name))

    # A sandbox: no distribution; the host reaches it through a socket the user's BEAM
    # made in the user's agents directory.
    sandbox = await_line(beam, "SANDBOX ")
    assert await_line(beam, "SANDBOX_NODE ") == ":nonode@nohost"
    assert [socket] = Path.wildcard(Path.join(agents_dir, "*"))
    assert File.lstat!(socket).type == :other
    assert Host.traces_of(sandbox) != []

    Port.command(beam, "\n")
    assert await_line(beam, "SANDBOX_DESTROY ") == ":ok"

    gone? = fn -> Host.traces_of(sandbox) == [] and not File.exists?(socket) end

    assert Host.wait_until(gone?, 10_000),
           "#{inspect(Host.traces_of(sandbox))}, socket: #{File.exists?(socket)}"

    # One call, one sandbox made and destroyed for it.
    assert await_line(beam, "ANONYMOUS ") == ":nonode@nohost"
    assert_receive {^beam, {:exit_status, 0}}, 30_000

    # The BEAM has exited: its port saw the end of its input and removed its instance
    # (named `KIND-INSTANCE-N`, INSTANCE the agents directory's name); sudo went with it.
    assert Host.wait_until(fn -> not Host.runs?(port_pid) end, 10_000)
    instance = Path.basename(agents_dir)
    assert instance_traces(instance) == []
    refute File.exists?(agents_dir)
    refute File.exists?(Path.join([Host.state_dir(), "instances", instance <> ".lock"]))
    assert Host.wait_until(fn -> processes_of(uid) == [] end, 10_000)
  end

  # Whatever containers of port instance `instance` left: directories, cgroups, leases.
  defp instance_traces(instance) do
    mark = "-#{instance}-"
    dirs = for dir <- Host.container_dirs(), Path.basename(dir) =~ mark, do: {:dir, dir}
    cgroups = for path <- Host.cgroups(), path =~ mark, do: {:cgroup, path}

    leases =
      for address <- Host.leases(),
          {:ok, owner} <- [File.read(Path.join([Host.state_dir(), "leases", address]))],
          owner =~ mark,
          do: {:lease, address}

    dirs ++ cgroups ++ leases
  end

  # Runs `script` in a BEAM of `user` to its end; returns its output and exit status.
  defp run_as(user, ctx, script) do
    {beam, _os_pid} = start_as(user, ctx, script)
    collect(beam, [])
  end

  defp collect(beam, acc) do
    receive do
      {^beam, {:data, {_, line}}} -> collect(beam, [line | acc])
      {^beam, {:exit_status, status}} -> {acc |> Enum.reverse() |> Enum.join("\n"), status}
    after
      60_000 -> flunk("the BEAM did not exit in 60 s: #{inspect(Enum.reverse(acc))}")
    end
  end

  # A BEAM of `user` (setpriv and env exec it: the OS pid is the BEAM's), with a clean
  # environment, the copied ebin, and the host's Erlang and Elixir.
  defp start_as(user, %{home: home, lib: lib}, script) do
    erts_bin = Path.join(to_string(:code.root_dir()), "bin")

    args =
      ["--reuid", user, "--regid", user, "--init-groups", "--", "/usr/bin/env", "-i"] ++
        ["HOME=#{home}", "PATH=#{erts_bin}:/usr/bin:/bin", "LANG=C.UTF-8"] ++
        [elixir(), "-pa", Path.join(lib, "ebin"), "-e", script]

    beam =
      Port.open({:spawn_executable, "/usr/bin/setpriv"}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        line: 4096,
        args: args
      ])

    {:os_pid, os_pid} = Port.info(beam, :os_pid)
    # Should an assertion fail while it runs, the BEAM must not outlive the test.
    on_exit(fn -> if Host.runs?(os_pid), do: System.cmd("kill", ["-9", to_string(os_pid)]) end)
    {beam, os_pid}
  end

  defp elixir, do: Path.expand("../../bin/elixir", to_string(:code.lib_dir(:elixir)))

  defp check_line(output) do
    [_, term] = Regex.run(~r/^CHECK (.*)$/m, output) || flunk("no CHECK line in:\n#{output}")
    term |> Code.eval_string() |> elem(0)
  end

  defp await_line(beam, prefix, seen \\ []) do
    receive do
      {^beam, {:data, {_, line}}} ->
        case String.split_at(line, byte_size(prefix)) do
          {^prefix, rest} -> rest
          _ -> await_line(beam, prefix, [line | seen])
        end

      {^beam, {:exit_status, status}} ->
        flunk("the BEAM exited (#{status}) before #{prefix}: #{inspect(Enum.reverse(seen))}")
    after
      60_000 -> flunk("no #{prefix}from the BEAM in 60 s: #{inspect(Enum.reverse(seen))}")
    end
  end

  # Real, effective, saved and file-system uids.
  defp uids(pid) do
    [_, ids] = Regex.run(~r/^Uid:\s+(.*)$/m, File.read!("/proc/#{pid}/status"))
    ids |> String.split() |> Enum.map(&String.to_integer/1)
  end

  # Processes whose real or effective uid is `uid` (sudo's real uid is its caller's).
  defp processes_of(uid) do
    for dir <- Path.wildcard("/proc/[0-9]*"),
        {:ok, status} <- [File.read(Path.join(dir, "status"))],
        [_, real, effective] <- [Regex.run(~r/^Uid:\s+(\d+)\s+(\d+)/m, status)],
        to_string(uid) in [real, effective],
        do: Path.basename(dir)
  end

  defp comm(pid) do
    case File.read("/proc/#{pid}/comm") do
      {:ok, comm} -> String.trim(comm)
      {:error, _} -> nil
    end
  end

  # Every process below `pid` (sudo runs the port as its child, or grandchild with a pty).
  defp descendants(pid) do
    parents =
      for dir <- Path.wildcard("/proc/[0-9]*"),
          {:ok, stat} <- [File.read(Path.join(dir, "stat"))],
          [_, ppid] <- [Regex.run(~r/\) \S (\d+) /, stat)],
          do: {Path.basename(dir), ppid}

    children = fn p -> for {child, ^p} <- parents, do: child end
    expand([to_string(pid)], children, [])
  end

  defp expand([], _children, acc), do: acc

  defp expand([p | rest], children, acc) do
    kids = children.(p)
    expand(kids ++ rest, children, kids ++ acc)
  end

  defp epmd do
    System.find_executable("epmd") ||
      Path.join([to_string(:code.root_dir()), "bin", "epmd"])
  end
end
