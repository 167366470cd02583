defmodule Ampule.SandboxTest do
  # Sandboxes (`sandbox: true`) through the public API, against real containers: the same
  # calls as a distribution container, with closures, timeouts that kill, owners and exit
  # statuses, output kept in the sandbox, and boots that fail. What a sandbox must not do
  # or send is in hostile_sandbox_test.exs.
  use ExUnit.Case, async: true

  import Ampule.Test.Host, only: [wait_until: 1]
  import ExUnit.CaptureIO

  alias Ampule.{RemoteHelpers, SandboxHelpers}

  @moduletag :root
  @moduletag :lxc

  setup_all do
    %{sandbox: Ampule.spawn(sandbox: true)}
  end

  defp eval(code), do: code |> Code.eval_string() |> elem(0)
  defp info(name), do: Ampule.Port.request({:info, name})
  defp registered?(c, name), do: Ampule.call({SandboxHelpers, :registered?, [name]}, c)

  test "a sandbox has no node name, address or cookie; its node is not distributed",
       %{sandbox: c} do
    assert %Ampule.Container{sandbox: true, nodename: nil, address: nil, cookie: nil} = c
    assert c.max_result == 64 * 1024 * 1024
    assert {:ok, %{kind: :sandbox, state: :running}} = info(c.name)
    assert Ampule.call({:erlang, :node, []}, c) == :nonode@nohost
    assert Ampule.call({:erlang, :is_alive, []}, c) == false
  end

  test "the seed's pipeline, in anonymous sandboxes" do
    assert {:erlang, :node, []}
           |> Ampule.call(sandbox: true)
           |> Ampule.mfa(:erlang, :atom_to_list)
           |> Ampule.call(sandbox: true) == ~c"nonode@nohost"
  end

  test "MFAs, closures made by iex (erl_eval) and closures of compiled modules",
       %{sandbox: c} do
    assert Ampule.call({String, :upcase, ["sandbox"]}, c) == "SANDBOX"
    assert Ampule.call({RemoteHelpers, :elixir_inside, [["a", "b"]]}, c) == "A B"

    assert Ampule.call(eval("words = [\"x\", \"y\"]; fn -> Enum.join(words, \"+\") end"), c) ==
             "x+y"

    assert Ampule.call(SandboxHelpers.sum_fun([1, 2, 3]), c) == 6
    assert Ampule.call(eval("fn -> :os.cmd(~c\"id -u\") end"), c) == ~c"1000\n"
  end

  test "a raise comes as Ampule.RemoteError with the sandbox's stack trace; a throw thrown, an exit exited",
       %{sandbox: c} do
    error = catch_error(Ampule.call({RemoteHelpers, :raise_error, ["boom"]}, c))
    assert %Ampule.RemoteError{module: "ArgumentError", message: "boom"} = error
    assert error.container == c.name

    assert {:error,
            {:exception, %Ampule.RemoteError{module: "ArgumentError"},
             [{RemoteHelpers, :raise_error, 1, _} | _]}} =
             Ampule.yield(Ampule.async_call({RemoteHelpers, :raise_error, ["x"]}, c))

    assert catch_throw(Ampule.call({RemoteHelpers, :throw_value, [:ball]}, c)) == :ball
    assert catch_exit(Ampule.call({RemoteHelpers, :exit_with, [:bye]}, c)) == :bye
  end

  test "a call that times out is killed in the sandbox before it returns", %{sandbox: c} do
    error =
      assert_raise Ampule.Error, fn ->
        Ampule.call({RemoteHelpers, :register_and_sleep, [:sb_victim, 60_000]}, c, 300)
      end

    assert error.reason == :timeout
    refute registered?(c, :sb_victim)

    call = Ampule.async_call({RemoteHelpers, :register_and_sleep, [:sb_yield, 60_000]}, c)
    assert Ampule.yield(call, 300) == {:error, :timeout}
    refute registered?(c, :sb_yield)
  end

  test "a call whose caller exits is killed", %{sandbox: c} do
    parent = self()

    caller =
      spawn(fn ->
        Ampule.async_call({RemoteHelpers, :register_and_sleep, [:sb_orphan, 60_000]}, c)
        send(parent, :called)
        Process.sleep(:infinity)
      end)

    assert_receive :called
    assert wait_until(fn -> registered?(c, :sb_orphan) end)
    Process.exit(caller, :kill)
    assert wait_until(fn -> not registered?(c, :sb_orphan) end)
  end

  test "cast runs without waiting; its timeout kills it", %{sandbox: c} do
    :ok = Ampule.cast({RemoteHelpers, :register_and_sleep, [:sb_cast, 60_000]}, c, 500)
    assert wait_until(fn -> registered?(c, :sb_cast) end)
    assert wait_until(fn -> not registered?(c, :sb_cast) end)

    :ok =
      Ampule.cast(
        eval("fn -> Process.register(self(), :sb_cast_fun); Process.sleep(60_000) end"),
        c
      )

    assert wait_until(fn -> registered?(c, :sb_cast_fun) end)
  end

  test "multicall over a sandbox and a distribution container, one deadline",
       %{sandbox: c} do
    dist = Ampule.spawn()

    assert [{:ok, :nonode@nohost}, {:ok, node}] =
             Ampule.multicall({:erlang, :node, []}, [c, dist])

    assert node == dist.nodename

    assert [{:error, :timeout}, {:error, :timeout}] =
             Ampule.multicall({:timer, :sleep, [60_000]}, [c, dist], 300)

    # Closures in a distribution container too.
    assert Ampule.call(SandboxHelpers.sum_fun([4, 5]), dist) == 9
    assert Ampule.call(eval("fn -> node() end"), dist) == dist.nodename
    :ok = Ampule.destroy(dist)
  end

  test "an anonymous sandbox is destroyed after its call, also after a timeout" do
    name = "sb-anon-#{System.unique_integer([:positive])}"
    assert Ampule.call({:erlang, :+, [1, 2]}, sandbox: true, name: name) == 3
    assert {:error, :not_found} = info(name)

    assert_raise Ampule.Error, ~r/killed/, fn ->
      Ampule.call({:timer, :sleep, [60_000]}, sandbox: true, name: name, timeout: 300)
    end

    assert {:error, :not_found} = info(name)
  end

  test "the owner's exit destroys its sandboxes; owner: false opts out" do
    parent = self()
    owned = "sb-owned-#{System.unique_integer([:positive])}"
    kept = "sb-kept-#{System.unique_integer([:positive])}"

    owner =
      spawn(fn ->
        Ampule.spawn(sandbox: true, name: owned)
        send(parent, {:kept, Ampule.spawn(sandbox: true, name: kept, owner: false)})
        Process.sleep(:infinity)
      end)

    assert_receive {:kept, kept_container}, 30_000
    Process.exit(owner, :kill)
    assert wait_until(fn -> info(owned) == {:error, :not_found} end)
    assert Ampule.call({:erlang, :+, [1, 1]}, kept_container) == 2
    assert :ok = Ampule.destroy(kept_container)
    assert {:error, :not_found} = Ampule.destroy(kept_container)
  end

  test "a sandbox that halts: its owner hears the status, its calls fail at once" do
    c = Ampule.spawn(sandbox: true)
    call = Ampule.async_call({:timer, :sleep, [60_000]}, c)
    :ok = Ampule.cast({:erlang, :halt, [3]}, c)
    assert Ampule.yield(call, 10_000) == {:error, :noconnection}
    assert_receive {:ampule_exit, ^c, 3}, 5_000

    error = assert_raise Ampule.Error, fn -> Ampule.call({:erlang, :node, []}, c) end
    assert error.reason == :noconnection
  end

  test "the sandbox's standard output and error go to its log, not to the caller",
       %{sandbox: c} do
    mark = "printed-#{System.unique_integer([:positive])}"

    assert capture_io(fn -> Ampule.call({SandboxHelpers, :print, [mark]}, c) end) == ""

    # The node's output port writes behind io's reply: on a loaded machine the log was
    # still empty when the call returned (a CI run).
    log = fn -> elem(Ampule.Port.request({:log_tail, c.name}), 1) end

    assert wait_until(fn -> length(String.split(log.(), mark)) == 3 end),
           "twice in #{inspect(log.())}"
  end

  test "host_code_paths: false: the agent is still there, the project's code is not" do
    c = Ampule.spawn(sandbox: true, host_code_paths: false)
    assert Ampule.call({:lists, :seq, [1, 2]}, c) == [1, 2]
    # Without Elixir on its code path, the agent describes the error as Erlang does.
    error = catch_error(Ampule.call({RemoteHelpers, :spin, [1]}, c))
    assert %Ampule.RemoteError{module: "ErlangError", message: "undef"} = error
    :ok = Ampule.destroy(c)
  end

  test "a pool of sandboxes hands out sandboxes" do
    pool = :"sandbox_pool_#{System.unique_integer([:positive])}"
    start_supervised!({Ampule.Pool, name: pool, size: 1, sandbox: true})

    assert Ampule.Pool.with_container(pool, fn c ->
             {c.sandbox, Ampule.call({:erlang, :node, []}, c)}
           end) == {true, :nonode@nohost}
  end

  describe "boots that fail" do
    test "the node exits before the agent's hello: {:boot_failed, status, log}" do
      assert {:error, {:boot_failed, 1, log}} =
               Ampule.start(sandbox: true, args: ["-boot", "/nonexistent"])

      # What the node printed ("cannot get bootfile") is gone with it: the port removes a
      # container as its init exits, before `log_tail` can read it. The exit event is to
      # carry it (docs/protocol.md); Ampule.Sandbox takes it from there when it does.
      assert is_binary(log)
    end

    test "no hello within the boot timeout: {:boot_timeout, :agent, log}" do
      # ERL_AFLAGS goes before the command line: an -eval that never returns keeps the
      # node from reaching the agent's -run.
      flags = "-eval io:format([115,105,108,101,110,116,10]) -eval timer:sleep(infinity)"
      name = "sb-silent-#{System.unique_integer([:positive])}"

      assert {:error, {:boot_timeout, :agent, log}} =
               Ampule.start(
                 sandbox: true,
                 env: [{"ERL_AFLAGS", flags}],
                 boot_timeout: 3_000,
                 name: name
               )

      assert log =~ "silent"
      assert Ampule.format_error({:boot_timeout, :agent, log}) =~ "silent"
      assert {:error, :not_found} = info(name)
    end
  end
end
