defmodule Ampule.PortRestartTest do
  # kill -9 of the real port program: callers hear at once, a new port takes over and
  # removes what the dead one left behind. Not async: it takes Ampule's port away.
  import Ampule.Test.Host, only: [wait_until: 1]
  use ExUnit.Case, async: false

  @moduletag :root
  @moduletag :lxc

  alias Ampule.Test.Host

  test "pending callers get :port_exited at once; the port restarts and sweeps" do
    {:ok, _} = Ampule.Port.hello()
    survivor = Ampule.spawn(name: "before-kill-#{System.unique_integer([:positive])}")
    os_pid = Ampule.Port.os_pid()
    parent = self()
    booting = "booting-#{System.unique_integer([:positive])}"

    caller =
      Task.async(fn ->
        send(parent, :calling)
        Ampule.start(name: booting)
      end)

    assert_receive :calling
    # Kill the port while the spawn is pending (the port knows the container).
    assert wait_until(fn ->
             match?({:ok, _}, Ampule.Port.request(Ampule.Port, {:info, booting}, 1_000))
           end)

    started = System.monotonic_time(:millisecond)
    {_, 0} = System.cmd("kill", ["-9", to_string(os_pid)])

    assert {:error, :port_exited} = Task.await(caller, 5_000)
    assert System.monotonic_time(:millisecond) - started < 2_000
    assert_receive {:ampule_exit, ^survivor, :port_exited}, 5_000

    # A new port (new OS pid) serves the next request...
    container = wait_for_spawn()
    assert Ampule.Port.os_pid() != os_pid
    assert Ampule.call({:erlang, :node, []}, container) == container.nodename
    :ok = Ampule.destroy(container)

    # ...after removing the dead port's containers: directories and veths.
    dirs = Enum.map(Host.container_dirs(), &Path.basename/1)
    refute booting in dirs
    refute survivor.name in dirs
  end

  defp wait_for_spawn(tries \\ 50) do
    case Ampule.start() do
      {:ok, container} ->
        container

      {:error, reason} when reason in [:not_running, :port_exited] and tries > 0 ->
        Process.sleep(100)
        wait_for_spawn(tries - 1)
    end
  end
end
