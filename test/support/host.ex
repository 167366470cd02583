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

  @doc "Whether the host has cgroup v2 (one unified hierarchy) rather than v1."
  def cgroup_v2?, do: File.exists?("/sys/fs/cgroup/cgroup.controllers")

  @doc """
  The directory of container `name`'s cgroup that holds `controller`'s files ("pids",
  "memory", "cpu", "cpuacct"): on cgroup v2 one directory has them all
  (`/sys/fs/cgroup/lxc.payload.NAME`); on v1 each controller has its own hierarchy
  (`/sys/fs/cgroup/pids/lxc.payload.NAME`).
  """
  def cgroup_dir(name, controller) do
    if cgroup_v2?(),
      do: "/sys/fs/cgroup/lxc.payload.#{name}",
      else: "/sys/fs/cgroup/#{controller}/lxc.payload.#{name}"
  end

  @doc "Container `name`'s CPU quota as `{quota_us, period_us}` (`:max` for no quota)."
  def cpu_quota(name) do
    dir = cgroup_dir(name, "cpu")

    if cgroup_v2?() do
      [quota, period] = dir |> Path.join("cpu.max") |> File.read!() |> String.split()
      {if(quota == "max", do: :max, else: String.to_integer(quota)), String.to_integer(period)}
    else
      quota = read_int(Path.join(dir, "cpu.cfs_quota_us"))
      {if(quota < 0, do: :max, else: quota), read_int(Path.join(dir, "cpu.cfs_period_us"))}
    end
  end

  @doc "The CPU time container `name` has used, in microseconds."
  def cpu_usage_us(name) do
    if cgroup_v2?() do
      name
      |> cgroup_dir("cpu")
      |> Path.join("cpu.stat")
      |> File.read!()
      |> then(&Regex.run(~r/^usage_usec (\d+)$/m, &1, capture: :all_but_first))
      |> then(fn [usec] -> String.to_integer(usec) end)
    else
      div(read_int(Path.join(cgroup_dir(name, "cpuacct"), "cpuacct.usage")), 1_000)
    end
  end

  defp read_int(path), do: path |> File.read!() |> String.trim() |> String.to_integer()

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
      leases: leases()
    }
  end

  defp wait_empty(deadline) do
    empty? =
      match?({:ok, []}, Ampule.list()) and container_dirs() == [] and veths() == [] and
        cgroups() == [] and leases() == []

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
