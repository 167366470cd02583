# Helpers shared by the benches (bench/run.exs, boot.exs, cold.exs, work.exs).

defmodule Bench.Env do
  # `script/bench` runs with MIX_ENV=prod, which reads no test configuration: honour the
  # variables the suite's config honours, so that a debugging run can use a bridge,
  # subnet and state directory of its own while another checkout benchmarks on the defaults.
  # The port starts on first use, so setting them before that is enough.
  def apply do
    for {key, var} <- [
          bridge: "AMPULE_BRIDGE",
          subnet: "AMPULE_SUBNET",
          state_dir: "AMPULE_STATE_DIR"
        ],
        value = System.get_env(var) do
      Application.put_env(:ampule, key, value)
    end

    :ok
  end

  # BENCH_CPU_SHARES=N gives the bench's containers `cpu_shares: N` (cgroup v1's most is
  # 262144 against 1024 for everyone else): with the bench itself run under `nice -n -19`,
  # a bench on a machine that other work shares takes the CPU first. It does not make the
  # machine quiet (a sandbox's boot still took ~3x its quiet time beside two test suites):
  # quote such runs as under load. On a quiet machine shares change nothing.
  def spawn_opts do
    case System.get_env("BENCH_CPU_SHARES") do
      nil -> []
      n -> [cpu_shares: String.to_integer(n)]
    end
  end

  def state_dir, do: Application.get_env(:ampule, :state_dir, "/var/lib/ampule")

  # The host's address on the bridge: the subnet's first address.
  def host_address do
    [a, b, c, d] =
      Application.get_env(:ampule, :subnet, "10.213.57.0/24")
      |> String.split("/")
      |> hd()
      |> String.split(".")
      |> Enum.map(&String.to_integer/1)

    ~c"#{a}.#{b}.#{c}.#{d + 1}"
  end

  def load do
    case File.read("/proc/loadavg") do
      {:ok, text} -> text |> String.split() |> Enum.take(3) |> Enum.join(" ")
      _ -> "?"
    end
  end

  def machine do
    mem_gib =
      Regex.run(~r/MemTotal:\s+(\d+)/, File.read!("/proc/meminfo"))
      |> List.last()
      |> String.to_integer()
      |> div(1024 * 1024)

    "#{String.trim(to_string(:os.cmd(~c"uname -sr")))}, #{System.schedulers_online()} cores, " <>
      "#{mem_gib} GiB, OTP #{System.otp_release()}, Elixir #{System.version()}, " <>
      "#{String.trim(to_string(:os.cmd(~c"lxc-start --version")))} (liblxc), " <>
      "cgroup #{Bench.Cgroup.layout()}, #{Date.utc_today()}"
  end
end

defmodule Bench.Peer do
  # A `:peer` node on the host's address on the bridge: {pid, node}. Hidden, like
  # Ampule's nodes: otherwise `global` meshes every peer with the others.
  def start do
    name = :"bench_peer_#{System.unique_integer([:positive])}"

    {:ok, pid, node} =
      :peer.start(%{
        name: name,
        host: Bench.Env.host_address(),
        longnames: true,
        args: [~c"-hidden"]
      })

    {pid, node}
  end
end

defmodule Bench.Stats do
  def median(xs), do: pct(xs, 50)

  def pct([], _p), do: 0

  def pct(xs, p) do
    s = Enum.sort(xs)
    Enum.at(s, min(length(s) - 1, round(p / 100 * (length(s) - 1))))
  end

  def ms(us), do: :erlang.float_to_binary(us / 1000, decimals: 1)
  def ms2(us), do: :erlang.float_to_binary(us / 1000, decimals: 2)
  def mib(kib), do: :erlang.float_to_binary(kib / 1024, decimals: 1)
  def ratio(_a, b) when b == 0, do: "–"
  def ratio(a, b), do: :erlang.float_to_binary(a / b, decimals: 2)
  def f1(x), do: :erlang.float_to_binary(x / 1, decimals: 1)

  def time(f) do
    {us, _} = :timer.tc(f)
    us
  end

  # Rotates a list of sides by i, so that each side goes first as often as the others.
  def rotate(list, i) do
    {a, b} = Enum.split(list, rem(i, length(list)))
    b ++ a
  end
end

defmodule Bench.Cgroup do
  # A container's cgroups, as liblxc names them (`lxc.payload.NAME`, `lxc.monitor.NAME`).
  def layout do
    if File.dir?("/sys/fs/cgroup/pids"), do: :v1, else: :v2
  end

  defp dir(controller, name) do
    case layout() do
      :v1 -> "/sys/fs/cgroup/#{controller}/lxc.payload.#{name}"
      :v2 -> "/sys/fs/cgroup/lxc.payload.#{name}"
    end
  end

  # CPU time used by every process the container ever ran, in µs.
  def cpu_us(name) do
    case layout() do
      :v1 ->
        read_int(dir(:cpuacct, name), "cpuacct.usage", &div(&1, 1000))

      :v2 ->
        with {:ok, text} <- File.read(Path.join(dir(:cpu, name), "cpu.stat")),
             [_, us] <- Regex.run(~r/^usage_usec (\d+)/m, text) do
          String.to_integer(us)
        else
          _ -> nil
        end
    end
  end

  # The container's peak memory (its processes and the tmpfs pages charged to it), KiB.
  def peak_kib(name) do
    case layout() do
      :v1 -> read_int(dir(:memory, name), "memory.max_usage_in_bytes", &div(&1, 1024))
      :v2 -> read_int(dir(:memory, name), "memory.peak", &div(&1, 1024))
    end
  end

  def memory_kib(name) do
    case layout() do
      :v1 -> read_int(dir(:memory, name), "memory.usage_in_bytes", &div(&1, 1024))
      :v2 -> read_int(dir(:memory, name), "memory.current", &div(&1, 1024))
    end
  end

  def pids_current(name), do: read_int(dir(:pids, name), "pids.current", & &1)
  def pids_max(name), do: read_int(dir(:pids, name), "pids.max", & &1)

  def procs(name) do
    case File.read(Path.join(dir(:pids, name), "cgroup.procs")) do
      {:ok, t} -> t |> String.split() |> Enum.map(&String.to_integer/1)
      {:error, _} -> []
    end
  end

  def gone?(name) do
    not File.exists?(dir(:pids, name)) and
      not File.exists?(String.replace(dir(:pids, name), "lxc.payload.", "lxc.monitor."))
  end

  defp read_int(dir, file, f) do
    case File.read(Path.join(dir, file)) do
      {:ok, text} ->
        case Integer.parse(String.trim(text)) do
          {n, _} -> f.(n)
          :error -> nil
        end

      _ ->
        nil
    end
  end
end

defmodule Bench.Memory do
  # Host-side memory of a set of processes: RSS (counts shared pages fully, as `ps` does)
  # and PSS (shares them among their users, a fairer "cost of one more", as smem does).
  def of_pids(pids) do
    Enum.reduce(pids, {0, 0}, fn pid, {rss, pss} ->
      case File.read("/proc/#{pid}/smaps_rollup") do
        {:ok, text} -> {rss + field(text, "Rss"), pss + field(text, "Pss")}
        {:error, _} -> {rss, pss}
      end
    end)
  end

  def of_container(name), do: of_pids(Bench.Cgroup.procs(name))

  # The BEAM of a :peer node and its children (erl_child_setup; epmd is shared).
  def peer_pids(node) do
    os_pid = :rpc.call(node, :os, :getpid, []) |> List.to_string() |> String.to_integer()
    [os_pid | children(os_pid)]
  end

  defp children(pid) do
    case File.read("/proc/#{pid}/task/#{pid}/children") do
      {:ok, t} -> t |> String.split() |> Enum.map(&String.to_integer/1)
      {:error, _} -> []
    end
  end

  def port_rss_kib do
    status = File.read!("/proc/#{Ampule.Port.os_pid()}/status")
    [_, kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, status)
    String.to_integer(kb)
  end

  # The host's MemAvailable, KiB.
  def available_kib do
    [_, kb] = Regex.run(~r/MemAvailable:\s+(\d+) kB/, File.read!("/proc/meminfo"))
    String.to_integer(kb)
  end

  defp field(text, name) do
    case Regex.run(~r/^#{name}:\s+(\d+) kB/m, text) do
      [_, kb] -> String.to_integer(kb)
      nil -> 0
    end
  end
end

defmodule Bench.Release do
  # Until an OS process (a `:peer` node, a local `elixir`) has exited: gone, or a zombie
  # (its parent reaps it up to two seconds later; a zombie uses no CPU).
  def wait_gone(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} ->
        if not String.contains?(stat, ") Z ") do
          Process.sleep(1)
          wait_gone(os_pid)
        end

      {:error, _} ->
        :ok
    end
  end

  # Until the port has released a destroyed container: `destroy` answers when the node is
  # dead; its cgroups, directory and (distribution) address go right behind. Waiting
  # (untimed) keeps one sample's teardown from stealing CPU from the next.
  def wait(%{name: name} = c) do
    lease = c.address && Path.join([Bench.Env.state_dir(), "leases", c.address])
    dir = Path.join([Bench.Env.state_dir(), "apps", name])
    deadline = System.monotonic_time(:millisecond) + 30_000
    wait(name, lease, dir, deadline)
  end

  defp wait(name, lease, dir, deadline) do
    held =
      not Bench.Cgroup.gone?(name) or File.exists?(dir) or
        (lease != nil and
           match?({:ok, owner} when is_binary(owner), File.read(lease)) and
           String.contains?(File.read!(lease), name))

    cond do
      not held -> :ok
      System.monotonic_time(:millisecond) > deadline -> {:error, {:not_released, name}}
      true -> Process.sleep(1) && wait(name, lease, dir, deadline)
    end
  rescue
    # The lease vanished between the two reads.
    File.Error -> wait(name, lease, dir, deadline)
  end

  def wait_no_containers do
    deadline = System.monotonic_time(:millisecond) + 30_000
    wait_none(deadline)
  end

  defp wait_none(deadline) do
    busy =
      case File.ls(Path.join(Bench.Env.state_dir(), "apps")) do
        {:ok, entries} -> Enum.any?(entries, &(not String.starts_with?(&1, ".")))
        _ -> false
      end

    cond do
      not busy -> :ok
      System.monotonic_time(:millisecond) > deadline -> {:error, :containers_left}
      true -> Process.sleep(2) && wait_none(deadline)
    end
  end
end

defmodule Bench.Grading do
  # Real work for a node: grading a project of bench/corpus (a module and its ExUnit
  # tests) with bench/work/grader.ex. The grader is compiled to disk, in a directory of
  # this build added to the code path, which Ampule mounts into every container and the
  # benches hand to every `:peer` and local `elixir`: code of a script lives only in this
  # node's memory and cannot travel.

  def compile! do
    ebin = Path.join(Mix.Project.build_path(), "bench_work/ebin")
    File.rm_rf!(ebin)
    File.mkdir_p!(ebin)
    sources = Path.wildcard(Path.join(__DIR__, "work/*.ex"))
    {:ok, _modules, []} = Kernel.ParallelCompiler.compile_to_path(sources, ebin)
    true = Code.prepend_path(ebin)
    ebin
  end

  @doc "The first `n` projects (`:all` for every one), sorted by name."
  def corpus(n) do
    Path.join(__DIR__, "corpus/*/lib.ex")
    |> Path.wildcard()
    |> Enum.sort()
    |> then(&if(n == :all, do: &1, else: Enum.take(&1, n)))
    |> Enum.map(fn lib ->
      dir = Path.dirname(lib)
      test = Path.join(dir, "lib_test.exs")

      %{
        name: Path.basename(dir),
        lib: File.read!(lib),
        test: File.read!(test),
        lib_path: lib,
        test_path: test
      }
    end)
  end

  def mfa(p), do: {Bench.Work.Grader, :grade, [p.lib, p.test]}
end
