defmodule Ampule.Test.ClusterLab do
  @moduledoc false
  # A cluster of Ampule hosts on one machine, for tests and benchmarks.
  #
  # Each host is a network namespace of its own (`clh<K>-<id>`), joined to this BEAM's
  # namespace through a veth on a bridge of the lab's own (`clbr<id>`, 10.216.0.1/24; the
  # host is 10.216.0.1<K>), and runs a peer BEAM (`:peer`, started through
  # netns_exec.sh, which enters the namespace as Lab::port does so that the port inside
  # sees the cgroup hierarchies) with Ampule on its code path and its own bridge, subnet
  # and state directory (`ampuleh<K>`, 10.213.7<K>.0/24, /var/lib/ampule-h<K>). The
  # hosts' BEAMs and this one form one Erlang cluster over those veths; nothing is routed
  # anywhere else (no forwarding, no default route: each host has one route, to this
  # node's address).
  #
  # `stop/1` removes everything: peers (and whatever their namespaces still run, such as
  # an epmd), namespaces, the bridge, the state directories.

  alias Ampule.Test.Host

  @net "10.216.0"
  @script Path.expand("netns_exec.sh", __DIR__)

  defstruct [:id, :bridge, hosts: []]

  @doc "Starts `count` hosts (at most 3); returns the lab."
  def start(count, opts \\ []) when count in 1..3 do
    cleanup_stale()
    ensure_distributed()
    id = :rand.bytes(3) |> Base.encode16(case: :lower)
    bridge = "clbr#{id}"
    lab = %__MODULE__{id: id, bridge: bridge}

    try do
      sh!(["ip", "link", "add", bridge, "type", "bridge"])
      sh!(["ip", "addr", "add", "#{@net}.1/24", "dev", bridge])
      sh!(["ip", "link", "set", bridge, "up"])

      hosts =
        Enum.map(1..count, fn k ->
          host = start_host(lab, k, opts)
          # Started: stop/1 stops it, should a later step fail.
          send(self(), {:cluster_lab_host, host})
          host
        end)

      lab = %{lab | hosts: hosts}

      # A full mesh among the hosts: global makes one (its connect_all), asked here too
      # in case it has not yet; a connection may wait behind global's own.
      nodes = Enum.map(hosts, & &1.node)

      meshed? = fn ->
        Enum.all?(hosts, fn a ->
          missing = (nodes -- [a.node]) -- :erpc.call(a.node, Node, :list, [], 30_000)
          for b <- missing, do: :erpc.cast(a.node, Node, :connect, [b])
          missing == []
        end)
      end

      Host.wait_until(meshed?, 60_000) || raise "the hosts did not connect to each other"

      lab
    rescue
      error ->
        stop(%{lab | hosts: started([])})
        reraise error, __STACKTRACE__
    else
      lab ->
        _ = started([])
        lab
    end
  end

  defp started(acc) do
    receive do
      {:cluster_lab_host, host} -> started([host | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end

  @doc "The hosts' node names."
  def nodes(%__MODULE__{hosts: hosts}), do: Enum.map(hosts, & &1.node)

  @doc "Host `k` (1-based) of the lab."
  def host(%__MODULE__{hosts: hosts}, k), do: Enum.find(hosts, &(&1.k == k))

  defp start_host(lab, k, opts) do
    ns = "clh#{k}-#{lab.id}"
    veth = "clv#{k}#{lab.id}"
    address = "#{@net}.1#{k}"
    state_dir = "/var/lib/ampule-h#{k}"
    cgroup_dir = "/var/lib/ampule-h#{k}.cgroup"

    host = %{
      k: k,
      netns: ns,
      veth: veth,
      address: address,
      bridge: "ampuleh#{k}",
      subnet: "10.213.7#{k}.0/24",
      state_dir: state_dir,
      cgroup_dir: cgroup_dir,
      node: nil,
      peer: nil,
      os_pid: nil
    }

    sh!(["ip", "netns", "add", ns])

    try do
      boot_host(host, lab, opts)
    rescue
      error ->
        # The host as far as it got: stop/1 removes it with the others.
        send(self(), {:cluster_lab_partial, ns})
        reraise error, __STACKTRACE__
    end
  end

  defp boot_host(host, lab, opts) do
    %{k: k, netns: ns, veth: veth, address: address} = host
    %{state_dir: state_dir, cgroup_dir: cgroup_dir} = host
    sh!(["ip", "-n", ns, "link", "set", "lo", "up"])
    sh!(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    sh!(["ip", "link", "set", veth, "master", lab.bridge, "up"])
    sh!(["ip", "-n", ns, "addr", "add", "#{address}/24", "dev", "eth0"])
    sh!(["ip", "-n", ns, "link", "set", "eth0", "up"])

    # This node's address, if it is not on the lab's subnet (a node named on Ampule's
    # bridge, as Ampule names it when it starts distribution itself): one route to it.
    self_ip = node() |> Atom.to_string() |> String.split("@") |> List.last()

    unless String.starts_with?(self_ip, @net <> ".") do
      sh!(["ip", "-n", ns, "route", "add", "#{self_ip}/32", "via", "#{@net}.1"])
    end

    File.rm_rf!(state_dir)
    File.mkdir_p!(cgroup_dir)

    paths =
      for path <- :code.get_path(),
          path = List.to_string(path),
          not String.starts_with?(path, List.to_string(:code.root_dir())),
          File.dir?(path),
          do: path

    erl = System.find_executable("erl")

    {:ok, peer, node} =
      :peer.start(%{
        name: ~c"h#{k}_#{lab.id}",
        host: String.to_charlist(address),
        longnames: true,
        exec:
          {~c"/bin/sh",
           [String.to_charlist(@script), ~c"#{ns}", ~c"#{cgroup_dir}", String.to_charlist(erl)]},
        args:
          [~c"-setcookie", Atom.to_charlist(Node.get_cookie())] ++
            Enum.flat_map(paths, &[~c"-pa", String.to_charlist(&1)]),
        # Controlled over the wrapper's stdio, not over distribution: the host stays up
        # whatever becomes of its connection to this node (global may cut one to prevent
        # overlapping partitions), and goes when this BEAM goes (its stdin closes).
        connection: :standard_io,
        peer_down: :continue,
        wait_boot: 60_000
      })

    true = Node.connect(node)
    host = %{host | node: node, peer: peer}
    os_pid = :erpc.call(node, :os, :getpid, []) |> List.to_integer()
    host = %{host | os_pid: os_pid}

    env = [
      offer: true,
      bridge: host.bridge,
      subnet: host.subnet,
      state_dir: state_dir,
      cluster_interval: Keyword.get(opts, :cluster_interval, 1_000)
    ]

    :ok = :erpc.call(node, :logger, :set_primary_config, [:level, :warning])
    :ok = :erpc.call(node, Application, :put_all_env, [[ampule: env]])
    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:ampule], 30_000)
    {:ok, _hello} = :erpc.call(node, Ampule.Port, :hello, [], 70_000)
    host
  end

  @doc """
  Kills host `k`'s BEAM with SIGKILL (as a crash would); returns its OS pid. Its port
  program sees the end of its input and destroys its containers.
  """
  def kill(%__MODULE__{} = lab, k) do
    host = host(lab, k)
    {_, 0} = System.cmd("kill", ["-9", to_string(host.os_pid)])
    host.os_pid
  end

  @doc "Whether OS process `pid` is gone (or a zombie)."
  def exited?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} -> String.contains?(stat, ") Z ")
      {:error, _} -> true
    end
  end

  @doc """
  Processes still running in host `k`'s network namespace (its BEAM, epmd, port program,
  the containers' processes), as OS pids.
  """
  def netns_pids(%__MODULE__{} = lab, k) do
    {out, _} = System.cmd("ip", ["netns", "pids", host(lab, k).netns], stderr_to_stdout: true)
    out |> String.split() |> Enum.filter(&(&1 =~ ~r/^\d+$/)) |> Enum.reject(&zombie?/1)
  end

  defp zombie?(pid), do: exited?(pid)

  @doc "liblxc cgroups of containers named `names` (the machine's hierarchy is shared)."
  def cgroups_of(names) do
    Enum.filter(Host.cgroups(), fn path ->
      Enum.any?(names, &String.ends_with?(path, "." <> &1))
    end)
  end

  @doc "Removes the lab: peers, namespaces, bridge, state directories."
  def stop(%__MODULE__{} = lab) do
    for host <- lab.hosts do
      if host.peer && Process.alive?(host.peer) do
        try do
          :peer.stop(host.peer)
        catch
          _, _ -> :ok
        end
      end
    end

    partial = for_partial([])
    namespaces = Enum.map(lab.hosts, & &1.netns) ++ partial

    for ns <- Enum.uniq(namespaces), do: remove_netns(ns)

    for host <- lab.hosts,
        do: System.cmd("ip", ["link", "del", host.veth], stderr_to_stdout: true)

    _ = System.cmd("ip", ["link", "del", lab.bridge], stderr_to_stdout: true)
    remove_state_dirs()
    # A namespace's links go when the kernel has finished with it, a moment after.
    Host.wait_until(fn -> not Enum.any?(links(), &String.contains?(&1, lab.id)) end, 10_000)
    :ok
  end

  defp for_partial(acc) do
    receive do
      {:cluster_lab_partial, ns} -> for_partial([ns | acc])
    after
      0 -> acc
    end
  end

  # Waits for the port program (which destroys its containers once its BEAM is gone, and
  # must not be killed while it does) and the rest to end by themselves, all but epmd,
  # which never does; then kills what is left and deletes the namespace.
  defp remove_netns(ns) do
    Host.wait_until(fn -> Enum.all?(pids_in(ns), &(comm(&1) == "epmd")) end, 30_000)

    Host.wait_until(
      fn ->
        pids = pids_in(ns)
        for pid <- pids, do: System.cmd("kill", ["-9", pid], stderr_to_stdout: true)
        Enum.all?(pids, &exited?/1)
      end,
      10_000
    )

    _ = System.cmd("ip", ["netns", "del", ns], stderr_to_stdout: true)
  end

  defp pids_in(ns) do
    {out, _} = System.cmd("ip", ["netns", "pids", ns], stderr_to_stdout: true)
    out |> String.split() |> Enum.filter(&(&1 =~ ~r/^\d+$/)) |> Enum.reject(&exited?/1)
  end

  defp comm(pid) do
    case File.read("/proc/#{pid}/comm") do
      {:ok, name} -> String.trim(name)
      _ -> nil
    end
  end

  @doc "The hosts' state and cgroup-aside directories (for the suite's leftover check)."
  def state_dirs do
    Path.wildcard("/var/lib/ampule-h[0-9]") ++ Path.wildcard("/var/lib/ampule-h[0-9].cgroup")
  end

  @doc "Namespaces and bridges a lab left behind (for the suite's leftover check)."
  def links do
    {ns, _} = System.cmd("ip", ["netns", "list"], stderr_to_stdout: true)
    {links, _} = System.cmd("ip", ["-br", "link"], stderr_to_stdout: true)

    namespaces = for line <- String.split(ns, "\n"), line =~ ~r/^clh\d-/, do: line

    bridges =
      for line <- String.split(links, "\n"),
          [name | _] <- [String.split(line)],
          name =~ ~r/^cl(br|v\d)/,
          do: name

    namespaces ++ bridges
  end

  defp remove_state_dirs do
    for dir <- state_dirs() do
      # A port that died leaves its apps tmpfs mounted only in its own (gone) namespace;
      # here the directory is plain.
      File.rm_rf(dir)
    end
  end

  # A lab of an earlier run that died before its stop: remove it first.
  defp cleanup_stale do
    {ns, _} = System.cmd("ip", ["netns", "list"], stderr_to_stdout: true)

    for line <- String.split(ns, "\n"), line =~ ~r/^clh\d-/ do
      line |> String.split() |> hd() |> remove_netns()
    end

    {links, _} = System.cmd("ip", ["-br", "link"], stderr_to_stdout: true)

    for line <- String.split(links, "\n"),
        [name | _] <- [String.split(line)],
        name =~ ~r/^clbr/ do
      System.cmd("ip", ["link", "del", name], stderr_to_stdout: true)
    end

    remove_state_dirs()
  end

  # The hosts connect to this node: it must be alive with long names. Ampule names it on
  # its bridge when it starts distribution itself (as for any distribution container).
  defp ensure_distributed do
    {:ok, hello} = Ampule.Port.hello()
    :ok = Ampule.Distribution.ensure_started(hello.host_address)
  end

  defp sh!([cmd | args]) do
    case System.cmd(cmd, args, stderr_to_stdout: true) do
      {_, 0} -> :ok
      {out, status} -> raise "#{Enum.join([cmd | args], " ")} exited #{status}: #{out}"
    end
  end
end
