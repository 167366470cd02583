defmodule Ampule.SandboxOutputTest do
  # What a sandbox call prints, captured or streamed to the caller (`output:`, "Output" in
  # Ampule.Sandbox), against real sandboxes. What a sandbox may do to the output channel
  # is in hostile_output_test.exs; the default (the sandbox's log) in sandbox_test.exs.
  use ExUnit.Case, async: true

  import Ampule.Test.Host, only: [wait_until: 1, wait_until: 2]

  alias Ampule.OutputHelpers, as: Out

  @moduletag :root
  @moduletag :lxc

  @kib 1024
  @mib 1024 * 1024

  setup_all do
    %{sandbox: Ampule.spawn(sandbox: true)}
  end

  defp name, do: :"output_test_#{System.unique_integer([:positive])}"

  test "captured: standard output and error, of the call and of a process it started, in order",
       %{sandbox: c} do
    assert Ampule.Call.capture(c, {Out, :print_in_order, []}, []) ==
             {{:ok, :done}, "out 1\nerr 1\nerr 2\nchild out\nchild err\nout 2\n"}

    # The same through the front: call/3 with options, async_call/3 and yield/2.
    assert Ampule.call({Out, :print_in_order, []}, c, output: :capture, timeout: 5_000) ==
             {:done, "out 1\nerr 1\nerr 2\nchild out\nchild err\nout 2\n"}

    call = Ampule.async_call({Out, :print_in_order, []}, c, output: :capture)
    assert {{:ok, :done}, "out 1\n" <> _} = Ampule.yield(call, 5_000)

    # Nothing printed: an empty binary; and a fresh sandbox for one call.
    assert Ampule.Call.capture(c, {:erlang, :+, [1, 2]}, []) == {{:ok, 3}, ""}

    assert Ampule.call({:io, :format, ["fresh~n"]}, sandbox: true, output: :capture) ==
             {:ok, "fresh\n"}
  end

  test "the output so far comes with a failure: a raise, a timeout", %{sandbox: c} do
    f = fn code -> code |> Code.eval_string() |> elem(0) end

    assert {{:error, {:exception, %Ampule.RemoteError{message: "late"}, _}}, "early\n"} =
             Ampule.Call.capture(c, f.(~s|fn -> IO.puts("early"); raise "late" end|), [])

    assert Ampule.Call.capture(
             c,
             f.(~s|fn -> IO.puts("waiting"); Process.sleep(:infinity) end|),
             timeout: 300
           ) == {{:error, :timeout}, "waiting\n"}
  end

  test "a sandbox killed by its memory limit: :oom, with what it printed before" do
    c = Ampule.spawn(sandbox: true, memory: 64 * @mib)

    assert Ampule.Call.capture(c, {Out, :print_then_eat_memory, []}, timeout: 30_000) ==
             {{:error, :oom}, "before the fall\n"}
  end

  test "streamed: each chunk arrives while the code runs", %{sandbox: c} do
    waiter = name()
    call = Ampule.async_call({Out, :print_and_wait, [waiter]}, c, output: {:stream, self()})
    assert_receive {:ampule_output, ^call, "first\n"}, 5_000

    # The code is waiting for this; it prints its second line only once told.
    assert Ampule.call({Out, :tell, [waiter, :go]}, c) == :ok
    assert_receive {:ampule_output, ^call, "second\n"}, 5_000
    assert Ampule.yield(call) == {:ok, :done}
    refute_received {:ampule_output, _, _}

    # Captured and streamed at once (Ampule.Call.capture/3 with `stream:`).
    assert Ampule.Call.capture(c, {Out, :print_in_order, []}, stream: self()) ==
             {{:ok, :done}, "out 1\nerr 1\nerr 2\nchild out\nchild err\nout 2\n"}

    assert_received {:ampule_output, %Ampule.Call{}, "out 1\n" <> _}
  end

  test "a receiver that takes one chunk and never re-arms stops the printer, not the host",
       %{sandbox: c} do
    printer = name()
    total = 4 * @mib
    opts = [output: {:stream, self(), :once}, max_output: total]
    call = Ampule.async_call({Out, :print_counted, [printer, total, @kib]}, c, opts)
    assert_receive {:ampule_output, ^call, first}, 5_000

    # The printer waits for its io reply, with at most the window (64 KiB) sent after the
    # chunk taken: the host holds that window, no more.
    assert wait_until(fn ->
             match?({_, true}, Ampule.call({Out, :written, [printer]}, c))
           end)

    {written, true} = Ampule.call({Out, :written, [printer]}, c)
    assert written <= byte_size(first) + Ampule.Sandbox.Frame.window()
    # What the channel holds for the receiver, and its whole heap.
    [out] = Map.values(:sys.get_state(c.channel).outputs)
    {_chunks, held} = Ampule.Port.Console.waiting(out.flow)
    {:memory, memory} = Process.info(c.channel, :memory)
    assert held <= Ampule.Sandbox.Frame.window()
    assert memory <= 1 * @mib
    # Still blocked: what it wrote has not moved.
    assert Ampule.call({Out, :written, [printer]}, c) == {written, true}

    # Re-armed, the rest flows, every byte of it.
    :ok = Ampule.output_active(call, true)
    assert Ampule.yield(call, 30_000) == {:ok, :printed}
    assert byte_size(first) + received(call, 0) == total
  end

  # The bytes of `call`'s output in the mailbox (its passive notices dropped).
  defp received(call, acc) do
    receive do
      {:ampule_output, ^call, data} -> received(call, acc + byte_size(data))
      {:ampule_output_passive, ^call} -> received(call, acc)
    after
      0 -> acc
    end
  end

  test "a receiver that exits: the rest of the output is dropped, the call runs on",
       %{sandbox: c} do
    test = self()

    receiver =
      spawn(fn ->
        receive do
          {:ampule_output, _call, data} -> send(test, {:took, byte_size(data)})
        end
      end)

    ref = Process.monitor(receiver)
    opts = [output: {:stream, receiver}, max_output: 4 * @mib]
    call = Ampule.async_call({Out, :print_counted, [name(), 4 * @mib, @kib]}, c, opts)
    assert_receive {:took, _}, 5_000
    assert_receive {:DOWN, ^ref, :process, ^receiver, :normal}
    assert Ampule.yield(call, 30_000) == {:ok, :printed}
  end

  test "a stream in counts: passive when spent, re-armed with output_active/2", %{sandbox: c} do
    waiter = name()

    call = Ampule.async_call({Out, :print_and_wait, [waiter]}, c, output: {:stream, self(), 1})

    assert_receive {:ampule_output, ^call, "first\n"}, 5_000
    assert_receive {:ampule_output_passive, ^call}, 5_000
    assert Ampule.call({Out, :tell, [waiter, :go]}, c) == :ok
    # Passive: what comes waits in the channel until the answer flushes it, or a re-arm.
    :ok = Ampule.output_active(call, 1)
    assert_receive {:ampule_output, ^call, "second\n"}, 5_000
    assert Ampule.yield(call) == {:ok, :done}
  end

  test "printing forever with :max_output: {:output_limit, max}, exactly max bytes, the sandbox goes on",
       %{sandbox: c} do
    assert {{:error, {:output_limit, 10_000}}, output} =
             Ampule.Call.capture(c, {Out, :print_forever, []}, max_output: 10_000)

    assert byte_size(output) == 10_000
    assert output =~ ~r/\Ax+\n/

    error =
      assert_raise Ampule.Error, fn ->
        Ampule.call({Out, :print_forever, []}, c, output: :capture, max_output: 100)
      end

    assert error.reason == {:output_limit, 100}
    assert Exception.message(error) =~ "printed more than 100 bytes"
    assert Ampule.call({:erlang, :+, [1, 1]}, c) == 2
  end

  test "printing 1 GB stops at the bound", %{sandbox: c} do
    {result, output} =
      Ampule.Call.capture(c, {Out, :print_bytes, [1024 * @mib]}, max_output: @mib)

    assert result == {:error, {:output_limit, @mib}}
    assert byte_size(output) == @mib
    assert Ampule.call({:erlang, :+, [1, 1]}, c) == 2
  end

  test "1 GB printed to a stream: stopped at the bound, the channel's memory flat throughout",
       %{sandbox: c} do
    max = 64 * @mib
    opts = [output: {:stream, self(), 10}, max_output: max]
    call = Ampule.async_call({Out, :print_bytes, [1024 * @mib]}, c, opts)
    {bytes, peak} = take_stream(call, c.channel, max, 0, 0)
    assert Ampule.yield(call, 60_000) == {:error, {:output_limit, max}}
    assert bytes == max
    assert peak < 1 * @mib, "the channel's memory reached #{peak} bytes"
  end

  # Takes `call`'s stream as it comes, re-arming it ten chunks at a time, until `total`
  # bytes; returns them and the channel's largest memory seen at each chunk.
  defp take_stream(_call, _channel, total, bytes, peak) when bytes >= total, do: {bytes, peak}

  defp take_stream(call, channel, total, bytes, peak) do
    receive do
      {:ampule_output, ^call, data} ->
        {:memory, memory} = Process.info(channel, :memory)
        take_stream(call, channel, total, bytes + byte_size(data), max(peak, memory))

      {:ampule_output_passive, ^call} ->
        :ok = Ampule.output_active(call, 10)
        take_stream(call, channel, total, bytes, peak)
    after
      30_000 -> flunk("the stream stopped at #{bytes} bytes")
    end
  end

  test "bytes that are not UTF-8 come back exactly", %{sandbox: c} do
    assert Ampule.Call.capture(c, {Out, :print_invalid_utf8, []}, []) ==
             {{:ok, :ok}, <<0xFF, 0xFE, "ok", 0xC3, 0x80, 0, 0xC0, 0xAF, 0xF8>>}
  end

  test "processes a call started, printing after its answer, reach neither the next call nor the mailbox",
       %{sandbox: c} do
    orphan = name()
    call = Ampule.async_call({Out, :leave_printer, [orphan]}, c, output: {:stream, self()})
    assert Ampule.yield(call) == {:ok, :returned}
    # What it printed before the answer came before it (its count may have run out).
    _ = received(call, 0)

    captured = name()
    assert {{:ok, :returned}, _} = Ampule.Call.capture(c, {Out, :leave_printer, [captured]}, [])

    # Both print on, into the drain: the next calls see only their own output.
    assert Ampule.call({Out, :alive?, [orphan]}, c)
    assert Ampule.call({Out, :alive?, [captured]}, c)
    assert Ampule.Call.capture(c, {IO, :puts, ["mine"]}, []) == {{:ok, :ok}, "mine\n"}
    assert Ampule.Call.capture(c, {:erlang, :+, [1, 1]}, []) == {{:ok, 2}, ""}
    assert Ampule.call({Out, :alive?, [orphan]}, c)
    assert Process.info(self(), :messages) == {:messages, []}
    # Nor the log: their bytes are dropped.
    {:ok, log} = Ampule.Port.request({:log_tail, c.name})
    refute log =~ "orphan"

    assert Ampule.call({Out, :alive?, [orphan, true]}, c)
    assert Ampule.call({Out, :alive?, [captured, true]}, c)
  end

  test "calls killed by their timeout while their processes exit: the sandbox goes on",
       %{sandbox: c} do
    for _ <- 1..70 do
      assert {{:error, :timeout}, output} =
               Ampule.Call.capture(c, {Out, :watched_forever, []}, timeout: 50)

      # The watcher may print between the kill and the answer: then it is the call's too.
      assert output in ["watched\n", "watched\nwatcher saw the end\n"]
    end

    assert Ampule.Call.capture(c, {IO, :puts, ["still here"]}, []) ==
             {{:ok, :ok}, "still here\n"}
  end

  test "captured calls leave no process behind in the sandbox (their io servers retire)",
       %{sandbox: c} do
    count = fn -> Ampule.call({:erlang, :system_info, [:process_count]}, c) end
    before = count.()

    for i <- 1..150 do
      assert Ampule.Call.capture(c, {IO, :write, ["#{i}"]}, []) == {{:ok, :ok}, "#{i}"}
    end

    # Retired io servers go in sweeps (of 64, or within a second).
    assert wait_until(fn -> count.() <= before end, 5_000)
  end

  test "distribution containers refuse output options; bad options are named" do
    dist = %Ampule.Container{name: "dist", nodename: :"a@127.0.0.1", address: nil, cookie: nil}

    assert_raise ArgumentError, ~r/for sandboxes/, fn ->
      Ampule.async_call({:erlang, :node, []}, dist, output: :capture)
    end

    assert_raise ArgumentError, ~r/:output/, fn ->
      Ampule.async_call({:erlang, :node, []}, dist, output: :screen)
    end

    assert_raise ArgumentError, ~r/:max_output/, fn ->
      Ampule.call({:erlang, :node, []}, sandbox: true, output: :capture, max_output: 0)
    end
  end
end
