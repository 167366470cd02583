defmodule Mix.Tasks.Ampule.Check do
  @shortdoc "Checks that this host can run Ampule's containers"

  @moduledoc """
  Checks what this host needs to run Ampule's containers, like `lxc-checkconfig`, and says
  how to fix each missing piece.

      $ mix ampule.check
      ok       port program      /app/_build/dev/lib/ampule/priv/ampule_port
      ok       privileges        running as root
      MISSING  subordinate ids   no root range in /etc/subuid
               fix: usermod --add-subuids 1000000-1065535 --add-subgids 1000000-1065535 root
      ...

  It checks:

    * the port program (built by `mix compile`, or `AMPULE_PORT_PATH`)
    * liblxc (`liblxc.so.1`)
    * root, or `sudo` configured for the port (`config :ampule, sudo: true`); when it is
      not, it names the command that sets it up for this user (`script/sudoers`, see
      "Running as a non-root user" in the README)
    * a range for root in `/etc/subuid` and `/etc/subgid` (the containers' user namespace)
    * cgroup v2 with the memory, pids and cpu controllers (or v1's hierarchies)
    * on a kernel that enforces AppArmor (Debian's default), the `apparmor` package and
      LXC's profile `lxc-container-default-cgns` loaded: without them every container
      start fails
    * user namespaces enabled in the kernel
    * that the containers' root (the first id of root's range in `/etc/subuid`) can reach
      the code paths Ampule bind-mounts into them (this project's build and the code path
      outside Erlang's own): liblxc mounts them as that id, so a project under `/root`
      (mode 0700 on Debian) fails every start (as root only)
    * Ampule's bridge (made by the port when missing, so only a note)
    * `/usr/bin/erl` (containers run the host's Erlang/OTP from `/usr`)
    * `epmd`, to start distribution on this node
    * the tools the port runs: `ip`, `nft`, `dnsmasq` (system containers' DHCP),
      `lxc-create` (templates), and what the templates themselves run: `busybox`,
      `debootstrap`, `wget`, `rsync`

  Exits with status 1 when something is missing.
  """

  use Mix.Task

  @impl Mix.Task
  def run(_args) do
    # Reads :ampule's configuration (sudo, bridge, port_path) without starting it.
    Mix.Task.run("loadconfig")
    _ = Application.load(:ampule)

    results = checks()

    for {status, what, detail, fix} <- results do
      label = %{ok: "ok", missing: "MISSING", note: "note"}[status]
      Mix.shell().info(String.pad_trailing(label, 9) <> String.pad_trailing(what, 18) <> detail)
      if fix && status != :ok, do: Mix.shell().info(String.duplicate(" ", 9) <> "fix: " <> fix)
    end

    case Enum.count(results, &(elem(&1, 0) == :missing)) do
      0 -> Mix.shell().info("\nThis host can run Ampule's containers.")
      n -> Mix.raise("#{n} thing(s) missing: see the fixes above")
    end
  end

  @typedoc "`{status, what, detail, fix}`"
  @type result :: {:ok | :missing | :note, String.t(), String.t(), String.t() | nil}

  @doc "Runs every check and returns the results (without printing)."
  @spec checks() :: [result]
  def checks do
    [
      port_program(),
      liblxc(),
      privileges(),
      subids("/etc/subuid"),
      subids("/etc/subgid"),
      cgroups(),
      apparmor(),
      userns(),
      code_paths(),
      bridge(),
      erl(),
      epmd(),
      tools()
    ]
  end

  defp port_program do
    path = Ampule.Port.executable()

    cond do
      File.regular?(path) and executable?(path) ->
        {:ok, "port program", path, nil}

      true ->
        {:missing, "port program", "#{path} does not exist",
         "mix compile (needs cargo, gcc, lxc-dev and libclang-dev), or set AMPULE_PORT_PATH"}
    end
  end

  defp executable?(path) do
    case File.stat(path) do
      {:ok, %{mode: mode}} -> Bitwise.band(mode, 0o111) != 0
      _ -> false
    end
  end

  defp liblxc do
    found =
      case System.find_executable("ldconfig") || existing("/sbin/ldconfig") do
        nil ->
          nil

        ldconfig ->
          {out, _} = System.cmd(ldconfig, ["-p"], stderr_to_stdout: true)
          out |> String.split("\n") |> Enum.find(&String.contains?(&1, "liblxc.so.1"))
      end

    found =
      found ||
        Enum.find(
          Path.wildcard("/usr/lib/*/liblxc.so.1") ++ Path.wildcard("/usr/lib/liblxc.so.1"),
          &File.exists?/1
        )

    if found do
      {:ok, "liblxc", found |> String.split("=>") |> List.last() |> String.trim(), nil}
    else
      {:missing, "liblxc", "liblxc.so.1 not found",
       "apt-get install lxc (and lxc-dev to build the port)"}
    end
  end

  # Ampule's command that lets a user run the port through sudo (see the README).
  @sudoers Path.expand("../../../script/sudoers", __DIR__)

  defp privileges do
    sudo? = Application.get_env(:ampule, :sudo, false)
    # What Ampule runs through sudo, arguments included: a rule may pin them.
    {port, args} = Ampule.Port.command(sudo: false)

    cond do
      root?() ->
        {:ok, "privileges", "running as root", nil}

      sudo? ->
        case System.find_executable("sudo") do
          nil ->
            {:missing, "privileges", "config :ampule, sudo: true, but sudo is not installed",
             sudoers_fix(port, args)}

          sudo ->
            # Asks sudo whether it would run the port exactly as Ampule does (-C 5 keeps the
            # protocol's fds 3 and 4 open, which needs closefrom_override).
            asked = ["-n", "-C", "5", "-l", "--", port | args]

            case System.cmd(sudo, asked, stderr_to_stdout: true) do
              {_, 0} ->
                {:ok, "privileges", "sudo may run the port without a password, keeping fds 3/4",
                 nil}

              {out, _} ->
                {:missing, "privileges", "sudo refuses the port: #{String.trim(out)}",
                 sudoers_fix(port, args)}
            end
        end

      true ->
        {:missing, "privileges", "not root, and sudo is not configured",
         "run as root, or `config :ampule, sudo: true` and " <> sudoers_fix(port, args)}
    end
  end

  # The command (for root) that writes this user's sudoers rule for `port` with `args`.
  defp sudoers_fix(port, args) do
    user =
      case System.cmd("id", ["-un"], stderr_to_stdout: true) do
        {name, 0} -> String.trim(name)
        _ -> "USER"
      end

    pinned = if args == [], do: [], else: ["--args", Enum.join(args, " ")]

    "as root: " <>
      Enum.map_join([@sudoers, user, port | pinned], " ", &shell_quote/1)
  end

  defp shell_quote(word) do
    if word =~ ~r{^[A-Za-z0-9_./:=,@%+-]+$},
      do: word,
      else: "'" <> String.replace(word, "'", ~S('\'')) <> "'"
  end

  defp subids(file) do
    ranges =
      case File.read(file) do
        {:ok, text} ->
          for line <- String.split(text, "\n"),
              [user, _start, count] <- [String.split(String.trim(line), ":")],
              user in ["root", "0"],
              {n, ""} <- [Integer.parse(count)],
              do: n

        {:error, _} ->
          []
      end

    if Enum.any?(ranges, &(&1 >= 65_536)) do
      {:ok, "subordinate ids", "#{file}: root has a range of #{Enum.max(ranges)}", nil}
    else
      {:missing, "subordinate ids", "no root range of 65536 ids in #{file}",
       "usermod --add-subuids 1000000-1065535 --add-subgids 1000000-1065535 root"}
    end
  end

  defp cgroups do
    case File.read("/sys/fs/cgroup/cgroup.controllers") do
      {:ok, text} ->
        missing = ~w(memory pids cpu) -- String.split(text)

        if missing == [] do
          {:ok, "cgroups", "cgroup v2 with memory, pids, cpu", nil}
        else
          {:missing, "cgroups", "cgroup v2 lacks #{Enum.join(missing, ", ")}",
           "enable them: echo '+memory +pids +cpu' > /sys/fs/cgroup/cgroup.subtree_control"}
        end

      {:error, _} ->
        # cgroup v1: one hierarchy per controller.
        case Enum.reject(~w(memory pids cpu), &File.dir?("/sys/fs/cgroup/#{&1}")) do
          [] ->
            {:ok, "cgroups", "cgroup v1 with memory, pids, cpu hierarchies", nil}

          missing ->
            {:missing, "cgroups", "no cgroup v2, and no v1 #{Enum.join(missing, ", ")} hierarchy",
             "boot with systemd.unified_cgroup_hierarchy=1, or mount cgroup2 on /sys/fs/cgroup"}
        end
    end
  end

  # liblxc's default profile on a kernel with cgroup namespaces (every kernel Ampule runs on).
  @aa_profile "lxc-container-default-cgns"

  @doc false
  # `probe` is a parameter so that a test can show what a host with AppArmor enabled and
  # without the apparmor package is told: `%{enabled: boolean, parser: path | nil,
  # profiles: [name] | nil}` (nil when the loaded profiles cannot be read, as non-root).
  def apparmor(probe \\ apparmor_probe())

  def apparmor(%{enabled: false}),
    do: {:ok, "apparmor", "not enabled in the kernel: containers run unconfined", nil}

  def apparmor(%{enabled: true, parser: nil}) do
    {:missing, "apparmor",
     "the kernel enforces AppArmor, but the apparmor package is missing: every container " <>
       "start fails (\"Failed to write AppArmor profile #{@aa_profile}\")",
     "apt-get install apparmor"}
  end

  def apparmor(%{enabled: true, parser: parser, profiles: profiles}) do
    cond do
      profiles == nil ->
        {:ok, "apparmor", "enabled, #{parser} found (the loaded profiles could not be read)", nil}

      @aa_profile in profiles ->
        {:ok, "apparmor", "enabled, LXC's profile #{@aa_profile} loaded", nil}

      true ->
        {:missing, "apparmor",
         "enabled, but LXC's profile #{@aa_profile} is not loaded: every container start fails",
         "apparmor_parser --replace /etc/apparmor.d/lxc-containers (or systemctl restart apparmor)"}
    end
  end

  defp apparmor_probe do
    enabled = match?({:ok, "Y" <> _}, File.read("/sys/module/apparmor/parameters/enabled"))

    profiles =
      case File.read("/sys/kernel/security/apparmor/profiles") do
        {:ok, text} ->
          for line <- String.split(text, "\n", trim: true), do: hd(String.split(line))

        {:error, _} ->
          nil
      end

    %{enabled: enabled, parser: find_tool("apparmor_parser"), profiles: profiles}
  end

  @doc false
  # A container mounts each code path and its node reads the code as an unprivileged id,
  # "other" to the files: a path below a directory others may not search (a project in
  # /root, mode 0700) is staged by the port (it bind-mounts it where the containers' root
  # can reach), but the directory itself and its files must be readable by others.
  # `readable?` is a parameter so that a test can show what each case is told.
  def code_paths(paths \\ code_paths_to_mount(), readable? \\ &readable_by_others?/1) do
    {unreadable, readable} = Enum.split_with(paths, &(not readable?.(&1)))
    staged = Enum.reject(readable, &searchable_by_others?/1)

    cond do
      unreadable != [] ->
        [first | _] = unreadable

        {:missing, "code paths",
         "containers run code as an unprivileged id, which cannot read #{first}" <>
           "#{more(unreadable)} (the directory or its files are not readable by others)",
         "chmod -R o+rX #{first}"}

      staged != [] ->
        [first | _] = staged
        blocker = first |> ancestors() |> Enum.drop(-1) |> Enum.find(first, &(not others_x?(&1)))

        {:note, "code paths",
         "#{first}#{more(staged)} is below #{blocker}, which others may not search: the port " <>
           "stages it (a bind mount under its state directory) for the containers", nil}

      true ->
        {:ok, "code paths", "#{length(paths)} readable by the containers", nil}
    end
  end

  defp readable_by_others?(dir) do
    with {:ok, %{mode: mode}} <- File.stat(dir),
         true <- Bitwise.band(mode, 0o005) == 0o005,
         {:ok, files} <- File.ls(dir) do
      files
      |> Enum.take(200)
      |> Enum.all?(fn f ->
        case File.stat(Path.join(dir, f)) do
          {:ok, %{mode: m}} -> Bitwise.band(m, 0o004) != 0
          _ -> true
        end
      end)
    else
      _ -> false
    end
  end

  defp searchable_by_others?(path),
    do: path |> ancestors() |> Enum.drop(-1) |> Enum.all?(&others_x?/1)

  defp others_x?(dir),
    do: match?({:ok, %{mode: m}} when Bitwise.band(m, 0o001) != 0, File.stat(dir))

  defp more([_]), do: ""
  defp more([_ | rest]), do: " (and #{length(rest)} more)"

  # "/a/b/c" -> ["/a", "/a/b", "/a/b/c"]
  defp ancestors(path) do
    path
    |> Path.split()
    |> tl()
    |> Enum.scan("/", &Path.join(&2, &1))
  end

  # What Ampule.Options passes by default (the host's code path outside Erlang's root, see
  # Ampule.Distribution.host_code_paths/0) and this project's build; the port skips /usr.
  defp code_paths_to_mount do
    # Within Mix, this project's build too; from a release or a bare VM, the code path.
    build = if Process.whereis(Mix.ProjectStack), do: [Mix.Project.build_path()], else: []

    (build ++ Ampule.Distribution.host_code_paths())
    |> Enum.filter(&File.dir?/1)
    |> Enum.reject(&String.starts_with?(&1, "/usr/"))
    |> Enum.uniq()
  end

  defp userns do
    case File.read("/proc/sys/user/max_user_namespaces") do
      {:ok, text} ->
        case Integer.parse(String.trim(text)) do
          {n, _} when n > 0 ->
            {:ok, "user namespaces", "max_user_namespaces = #{n}", nil}

          _ ->
            {:missing, "user namespaces", "disabled (max_user_namespaces = 0)",
             "sysctl -w user.max_user_namespaces=15000"}
        end

      {:error, _} ->
        {:missing, "user namespaces", "the kernel has no user namespaces",
         "use a kernel built with CONFIG_USER_NS=y"}
    end
  end

  defp bridge do
    name = to_string(Application.get_env(:ampule, :bridge, "ampule0"))

    if File.exists?("/sys/class/net/#{name}/bridge") do
      {:ok, "bridge", "#{name} exists", nil}
    else
      {:note, "bridge", "#{name} does not exist yet: the port makes it when it starts (as root)",
       "nothing to do, or: ip link add #{name} type bridge"}
    end
  end

  defp erl do
    if File.exists?("/usr/bin/erl") do
      {:ok, "erlang", "/usr/bin/erl (containers run the host's /usr)", nil}
    else
      {:missing, "erlang",
       "/usr/bin/erl not found: containers run Erlang/OTP from the host's /usr",
       "apt-get install erlang-nox"}
    end
  end

  defp epmd do
    if System.find_executable("epmd") ||
         existing(Path.join([to_string(:code.root_dir()), "bin", "epmd"])) do
      {:ok, "epmd", "found (needed to start distribution on this node)", nil}
    else
      {:missing, "epmd", "not found", "apt-get install erlang-base"}
    end
  end

  @tools [
    {"ip", "iproute2"},
    {"nft", "nftables"},
    {"dnsmasq", "dnsmasq-base"},
    {"lxc-create", "lxc"},
    # What the templates of system containers run (`create(template: ...)`).
    {"busybox", "busybox-static"},
    {"debootstrap", "debootstrap"},
    {"wget", "wget"},
    {"rsync", "rsync"}
  ]

  @doc false
  # `found?` is a parameter so that a test can show a missing tool is named.
  def tools(found? \\ &find_tool/1) do
    case Enum.reject(@tools, fn {tool, _} -> found?.(tool) end) do
      [] ->
        {:ok, "tools", Enum.map_join(@tools, ", ", &elem(&1, 0)), nil}

      missing ->
        {:missing, "tools", "not found: #{Enum.map_join(missing, ", ", &elem(&1, 0))}",
         "apt-get install #{Enum.map_join(missing, " ", &elem(&1, 1))}"}
    end
  end

  # The port runs as root, with /usr/sbin on its PATH even when this shell's lacks it.
  defp find_tool(tool),
    do: System.find_executable(tool) || existing("/usr/sbin/#{tool}") || existing("/sbin/#{tool}")

  defp root?, do: match?({"0\n", 0}, System.cmd("id", ["-u"]))

  defp existing(path), do: if(File.exists?(path), do: path)
end
