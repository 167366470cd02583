defmodule Ampule.SandboxChannelTest do
  # The agent channel on its own, without containers (no root): a channel listening on a
  # socket in a temporary directory, and either the real agent in a plain local `erl`, or
  # this test playing a hostile agent byte by byte. Calls go through the public API
  # (Ampule.call/3 and friends) with a container struct pointing at the channel. The same
  # behaviours against real sandboxes are in sandbox_test.exs and hostile_sandbox_test.exs.
  use ExUnit.Case, async: true

  import Ampule.Test.Host, only: [wait_until: 1, wait_until: 2]

  alias Ampule.{Container, SandboxHelpers}
  alias Ampule.Sandbox.{Channel, Frame}
  alias Ampule.Test.LocalAgent

  @max 1024 * 1024

  setup context do
    dir = Path.join(System.tmp_dir!(), "ampule-channel-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    path = Path.join(dir, "agent.sock")
    max = context[:max] || @max

    {:ok, channel} =
      Channel.start(
        path: path,
        max: max,
        boot_timeout: context[:boot_timeout] || 15_000,
        uid: context[:uid],
        port: :no_port_in_these_tests
      )

    on_exit(fn -> Channel.stop(channel) end)

    container = %Container{
      name: "local-#{System.unique_integer([:positive])}",
      nodename: nil,
      address: nil,
      cookie: nil,
      sandbox: true,
      channel: channel,
      max_result: max
    }

    %{path: path, channel: channel, container: container}
  end

  # Starts the real agent in a local node and waits for its hello.
  defp with_agent(%{path: path, channel: channel, container: c}) do
    agent = LocalAgent.start(path)
    os_pid = LocalAgent.os_pid(agent)
    on_exit(fn -> LocalAgent.stop(os_pid) end)
    assert :ok = Channel.await_ready(channel, c.name, 20_000)
    agent
  end

  # This test as the agent: connects and (unless told otherwise) says hello.
  defp as_agent(%{path: path, channel: channel, container: c}, hello \\ Frame.hello()) do
    {:ok, socket} =
      :gen_tcp.connect({:local, path}, 0, [:local, :binary, packet: 4, active: false])

    # A connection the channel refuses may be closed before the hello is written.
    _ = :gen_tcp.send(socket, hello)
    {socket, Channel.await_ready(channel, c.name, 5_000)}
  end

  defp eval(code), do: code |> Code.eval_string() |> elem(0)

  defp call_in_task(fun), do: Task.async(fn -> catch_error_reason(fun) end)

  defp catch_error_reason(fun) do
    fun.()
  rescue
    error in Ampule.Error -> {:ampule_error, error.reason}
    other -> {:raised, other, __STACKTRACE__}
  end

  describe "with the real agent" do
    setup context, do: %{agent: with_agent(context)}

    test "MFAs and closures, compiled or evaluated, run in the agent's node", %{container: c} do
      assert Ampule.call({:lists, :seq, [1, 3]}, c) == [1, 2, 3]
      assert Ampule.call({String, :upcase, ["agent"]}, c) == "AGENT"
      assert Ampule.call(SandboxHelpers.sum_fun([1, 2, 3]), c) == 6
      # As iex makes them: erl_eval closures, with their bindings.
      assert Ampule.call(eval("x = 20; fn -> x + 22 end"), c) == 42

      # A closure of a module that exists only in this VM (this .exs file) cannot be
      # loaded there: it is refused before it is sent, naming its module.
      assert_raise ArgumentError, ~r/Ampule.SandboxChannelTest/, fn ->
        Ampule.call(fn -> :in_memory_only end, c)
      end

      assert Ampule.call({:os, :getpid, []}, c) != :os.getpid()
    end

    test "a raise comes as Ampule.RemoteError, a throw thrown, an exit exited",
         %{container: c} do
      assert_raise Ampule.RemoteError, ~r/\(ArgumentError\) boom/, fn ->
        Ampule.call({Ampule.RemoteHelpers, :raise_error, ["boom"]}, c)
      end

      error = catch_error(Ampule.call({:erlang, :binary_to_atom, [1]}, c))
      assert %Ampule.RemoteError{module: "ArgumentError", message: message} = error
      assert message =~ "not a binary"

      assert catch_throw(Ampule.call(eval("fn -> throw(:ball) end"), c)) == :ball
      assert catch_exit(Ampule.call(eval("fn -> exit(:bye) end"), c)) == :bye
    end

    test "a timeout kills the call in the agent before it returns", %{container: c} do
      error =
        assert_raise Ampule.Error, fn ->
          Ampule.call({Ampule.RemoteHelpers, :register_and_sleep, [:victim, 60_000]}, c, 200)
        end

      assert error.reason == :timeout
      # Frames are handled in order and the kill was answered: it is gone.
      refute Ampule.call({SandboxHelpers, :registered?, [:victim]}, c)
    end

    test "a call whose caller exits is killed", %{container: c} do
      parent = self()

      caller =
        spawn(fn ->
          Ampule.async_call({Ampule.RemoteHelpers, :register_and_sleep, [:orphan, 60_000]}, c)
          send(parent, :called)
          Process.sleep(:infinity)
        end)

      assert_receive :called
      assert wait_until(fn -> Ampule.call({SandboxHelpers, :registered?, [:orphan]}, c) end)
      Process.exit(caller, :kill)
      assert wait_until(fn -> !Ampule.call({SandboxHelpers, :registered?, [:orphan]}, c) end)
    end

    test "async_call/yield, multicall, cast", %{container: c} do
      call = Ampule.async_call({:erlang, :+, [1, 2]}, c)
      assert Ampule.yield(call) == {:ok, 3}

      assert Ampule.multicall(eval("fn -> :node end"), [c, c], 5_000) ==
               [{:ok, :node}, {:ok, :node}]

      # One deadline for all: both are killed at 500 ms, not one after the other.
      started = System.monotonic_time(:millisecond)

      assert [{:error, :timeout}, {:error, :timeout}] =
               Ampule.multicall({:timer, :sleep, [60_000]}, [c, c], 500)

      assert System.monotonic_time(:millisecond) - started < 5_000

      :ok =
        Ampule.cast({Ampule.RemoteHelpers, :register_and_sleep, [:cast_victim, 60_000]}, c, 300)

      assert wait_until(fn -> Ampule.call({SandboxHelpers, :registered?, [:cast_victim]}, c) end)
      assert wait_until(fn -> !Ampule.call({SandboxHelpers, :registered?, [:cast_victim]}, c) end)
    end

    @tag max: 64 * 1024 * 1024
    test "funs, pids, references, ports and new atoms in results are refused",
         %{container: c} do
      for {fun, kind} <- SandboxHelpers.refused_results() do
        assert {:error, {:result_refused, ^kind}} =
                 Ampule.yield(Ampule.async_call({SandboxHelpers, fun, []}, c))
      end

      tag = "channel#{System.unique_integer([:positive])}"
      call = Ampule.async_call({SandboxHelpers, :new_atoms, [tag, 200_000]}, c)
      assert {:error, {:result_refused, :atoms}} = Ampule.yield(call, 30_000)
      assert_raise ArgumentError, fn -> String.to_existing_atom("sandbox_atom_#{tag}_1") end

      error = assert_raise Ampule.Error, fn -> Ampule.call({SandboxHelpers, :a_pid, []}, c) end
      assert Exception.message(error) =~ "pid"
      # A refusal is not a broken sandbox: it goes on.
      assert Ampule.call({:erlang, :+, [1, 1]}, c) == 2
    end

    @tag max: 1024 * 1024
    test "a result over the limit is refused, large encoded or large decoded",
         %{container: c} do
      assert byte_size(Ampule.call({SandboxHelpers, :big, [1000 * 1024]}, c)) == 1000 * 1024

      assert {:error, {:result_too_large, 1_048_576}} =
               Ampule.yield(Ampule.async_call({SandboxHelpers, :big, [2 * 1024 * 1024]}, c))

      # 200,000 empty lists: 200 KB encoded, 3.2 MB decoded.
      assert {:error, {:result_too_large, 1_048_576}} =
               Ampule.yield(Ampule.async_call({SandboxHelpers, :wide, [200_000]}, c))

      assert Ampule.call({:erlang, :+, [1, 1]}, c) == 2
    end

    test "the agent's node halts when the channel closes", %{agent: agent, channel: channel} do
      ref = Process.monitor(channel)
      Channel.stop(channel)
      assert_receive {:DOWN, ^ref, _, _, _}
      assert_receive {^agent, {:exit_status, 0}}, 5_000
    end

    test "a call to a channel that is gone is :noconnection", %{container: c, channel: channel} do
      Channel.stop(channel)
      error = assert_raise Ampule.Error, fn -> Ampule.call({:erlang, :node, []}, c) end
      assert error.reason == :noconnection
    end

    test "the sandbox's end fails its pending calls at once, with :oom for an OOM kill",
         %{container: c, channel: channel} do
      task = call_in_task(fn -> Ampule.call({:timer, :sleep, [60_000]}, c, 60_000) end)
      Process.sleep(100)
      send(channel, {:ampule_sandbox_exit, :oom, %{}})
      assert Task.await(task) == {:ampule_error, :oom}
    end
  end

  describe "a hostile agent" do
    test "garbage in the place of a frame: the channel stops with {:protocol, :bad_frame}",
         context do
      _agent = with_agent(context)
      c = context.container
      ref = Process.monitor(context.channel)

      error =
        assert_raise Ampule.Error, fn -> Ampule.call({SandboxHelpers, :write_garbage, []}, c) end

      assert error.reason == {:protocol, :bad_frame}
      assert Exception.message(error) =~ "destroyed"
      assert_receive {:DOWN, ^ref, _, _, {:shutdown, {:protocol, :bad_frame}}}
      refute File.exists?(context.path)
    end

    test "a result for a call never made: {:protocol, :unexpected_id}", context do
      _agent = with_agent(context)

      error =
        assert_raise Ampule.Error, fn ->
          Ampule.call({SandboxHelpers, :forge_result, []}, context.container)
        end

      assert error.reason == {:protocol, :unexpected_id}
    end

    test "a frame header over the limit is refused before it is read", context do
      _agent = with_agent(context)
      memory = :erlang.memory(:total)

      error =
        assert_raise Ampule.Error, fn ->
          Ampule.call({SandboxHelpers, :write_oversized, [200_000_000]}, context.container)
        end

      assert error.reason == {:protocol, :frame_too_large}
      assert :erlang.memory(:total) - memory < 20 * 1024 * 1024
    end

    test "a frame cut short by a closed connection: {:protocol, :closed}", context do
      _agent = with_agent(context)

      error =
        assert_raise Ampule.Error, fn ->
          Ampule.call({SandboxHelpers, :write_truncated, []}, context.container, 10_000)
        end

      assert error.reason == {:protocol, :closed}
    end

    test "an agent that stops answering: the call times out, then the channel gives up",
         context do
      _agent = with_agent(context)
      ref = Process.monitor(context.channel)

      error =
        assert_raise Ampule.Error, fn ->
          Ampule.call({SandboxHelpers, :silence, []}, context.container, 300)
        end

      assert error.reason == :timeout
      assert_receive {:DOWN, ^ref, _, _, {:shutdown, {:protocol, :unresponsive}}}, 10_000
    end

    test "output: captured bytes are acknowledged as taken, and come back with the result",
         context do
      {socket, :ok} = as_agent(context)

      task =
        Task.async(fn ->
          Ampule.Call.capture(context.container, {:erlang, :node, []}, max_output: 100)
        end)

      assert {:ok, <<5, id::64, _max::64, 100::64, _term::binary>>} =
               :gen_tcp.recv(socket, 0, 5_000)

      :ok = :gen_tcp.send(socket, <<7, id::64, 0xFF, "abc">>)
      assert {:ok, <<6, ^id::64, 4::32>>} = :gen_tcp.recv(socket, 0, 5_000)
      :ok = :gen_tcp.send(socket, [<<4, id::64, 0>> | :erlang.term_to_binary(:done)])
      assert Task.await(task) == {{:ok, :done}, <<0xFF, "abc">>}
    end

    test "output for a call made without it: {:protocol, :unexpected_output}", context do
      {socket, :ok} = as_agent(context)
      task = call_in_task(fn -> Ampule.call({:erlang, :node, []}, context.container) end)
      assert {:ok, <<1, id::64, _max::64, _term::binary>>} = :gen_tcp.recv(socket, 0, 5_000)
      :ok = :gen_tcp.send(socket, <<7, id::64, "forged">>)
      assert Task.await(task) == {:ampule_error, {:protocol, :unexpected_output}}
    end

    test "streamed output past the window the host acknowledged: {:protocol, :output_window}",
         context do
      {socket, :ok} = as_agent(context)
      receiver = self()

      task =
        Task.async(fn ->
          call =
            Ampule.async_call({:erlang, :node, []}, context.container,
              output: {:stream, receiver, false}
            )

          Ampule.yield(call)
        end)

      assert {:ok, <<5, id::64, _::binary>>} = :gen_tcp.recv(socket, 0, 5_000)
      chunk = :binary.copy("w", 16_384)
      # A passive receiver: the host holds what comes, and acknowledges none of it.
      for _ <- 1..div(Frame.window(), 16_384),
          do: :ok = :gen_tcp.send(socket, [<<7, id::64>> | chunk])

      assert {:error, :timeout} = :gen_tcp.recv(socket, 0, 100)
      :ok = :gen_tcp.send(socket, <<7, id::64, "w">>)
      assert Task.await(task) == {:error, {:protocol, :output_window}}
      refute_received {:ampule_output, _, _}
    end

    test "a result that is not a term: {:protocol, :bad_term}", context do
      {socket, :ok} = as_agent(context)
      task = call_in_task(fn -> Ampule.call({:erlang, :node, []}, context.container) end)
      assert {:ok, <<1, id::64, _max::64, _term::binary>>} = :gen_tcp.recv(socket, 0, 5_000)
      :ok = :gen_tcp.send(socket, <<4, id::64, 0, 131, 200, 1, 2, 3>>)
      assert Task.await(task) == {:ampule_error, {:protocol, :bad_term}}
    end

    test "an exception whose stack trace names a function to call here is not trusted",
         context do
      {socket, :ok} = as_agent(context)
      task = call_in_task(fn -> Ampule.call({:erlang, :node, []}, context.container) end)
      assert {:ok, <<1, id::64, _::64, _::binary>>} = :gen_tcp.recv(socket, 0, 5_000)

      # error_info names a function that Exception.normalize/3 calls with the reason and
      # the stack trace (it would send them to this test, as it could send anything to any
      # registered process of the host). The host drops it, and the frames of names it
      # has no atoms for.
      Process.register(self(), :sandbox_channel_test_recorder)
      info = %{module: SandboxHelpers, function: :record}

      stack = [
        {"m", "f", 0, [line: 1, error_info: info]},
        {"Sandbox.Only.#{System.unique_integer([:positive])}", "f", 1, [line: 2]}
      ]

      raised = {"ArgumentError", "forged", stack}
      :ok = :gen_tcp.send(socket, [<<4, id::64, 1>> | :erlang.term_to_binary(raised)])

      assert {:raised, %Ampule.RemoteError{module: "ArgumentError", message: "forged"},
              [{:m, :f, 0, [line: 1]}]} = Task.await(task)

      refute_received {:recorded, _, _}
    end

    test "a forged Ampule.Error raised in a sandbox is not rescued as one", context do
      {socket, :ok} = as_agent(context)

      task =
        Task.async(fn ->
          try do
            Ampule.call({:erlang, :node, []}, context.container)
          rescue
            e in Ampule.Error -> {:rescued_as_ampule_error, e}
          end
        end)

      assert {:ok, <<1, id::64, _::64, _::binary>>} = :gen_tcp.recv(socket, 0, 5_000)
      forged = %Ampule.Error{reason: :oom, container: "another-one"}
      # As an old agent sent a raise: the struct is refused as a struct, and the error
      # that comes is about this call's own sandbox.
      :ok = :gen_tcp.send(socket, [<<4, id::64, 1>> | :erlang.term_to_binary({forged, []})])
      assert {:rescued_as_ampule_error, error} = Task.await(task)
      assert error.reason == {:result_refused, {:struct, Ampule.Error}}
      assert error.container == context.container.name

      # As the agent describes a raise: text, rescued as Ampule.RemoteError only.
      task = call_in_task(fn -> Ampule.call({:erlang, :node, []}, context.container) end)
      assert {:ok, <<1, id::64, _::64, _::binary>>} = :gen_tcp.recv(socket, 0, 5_000)
      message = "container another-one: killed for exceeding its memory limit"
      raised = {"Ampule.Error", message, []}
      :ok = :gen_tcp.send(socket, [<<4, id::64, 1>> | :erlang.term_to_binary(raised)])

      assert {:raised, %Ampule.RemoteError{module: "Ampule.Error", message: ^message}, []} =
               Task.await(task)
    end

    test "two bytes with no call waiting end the sandbox: the host keeps no partial frame",
         context do
      {socket, :ok} = as_agent(context)
      ref = Process.monitor(context.channel)
      # The start of a frame header, never finished.
      :ok = :inet.setopts(socket, packet: :raw)
      :ok = :gen_tcp.send(socket, <<0, 0>>)
      assert_receive {:DOWN, ^ref, _, _, {:shutdown, {:protocol, :unexpected_frame}}}, 5_000
    end

    test "a bad hello fails the boot with {:protocol, :bad_hello}", context do
      {_socket, result} = as_agent(context, <<0, 9::16>>)
      assert result == {:error, {:protocol, :bad_hello}}
    end

    @tag uid: 4_000_000
    test "a connection from another uid than the sandbox's node is refused", context do
      {_socket, result} = as_agent(context)
      assert result == {:error, {:protocol, :peer}}
    end

    @tag boot_timeout: 300
    test "no agent within the boot timeout: :timeout", context do
      assert Channel.await_ready(context.channel, "x", 5_000) == {:error, :timeout}
    end

    test "a kill for a call the agent does not answer in time breaks the channel", context do
      {socket, :ok} = as_agent(context)
      ref = Process.monitor(context.channel)

      task =
        call_in_task(fn -> Ampule.call({:timer, :sleep, [60_000]}, context.container, 100) end)

      assert {:ok, <<1, _::binary>>} = :gen_tcp.recv(socket, 0, 5_000)
      assert {:ok, <<3, _id::64>>} = :gen_tcp.recv(socket, 0, 5_000)
      # The call keeps its timeout; the channel waits 5 s more for the kill's answer.
      assert Task.await(task, 15_000) == {:ampule_error, :timeout}
      assert_receive {:DOWN, ^ref, _, _, {:shutdown, {:protocol, :unresponsive}}}, 15_000
      assert wait_until(fn -> not File.exists?(context.path) end, 1_000)
    end
  end
end
