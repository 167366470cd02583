defmodule Ampule.Test.Host do
  @moduledoc false
  # What the host has, for test_helper.exs and the leftover check after the suite.

  @doc "Polls `fun` until it returns true or `timeout` ms pass; returns the last answer."
  def wait_until(fun, timeout \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll(fun, deadline)
  end

  defp poll(fun, deadline) do
    cond do
      fun.() -> true
      System.monotonic_time(:millisecond) > deadline -> false
      true -> receive(after: (10 -> poll(fun, deadline)))
    end
  end

  def root?, do: match?({"0\n", 0}, System.cmd("id", ["-u"]))

  @doc """
  For `setup_all`: one sandbox for a whole test module
  (`%{sandbox: sandbox}`), owned by no process, destroyed once the module's tests are done.
  """
  def module_sandbox do
    sandbox = Ampule.spawn(sandbox: true, owner: false)
    ExUnit.Callbacks.on_exit(fn -> Ampule.destroy(sandbox) end)
    %{sandbox: sandbox}
  end

  def state_dir, do: Application.get_env(:ampule, :state_dir, "/var/lib/ampule")
  def bridge, do: Application.get_env(:ampule, :bridge, "ampule0")

  @doc "Container directories under the port's state directory (system: lxc/, app: apps/)."
  def container_dirs do
    for sub <- ["lxc", "apps"],
        dir = Path.join(state_dir(), sub),
        {:ok, names} <- [File.ls(dir)],
        name <- names,
        do: Path.join(dir, name)
  end

  @doc "The containers' veths: the ports of Ampule's bridge."
  def veths do
    case File.ls("/sys/class/net/#{bridge()}/brif") do
      {:ok, links} -> links
      {:error, _} -> []
    end
  end

  @doc "The host's address on Ampule's bridge, as a tuple (from the port's hello)."
  def host_address do
    {:ok, hello} = Ampule.Port.hello()
    {:ok, ip} = :inet.parse_address(to_charlist(hello.host_address))
    ip
  end

  @doc """
  liblxc cgroups (`lxc.payload.*`, `lxc.monitor.*`) in every hierarchy, as paths; those of
  containers that live under another checkout's state directory (`/var/lib/ampule*`, see
  `config/config.exs`) are that suite's business, not this one's.
  """
  def cgroups do
    others =
      for dir <- Path.wildcard("/var/lib/ampule*/{apps,lxc}/*"),
          not String.starts_with?(dir, state_dir() <> "/"),
          into: MapSet.new(),
          do: Path.basename(dir)

    for pattern <- ["/sys/fs/cgroup/lxc.*.*", "/sys/fs/cgroup/*/lxc.*.*"],
        path <- Path.wildcard(pattern),
        [_, name] <- [Regex.run(~r/\/lxc\.(?:payload|monitor)\.([^\/]+)$/, path)],
        not MapSet.member?(others, name),
        do: path
  end

  @doc ~S(The suite's subnet's first three octets and a dot: "10.213.57." by default.)
  def subnet_prefix do
    {a, b, c, _} = host_address()
    "#{a}.#{b}.#{c}."
  end

  @doc """
  The network of the "outside hosts" (`outside_host/2`), `{10, 214, N}` for `10.214.N.0/24`,
  N the third octet of the suite's subnet: suites on different subnets never share it, and
  no subnet of Ampule's is in 10.214.
  """
  def outside_net do
    {_, _, c, _} = host_address()
    {10, 214, c}
  end

  @doc """
  An "outside host", for tests that show what a container cannot reach: a network
  namespace joined to this host by a veth of its own, not to Ampule's bridge. It takes the
  `slot`th /30 of `outside_net/0` (the host's end `.4*slot+1`, the namespace's `.4*slot+2`),
  so that tests running at the same time each have their own; its host-side interface is
  named `PREFIX<n>h`. Removed when the test (or the `setup_all` process) exits.

  Returns `%{netns: path, outside: ip}`: `netns:` for `:gen_tcp`/`:gen_udp` to listen in
  it, `outside:` its address. The Rust suite's one is `Lab` in
  native/ampule_port/tests/common/lab.rs.
  """
  def outside_host(prefix, slot) do
    n = System.unique_integer([:positive])
    ns = "ampule-out-#{prefix}-#{n}"
    {host_if, ns_if} = {"#{prefix}#{n}h", "#{prefix}#{n}o"}
    {a, b, c} = outside_net()
    {near, far} = {4 * slot + 1, 4 * slot + 2}
    cmd!(~w(ip netns add #{ns}))

    ExUnit.Callbacks.on_exit(fn ->
      System.cmd("ip", ~w(netns del #{ns}), stderr_to_stdout: true)
      System.cmd("ip", ~w(link del #{host_if}), stderr_to_stdout: true)
    end)

    cmd!(~w(ip link add #{host_if} type veth peer name #{ns_if} netns #{ns}))
    cmd!(~w(ip addr add #{a}.#{b}.#{c}.#{near}/30 dev #{host_if}))
    cmd!(~w(ip link set #{host_if} up))
    cmd!(~w(ip -n #{ns} addr add #{a}.#{b}.#{c}.#{far}/30 dev #{ns_if}))
    cmd!(~w(ip -n #{ns} link set #{ns_if} up))
    %{netns: "/var/run/netns/#{ns}", outside: {a, b, c, far}}
  end

  defp cmd!([program | args] = argv) do
    {out, status} = System.cmd(program, args, stderr_to_stdout: true)
    status == 0 || raise "#{Enum.join(argv, " ")}: #{out}"
    :ok
  end

  @doc "Address leases the port holds (files named by address under the state directory)."
  def leases do
    case File.ls(Path.join(state_dir(), "leases")) do
      {:ok, files} -> files
      {:error, _} -> []
    end
  end

  @doc "What container `name` may have left on the machine; `[]` when nothing."
  def traces_of(name) do
    dirs = Enum.filter(container_dirs(), &(Path.basename(&1) == name))
    cgroups = Enum.filter(cgroups(), &String.ends_with?(&1, "." <> name))

    leases =
      Enum.filter(leases(), fn address ->
        case File.read(Path.join([state_dir(), "leases", address])) do
          {:ok, owner} -> String.contains?(owner, name)
          _ -> false
        end
      end)

    Enum.map(dirs, &{:dir, &1}) ++
      Enum.map(cgroups, &{:cgroup, &1}) ++ Enum.map(leases, &{:lease, &1})
  end

  @doc "Whether process `pid` exists and is not a zombie (exited, not yet reaped)."
  def runs?(pid) do
    case File.read("/proc/#{pid}/stat") do
      {:ok, stat} -> not (stat |> String.split(") ") |> List.last() |> String.starts_with?("Z"))
      {:error, _} -> false
    end
  end

  @doc """
  Host PIDs of the processes in container `name`: those of its pids cgroup and of the
  cgroups below it (a distribution's init makes its own).
  """
  def container_pids(name), do: name |> cgroup_dir("pids") |> procs_below()

  defp procs_below(dir) do
    own =
      case File.read(Path.join(dir, "cgroup.procs")) do
        {:ok, text} -> text |> String.split() |> Enum.map(&String.to_integer/1)
        {:error, _} -> []
      end

    children =
      case File.ls(dir) do
        {:ok, entries} -> for e <- entries, File.dir?(Path.join(dir, e)), do: Path.join(dir, e)
        {:error, _} -> []
      end

    own ++ Enum.flat_map(children, &procs_below/1)
  end

  @doc "Whether the host has cgroup v2 (one unified hierarchy) rather than v1."
  def cgroup_v2?, do: cgroup_version() == :v2

  @doc "Container `name`'s CPU quota as `{quota_us, period_us}` (`:max` for no quota)."
  def cpu_quota(name), do: cgroup_limits(name).cpu

  @doc """
  The host's cgroup layout, as the port decides it: `:v2` (a stock Debian 12 host, one
  unified hierarchy) or `:v1` (a hierarchy per controller).
  """
  def cgroup_version,
    do: if(File.exists?("/sys/fs/cgroup/cgroup.controllers"), do: :v2, else: :v1)

  @doc """
  The directory of container `name`'s cgroup: in `controller`'s hierarchy on cgroup v1
  (`"memory"`, `"pids"`, `"cpu"`, `"cpuacct"`), the unified one on v2.
  """
  def cgroup_dir(name, controller) do
    case cgroup_version() do
      :v1 -> "/sys/fs/cgroup/#{controller}/lxc.payload.#{name}"
      :v2 -> "/sys/fs/cgroup/lxc.payload.#{name}"
    end
  end

  # cgroup v1's "no memory limit": the largest page-aligned 64-bit count of bytes.
  @v1_unlimited 9_223_372_036_854_771_712

  @doc """
  How long a container's release may take after `destroy` answers: on a loaded machine
  liblxc's monitor can hold its cgroups for seconds, and the port retries them for 2 s and
  then 25 s more (node/release.rs). A wait for a container's traces to go uses this bound;
  it returns as soon as they are gone.
  """
  def release_bound_ms, do: 30_000

  @doc "This BEAM's hard limit of open files (the port inherits it)."
  def hard_open_files do
    "/proc/self/limits"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find(&String.starts_with?(&1, "Max open files"))
    |> String.split()
    |> Enum.at(4)
    |> String.to_integer()
  end

  @doc """
  Container `name`'s limits as the kernel holds them, read back from its cgroup:
  `%{memory: bytes, pids: count, cpu: {quota_us, period_us}}`, with `:max` for no limit.
  """
  def cgroup_limits(name) do
    read = fn controller, file -> read_cgroup(name, controller, file) end

    case cgroup_version() do
      :v1 ->
        %{
          memory: unlimited(read.("memory", "memory.limit_in_bytes"), [@v1_unlimited]),
          pids: unlimited(read.("pids", "pids.max"), []),
          cpu:
            {unlimited(read.("cpu", "cpu.cfs_quota_us"), [-1]),
             String.to_integer(read.("cpu", "cpu.cfs_period_us"))}
        }

      :v2 ->
        [quota, period] = String.split(read.("cpu", "cpu.max"))

        %{
          memory: unlimited(read.("memory", "memory.max"), []),
          pids: unlimited(read.("pids", "pids.max"), []),
          cpu: {unlimited(quota, []), String.to_integer(period)}
        }
    end
  end

  @doc "The CPU time container `name` has used, in microseconds."
  def cpu_usage_us(name) do
    case cgroup_version() do
      :v1 -> div(String.to_integer(read_cgroup(name, "cpuacct", "cpuacct.usage")), 1000)
      :v2 -> cpu_stat(name, "usage_usec")
    end
  end

  @doc "How many CFS periods container `name` was throttled in (held back by its quota)."
  def cpu_throttled(name), do: cpu_stat(name, "nr_throttled")

  defp cpu_stat(name, key) do
    read_cgroup(name, "cpu", "cpu.stat")
    |> String.split("\n")
    |> Enum.find_value(fn line ->
      case String.split(line) do
        [^key, n] -> String.to_integer(n)
        _ -> nil
      end
    end)
  end

  defp read_cgroup(name, controller, file),
    do: name |> cgroup_dir(controller) |> Path.join(file) |> File.read!() |> String.trim()

  defp unlimited("max", _), do: :max

  defp unlimited(text, unlimited) do
    n = String.to_integer(text)
    if n in unlimited, do: :max, else: n
  end

  @doc "Sandboxes' agent sockets in the port's `agents_dir`s (the port removes each with its sandbox)."
  def agent_sockets do
    Path.wildcard(Path.join([state_dir(), "agents", "*", "*"]))
  end

  @doc "Sandboxes' channel processes still running in this VM."
  def channels do
    case Process.whereis(Ampule.SandboxSupervisor) do
      nil ->
        []

      _ ->
        for {_, pid, _, _} <- DynamicSupervisor.which_children(Ampule.SandboxSupervisor), do: pid
    end
  end

  @doc """
  Waits (up to `timeout` ms) until the port has no container left, then counts what is on
  the machine: `%{containers: [...], dirs: [...], veths: [...]}`.
  """
  def leftovers(timeout \\ 15_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    wait_empty(deadline)

    containers =
      case Ampule.list() do
        {:ok, names} -> names
        _ -> []
      end

    %{
      containers: containers,
      dirs: container_dirs(),
      veths: veths(),
      cgroups: cgroups(),
      leases: leases(),
      sockets: agent_sockets(),
      channels: channels(),
      lab_dirs: Ampule.Test.ClusterLab.state_dirs(),
      lab_links: Ampule.Test.ClusterLab.links()
    }
  end

  defp wait_empty(deadline) do
    empty? =
      match?({:ok, []}, Ampule.list()) and container_dirs() == [] and veths() == [] and
        cgroups() == [] and leases() == [] and agent_sockets() == [] and channels() == [] and
        Ampule.Test.ClusterLab.state_dirs() == [] and Ampule.Test.ClusterLab.links() == []

    cond do
      empty? ->
        :ok

      System.monotonic_time(:millisecond) > deadline ->
        :timeout

      true ->
        Process.sleep(100)
        wait_empty(deadline)
    end
  end
end
