defmodule Ampule.SystemTest do
  # The seed's fourth example (a whole distribution, talked to through its console) with
  # busybox, the template that works offline; debian is in the Rust suite (slow). Async:
  # system containers boot beside application containers, as they would in use.
  use ExUnit.Case, async: true

  @moduletag :root
  @moduletag :lxc

  # Console output gathered from {:ampule_console, container, bytes} messages until `text`
  # has been seen.
  defp await_console(container, text, acc \\ "", timeout \\ 30_000) do
    if String.contains?(acc, text) do
      acc
    else
      receive do
        {:ampule_console, ^container, bytes} -> await_console(container, text, acc <> bytes)
      after
        timeout -> flunk("no #{inspect(text)} on the console; got #{inspect(acc)}")
      end
    end
  end

  test "the seed's console example: log in as ubuntu and run ls -al" do
    container = Ampule.create()
    await_console(container, "login:")

    # default username
    "ubuntu\n" |> Ampule.console(container)
    await_console(container, "Password:")
    # default password
    "ubuntu\n" |> Ampule.console(container)
    await_console(container, "$ ")
    # run a command
    "ls -al\n" |> Ampule.console(container)
    output = await_console(container, "..")
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
    await_console(container, "login:")
    "alice\n" |> Ampule.console(container)
    await_console(container, "Password:")
    "s3cret\n" |> Ampule.console(container)
    await_console(container, "$ ")
    "echo kept > ~/note; echo saved-$((1+1))\n" |> Ampule.console(container)
    await_console(container, "saved-2")

    assert :ok = Ampule.stop(container)
    assert {:ok, %{state: :stopped}} = Ampule.info(container)
    assert :ok = Ampule.restart(container)
    await_console(container, "login:")
    "alice\n" |> Ampule.console(container)
    await_console(container, "Password:")
    "s3cret\n" |> Ampule.console(container)
    await_console(container, "$ ")
    "cat ~/note\n" |> Ampule.console(container)
    await_console(container, "kept\r\n")
    assert :ok = Ampule.destroy(container)
  end

  test "a busybox system container runs under LXC's own seccomp profile" do
    container = Ampule.create()
    # Its template's config loads none (debian's includes LXC's common.conf): the port's does.
    config = Path.join([Ampule.Test.Host.state_dir(), "lxc", container.name, "config"])
    assert File.read!(config) =~ "lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp\n"
    assert File.read!("/proc/#{container.init_pid}/status") =~ ~r/Seccomp:\s+2\n/
    assert :ok = Ampule.destroy(container)
  end

  test "a template that needs the internet fails at once, naming why" do
    assert {:error, {:template_unavailable, "download", why}} =
             Ampule.create_container(template: "download")

    assert why =~ "internet"
    assert_raise ArgumentError, fn -> Ampule.create(colour: :red) end
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
end
