defmodule Ampule.PortTest do
  # Ampule.Port as a protocol client, against test/support/fake_port.escript: a stand-in
  # that speaks the framing and envelope of docs/protocol.md but runs no container.
  # Nothing here claims to test containers; those tests use the real port.
  use ExUnit.Case, async: true

  alias Ampule.Port

  @fake Path.expand("../support/fake_port.escript", __DIR__)

  defp start_port(context, args \\ []) do
    name = :"port_#{context.test |> :erlang.phash2()}"

    spec = %{
      id: name,
      start: {Port, :start_link, [[name: name, executable: @fake, args: args, sudo: false]]}
    }

    start_supervised!(spec)
    name
  end

  test "replies are routed by tag, whatever their order", context do
    port = start_port(context)

    tasks =
      for {term, delay} <- [{:slow, 400}, {:middle, 200}, {:fast, 0}] do
        Task.async(fn -> {term, Port.request(port, {:echo, term, delay})} end)
      end

    assert [slow: {:ok, :slow}, middle: {:ok, :middle}, fast: {:ok, :fast}] ==
             Enum.map(tasks, &Task.await/1)
  end

  test "waits for the hello and returns it", context do
    port = start_port(context)
    assert {:ok, %{protocol: 3, host_address: "127.0.0.1"}} = Port.hello(port)
  end

  test "refuses a protocol version it does not know", context do
    port = start_port(context, ["--protocol", "1"])
    assert {:error, {:unsupported_protocol, 1}} = Port.request(port, :list)
    assert Ampule.format_error({:unsupported_protocol, 1}) =~ "mix compile --force"
  end

  test "a fatal event becomes :host_not_ready with the port's message", context do
    port = start_port(context, ["--fatal"])

    assert {:error, {:host_not_ready, :not_root, "run the port as root"}} =
             Port.request(port, :list)

    # The port is started again for the next request (the host may have been fixed).
    assert {:error, {:host_not_ready, :not_root, _}} = Port.request(port, :list)
    assert Ampule.format_error({:host_not_ready, :not_root, "x"}) =~ "mix ampule.check"
  end

  test "a missing port program is reported with its path", context do
    name = :"port_#{:erlang.phash2(context.test)}"
    start_supervised!({Port, name: name, executable: "/nonexistent/ampule_port", sudo: false})
    assert {:error, {:port_not_found, "/nonexistent/ampule_port"}} = Port.request(name, :list)
  end

  test "unknown requests get the port's error", context do
    port = start_port(context)
    assert {:error, {:unknown_request, :nonsense}} = Port.request(port, :nonsense)
  end

  test "when the port dies, pending callers get :port_exited at once and it restarts",
       context do
    port = start_port(context)
    {:ok, _} = Port.hello(port)
    os_pid = Port.os_pid(port)
    parent = self()

    caller =
      Task.async(fn ->
        send(parent, :sent)
        Port.request(port, :hang, 60_000)
      end)

    assert_receive :sent, 5_000
    # The request is in the port once an echo sent after it has come back.
    assert {:ok, :after} = Port.request(port, {:echo, :after, 0})
    started = System.monotonic_time(:millisecond)
    {_, 0} = System.cmd("kill", ["-9", to_string(os_pid)])

    assert {:error, :port_exited} = Task.await(caller, 5_000)
    assert System.monotonic_time(:millisecond) - started < 2_000

    # The supervisor starts a new Ampule.Port, which starts a new port program.
    assert {:ok, :again} = wait_for(fn -> Port.request(port, {:echo, :again, 0}) end)
    assert Port.os_pid(port) != os_pid
  end

  test "log events reach Logger with the container's name as metadata and in the text",
       context do
    port = start_port(context)
    Ampule.TestLogHandler.attach(context.test, self())

    assert :ok = Port.request(port, {:log, :warn, "veth up", "box-1"})
    assert_receive {:log, :warning, "ampule_port: box-1: veth up", %{container: "box-1"}}

    assert :ok = Port.request(port, {:log, :info, "swept", :undefined})
    assert_receive {:log, :info, "ampule_port: swept", meta}
    refute Map.has_key?(meta, :container)
  end

  test "the owner of a container hears of its exit", context do
    port = start_port(context)
    {:ok, container} = Port.spawn(port, %{name: "exits"}, self())
    assert :ok = Port.request(port, {:exit_event, "exits", 3})
    assert_receive {:ampule_exit, ^container, 3}
  end

  test "an owner's exit destroys its containers", context do
    port = start_port(context)
    parent = self()

    owner =
      spawn(fn ->
        {:ok, _} = Port.spawn(port, %{name: "owned"}, self())
        {:ok, _} = Port.spawn(port, %{name: "unowned"}, nil)
        send(parent, :spawned)
        Process.sleep(:infinity)
      end)

    assert_receive :spawned, 5_000
    Process.exit(owner, :kill)

    assert {:ok, ["owned"]} =
             wait_for(fn -> Port.request(port, :destroyed) end, &(&1 != {:ok, []}))
  end

  test "an owner that exits while its container boots: destroyed when the reply comes",
       context do
    port = start_port(context)
    parent = self()

    # The fake port delays its spawn reply by boot_timeout / 1000 ms.
    owner =
      spawn(fn ->
        send(parent, {:result, Port.spawn(port, %{name: "late", boot_timeout: 500_000}, self())})
      end)

    # Let the request reach the port, then kill the owner before the reply.
    assert {:ok, :ping} = Port.request(port, {:echo, :ping, 0})
    Process.exit(owner, :kill)

    assert {:ok, ["late"]} =
             wait_for(fn -> Port.request(port, :destroyed) end, &(&1 != {:ok, []}), 5_000)
  end

  defp wait_for(fun, done? \\ &match?({:ok, _}, &1), timeout \\ 5_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll(fun, done?, deadline)
  end

  defp poll(fun, done?, deadline) do
    result = fun.()

    if done?.(result) or System.monotonic_time(:millisecond) > deadline do
      result
    else
      Process.sleep(20)
      poll(fun, done?, deadline)
    end
  end
end
