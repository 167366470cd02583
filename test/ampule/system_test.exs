defmodule Ampule.SystemTest do
  # The seed's fourth example (a whole distribution, talked to through its console) with
  # busybox, the template that works offline; debian is in the Rust suite (slow). Async:
  # system containers boot beside application containers, as they would in use.
  use ExUnit.Case, async: true

  @moduletag :root
  @moduletag :lxc

  import Ampule.Test.ConsoleHelpers

  test "the seed's console example: log in as ubuntu and run ls -al" do
    container = Ampule.create()
    read_until(container, "login:")

    # default username
    "ubuntu\n" |> Ampule.console(container)
    read_until(container, "Password:")
    # default password
    "ubuntu\n" |> Ampule.console(container)
    read_until(container, "$ ")
    # run a command
    "ls -al\n" |> Ampule.console(container)
    output = read_until(container, "..")
    assert output =~ "ls -al"

    assert {:ok, %{state: :running, kind: :system}} = Ampule.info(container)
    assert :ok = Ampule.destroy(container)
    assert {:error, :not_found} = Ampule.info(container)
  end

  test "stop keeps the disk and restart boots it again" do
    container = Ampule.create(user: "alice", password: "s3cret", progress: true)
    name = container.name
    assert_received {:ampule_progress, ^name, :creating}
    assert_received {:ampule_progress, ^name, :starting}
    assert_received {:ampule_progress, ^name, :running}
    read_until(container, "login:")
    "alice\n" |> Ampule.console(container)
    read_until(container, "Password:")
    "s3cret\n" |> Ampule.console(container)
    read_until(container, "$ ")
    "echo kept > ~/note; echo saved-$((1+1))\n" |> Ampule.console(container)
    read_until(container, "saved-2")

    assert :ok = Ampule.stop(container)
    assert {:ok, %{state: :stopped}} = Ampule.info(container)
    assert :ok = Ampule.restart(container)
    read_until(container, "login:")
    "alice\n" |> Ampule.console(container)
    read_until(container, "Password:")
    "s3cret\n" |> Ampule.console(container)
    read_until(container, "$ ")
    "cat ~/note\n" |> Ampule.console(container)
    read_until(container, "kept\r\n")
    assert :ok = Ampule.destroy(container)
  end

  test "console flow control: n messages then passive, :once one, and nothing is lost" do
    container = Ampule.create(active: 3)
    login(container)
    # The login may have used the count up exactly: its passive message is here already.
    :ok = Ampule.console_active(container, false)
    receive do: ({:ampule_console_passive, ^container} -> :ok), after: (0 -> :ok)

    # ~110 KB of numbered lines, at least 7 chunks of 16 KiB: they wait while passive.
    "seq 1 20000; echo MARK-$((6*7))\n" |> Ampule.console(container)
    refute_console(container)

    :ok = Ampule.console_active(container, 3)

    assert [{:data, a}, {:data, b}, {:data, c}, :passive] =
             for(_ <- 1..4, do: next_console(container))

    refute_console(container)

    :ok = Ampule.console_active(container, :once)
    assert {:data, d} = next_console(container)
    refute_console(container)

    # An integer is added to the count, as for sockets: 0 leaves it at 0, which says passive.
    :ok = Ampule.console_active(container, 0)
    assert :passive = next_console(container)
    refute_console(container)

    :ok = Ampule.console_active(container, true)
    text = read_until(container, "MARK-42", 30_000, a <> b <> c <> d)
    assert_seq_then_mark(text, 20_000)

    assert {:error, :not_found} = Ampule.console_active("no-such-container", 1)
    assert_raise ArgumentError, ~r/:active/, fn -> Ampule.console_active(container, :twice) end
    assert :ok = Ampule.destroy(container)
    assert {:error, :not_found} = Ampule.console_active(container, 1)
  end

  test "a busybox system container runs under LXC's own seccomp profile" do
    container = Ampule.create()
    # Its template's config loads none (debian's includes LXC's common.conf): the port's does.
    config = Path.join([Ampule.Test.Host.state_dir(), "lxc", container.name, "config"])
    assert File.read!(config) =~ "lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp\n"
    assert File.read!("/proc/#{container.init_pid}/status") =~ ~r/Seccomp:\s+2\n/
    assert :ok = Ampule.destroy(container)
  end

  test "info/1 right after create/1: what the container has not yet is nil" do
    container = Ampule.create()
    assert {:ok, info} = Ampule.info(container)
    refute :undefined in Map.values(info)
    assert info.kind == :system and is_integer(info.init_pid)
    assert info.address == nil or is_binary(info.address)
    assert :ok = Ampule.destroy(container)
  end

  test "a template that needs the internet fails at once, naming why" do
    assert {:error, {:template_unavailable, "download", why}} =
             Ampule.create_container(template: "download")

    assert why =~ "internet"
    assert_raise ArgumentError, fn -> Ampule.create(colour: :red) end
    # `true` must be asked for; a count starts above 0.
    assert_raise ArgumentError, ~r/:active/, fn -> Ampule.create(active: 0) end
    assert_raise ArgumentError, ~r/:active/, fn -> Ampule.create(active: :always) end
  end

  test "the owner's exit destroys its system container" do
    test = self()

    owner =
      spawn(fn ->
        container = Ampule.create()
        send(test, {:made, container})
        receive do: (:stop -> :ok)
      end)

    assert_receive {:made, container}, 30_000
    ref = Process.monitor(owner)
    send(owner, :stop)
    assert_receive {:DOWN, ^ref, :process, _, _}
    assert Ampule.Test.Host.wait_until(fn -> Ampule.info(container) == {:error, :not_found} end)
  end

  test "an owner that exits while its system container is created: it is destroyed on arrival" do
    # Already gone when the create is asked: the port's monitor fires while the create
    # runs. Before, that exit was forgotten and the container outlived its owner.
    owner = spawn(fn -> :ok end)
    ref = Process.monitor(owner)
    assert_receive {:DOWN, ^ref, :process, _, _}
    name = "s-orphan-#{System.unique_integer([:positive])}"

    assert Ampule.create_container(name: name, owner: owner) == {:error, :owner_exited}

    assert Ampule.Test.Host.wait_until(fn ->
             {:ok, names} = Ampule.list()
             name not in names
           end)
  end
end
