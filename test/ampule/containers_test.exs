defmodule Ampule.ContainersTest do
  # Making containers, their owners, their errors, their logs: real containers.
  import Ampule.Test.Host, only: [wait_until: 1, wait_until: 2]
  use ExUnit.Case, async: true

  @moduletag :root
  @moduletag :lxc

  defp unique(prefix), do: "#{prefix}-#{System.unique_integer([:positive])}"

  defp info(name), do: Ampule.Port.request({:info, name})

  test "start/1 returns a container; destroy/1 kills it at once and releases the rest behind" do
    name = unique("plain")
    assert {:ok, %Ampule.Container{name: ^name} = c} = Ampule.start(name: name)
    assert c.address =~ ~r/\A#{Regex.escape(Ampule.Test.Host.subnet_prefix())}\d+\z/
    assert c.nodename == :"#{name}@#{c.address}"
    assert c.owner == self()
    assert {:ok, %{state: :running}} = info(name)
    assert {:ok, names} = Ampule.list()
    assert name in names

    pids = Ampule.Test.Host.container_pids(name)
    assert pids != []

    assert :ok = Ampule.destroy(c)
    # Nothing of it runs once destroy returns (an exited init may wait a moment as a
    # zombie for liblxc's monitor to reap it)...
    assert Enum.filter(pids, &Ampule.Test.Host.runs?/1) == []
    assert {:error, :not_found} = info(name)
    refute name in elem(Ampule.list(), 1)
    assert {:error, :not_found} = Ampule.destroy(c)
    # ...and its directory, cgroups and address follow right behind.
    assert wait_until(fn -> Ampule.Test.Host.traces_of(name) == [] end, 2_000)
  end

  test "a destroyed container's name can be used again at once" do
    name = unique("again")
    first = Ampule.spawn(name: name)
    assert :ok = Ampule.destroy(first)
    second = Ampule.spawn(name: name)
    assert second.address != nil
    assert Ampule.call({:erlang, :node, []}, second) == second.nodename
    assert :ok = Ampule.destroy(second)
  end

  test "the owner's exit destroys its containers; owner: false opts out" do
    parent = self()
    owned = unique("owned")
    kept = unique("kept")

    owner =
      spawn(fn ->
        Ampule.spawn(name: owned)
        Ampule.spawn(name: kept, owner: false)
        send(parent, :spawned)
        Process.sleep(:infinity)
      end)

    assert_receive :spawned, 30_000
    assert {:ok, _} = info(owned)
    Process.exit(owner, :kill)

    assert wait_until(fn -> info(owned) == {:error, :not_found} end)
    assert {:ok, %{state: :running}} = info(kept)
    assert :ok = Ampule.destroy(kept)
  end

  test "an owner killed while its container boots: the container is destroyed" do
    name = unique("orphan")
    parent = self()
    owner = spawn(fn -> send(parent, {:started, Ampule.start(name: name)}) end)

    # Kill the owner once the port has the container (booting), before the reply.
    assert wait_until(fn -> match?({:ok, _}, info(name)) end, 10_000)
    Process.exit(owner, :kill)

    assert wait_until(fn -> info(name) == {:error, :not_found} end)
  end

  test "the owner hears when the container's node stops on its own; the port logs it" do
    Ampule.TestLogHandler.attach(:containers_test_exit_log, self())
    c = Ampule.spawn()
    :ok = Ampule.cast({:erlang, :halt, [3]}, c)
    assert_receive {:ampule_exit, ^c, 3}, 10_000
    assert {:error, :not_found} = info(c.name)

    # The port's log line about it reaches Logger with the container's name as metadata.
    name = c.name
    assert_receive {:log, _level, _message, %{container: ^name}}, 5_000
  end

  test "a boot that fails: {:boot_failed, status, log_tail}, the container destroyed" do
    name = unique("fails")

    # An erl that cannot boot (no such boot script) exits before distribution starts.
    assert {:error, {:boot_failed, status, log}} =
             Ampule.start(name: name, args: ["-boot", "no_such_boot"])

    assert is_integer(status) and status != 0
    assert log =~ "no_such_boot"
    assert {:error, :not_found} = info(name)

    error = assert_raise Ampule.Error, fn -> Ampule.spawn(args: ["-boot", "no_such_boot"]) end
    assert Exception.message(error) =~ "exited with status"
    assert Exception.message(error) =~ "no_such_boot"
  end

  test "a boot timeout: {:boot_timeout, phase, log_tail}, the container destroyed" do
    name = unique("slow")
    assert {:error, {:boot_timeout, phase, log}} = Ampule.start(name: name, boot_timeout: 1)
    assert phase in [:create, :start, :announce]
    assert is_binary(log)
    assert {:error, :not_found} = info(name)

    error = assert_raise Ampule.Error, fn -> Ampule.spawn(boot_timeout: 1) end
    assert Exception.message(error) =~ "boot timeout"
  end

  test "a node that announces a name not its own is refused: a boot timeout, nothing left" do
    # Without distribution its node is nonode@nohost, which its announcement says: the
    # port counts only the container's own name (docs/protocol.md, `announce`).
    name = unique("nodist")

    assert {:error, {:boot_timeout, :announce, _log}} =
             Ampule.start(
               name: name,
               boot_timeout: 3_000,
               args: ["-kernel", "start_distribution", "false"]
             )

    assert {:error, :not_found} = info(name)
  end

  test "the node said it was up; this node's connection is the check" do
    # Ready is the node's word (its announcement), so a node this host cannot reach (it
    # listens on its own loopback only) boots, and the connection fails: a clear error,
    # the container destroyed.
    name = unique("unreachable")

    assert {:error, {:connect_failed, node, _}} =
             Ampule.start(name: name, args: ["-kernel", "inet_dist_use_interface", "{127,0,0,1}"])

    assert Atom.to_string(node) =~ name
    assert {:error, :not_found} = info(name)
  end

  test "a name in use" do
    name = unique("twice")
    c = Ampule.spawn(name: name)
    assert {:error, :name_in_use} = Ampule.start(name: name)
    assert :ok = Ampule.destroy(c)
  end

  test "limits and environment reach the node" do
    c = Ampule.spawn(env: [AMPULE_TEST: "yes"], memory: 256 * 1024 * 1024, pids: 256)
    assert Ampule.call({System, :get_env, ["AMPULE_TEST"]}, c) == "yes"
  end

  test "the host's code is there: a module of this project runs in the container" do
    c = Ampule.spawn()
    assert Ampule.call({Ampule.RemoteHelpers, :elixir_inside, [["x"]]}, c) == "X"

    # Given after OTP's own directories (-pz), so that a boot finds each OTP module where
    # it lives first; put before them once the node has booted, in both kinds, so that
    # Elixir's modules are found first (ampule_code_path).
    elixir_ebin = Path.expand(to_string(:code.lib_dir(:elixir, :ebin)))
    kernel_ebin = Path.expand(to_string(:code.lib_dir(:kernel, :ebin)))

    for node <- [c, Ampule.spawn(sandbox: true)] do
      assert {:ok, [pz | _]} = Ampule.call({:init, :get_argument, [:pz]}, node)
      assert elixir_ebin in Enum.map(pz, &to_string/1)

      path = Ampule.call({:code, :get_path, []}, node) |> Enum.map(&Path.expand(to_string(&1)))
      kernel = Enum.find_index(path, &(&1 == kernel_ebin))
      elixir = Enum.find_index(path, &(&1 == elixir_ebin))
      assert elixir < kernel
    end

    # Without the host's code paths, Ampule still loads what it needs to run calls.
    bare = Ampule.spawn(host_code_paths: false)
    assert Ampule.call({:erlang, :node, []}, bare) == bare.nodename

    assert {:error, {:exception, %UndefinedFunctionError{module: Enum}, _}} =
             Ampule.yield(Ampule.async_call({Enum, :sum, [[1]]}, bare))
  end
end
