defmodule Ampule.HostileEvalTest do
  # Source written against its evaluator (Ampule.Eval): what it returns, prints, raises and
  # defines must reach the host as bounded text and inert data, or not at all. Not async:
  # the atom tests compare this node's atom count, which any module loaded meanwhile moves.
  use ExUnit.Case, async: false

  alias Ampule.Eval.{Failure, Success}

  @moduletag :hostile
  @moduletag :root
  @moduletag :lxc

  setup_all do: Ampule.Test.Host.module_sandbox()

  defp eval(source, %{sandbox: sandbox}, opts \\ []),
    do: Ampule.eval_string(source, [container: sandbox, session: make_ref()] ++ opts)

  defp atom_exists?(name) do
    _ = String.to_existing_atom(name)
    true
  rescue
    ArgumentError -> false
  end

  test "an exception whose message/1 raises, throws or never returns", ctx do
    raising = """
    defmodule BadMessage do
      defexception [:x]
      def message(_), do: raise "no message for you"
    end

    raise BadMessage, x: 1
    """

    assert %Failure{type: :exception, message: message} = eval(raising, ctx)
    assert message =~ "** (BadMessage) got RuntimeError with message \"no message for you\""

    throwing = """
    defmodule ThrowingMessage do
      defexception [:x]
      def message(_), do: throw(:nope)
    end

    raise ThrowingMessage, x: 1
    """

    assert %Failure{type: :exception, message: "(could not be shown: throw :nope" <> _} =
             eval(throwing, ctx)

    looping = """
    defmodule LoopingMessage do
      defexception [:x]
      def message(e), do: message(e)
    end

    raise LoopingMessage, x: 1
    """

    assert %Failure{type: :timeout} = eval(looping, ctx, timeout: 500)
  end

  test "a value with an atom this node lacks: inspected comes back, the value does not", ctx do
    name = "hello_world_#{System.unique_integer([:positive])}"

    assert %Success{value: nil, refused: {:result_refused, :atoms}, inspected: inspected} =
             eval("{:ok, :#{name}}", ctx)

    assert inspected == "{:ok, :#{name}}"
    refute atom_exists?(name)
  end

  test "100,000 atoms made by the source do not grow this node's atom table", ctx do
    tag = "eval_atom_#{System.unique_integer([:positive])}"
    source = ~s[for i <- 1..100_000, do: String.to_atom("#{tag}_\#{i}")]
    # Everything the evaluation needs here is loaded by a first run. (Making 100,000
    # atoms takes a second or two of a loaded machine: a timeout of its own.)
    %Success{refused: {:result_refused, :atoms}} = eval(source, ctx, timeout: 60_000)

    before = :erlang.system_info(:atom_count)

    assert %Success{refused: {:result_refused, :atoms}, inspected: inspected} =
             eval(source, ctx, timeout: 60_000)

    assert :erlang.system_info(:atom_count) == before

    # Inspected within its limit (50 elements): the rest is elided.
    assert inspected =~ ":#{tag}_1,"
    assert String.ends_with?(inspected, "...]")
    refute atom_exists?("#{tag}_100000")
  end

  test "funs, pids, references and ports stay in the sandbox: inspected only", ctx do
    for {source, kind, shown} <- [
          {"fn -> :os.cmd(~c\"id\") end", :fun, "#Function<"},
          {"&:os.cmd/1", :fun, "&:os.cmd/1"},
          {"self()", :pid, "#PID<"},
          {"make_ref()", :reference, "#Reference<"},
          {"hd(Port.list())", :port, "#Port<"}
        ] do
      assert %Success{value: nil, refused: {:result_refused, ^kind}, inspected: inspected} =
               eval(source, ctx)

      assert String.starts_with?(inspected, shown), "#{source}: #{inspected}"
    end
  end

  test "a struct whose protocols would act on this node comes back as text", ctx do
    # (Refused for an atom this node lacks, `:read_ahead`, before its struct is looked at.)
    assert %Success{value: nil, refused: {:result_refused, _}, inspected: "%File.Stream{" <> _} =
             eval(~S[File.stream!("/etc/shadow")], ctx)

    assert %Success{value: nil, refused: {:result_refused, {:struct, Range}}} =
             eval("1..1_000_000_000_000", ctx)
  end

  test "inspect runs in the sandbox, under the evaluation's limits", ctx do
    source = "Enum.to_list(1..5_000_000)"

    assert %Failure{type: :timeout} = eval(source, ctx, timeout: 500, inspect: [limit: :infinity])

    assert %Failure{type: :memory} =
             eval("Enum.to_list(1..200_000)", ctx,
               inspect: [limit: :infinity],
               max_heap_size: 1_000_000
             )

    # Printing a bignum is quadratic, and one long BIF call that holds the sandbox's only
    # scheduler: the evaluation times out, and its sandbox, which cannot answer the kill
    # while the BIF runs, is destroyed as unresponsive. This node never prints it.
    alone = Ampule.spawn(sandbox: true)

    assert %Failure{type: :timeout} =
             Ampule.eval_string("Integer.pow(2, 4_000_000)", container: alone, timeout: 500)

    Ampule.destroy(alone)
  end

  test "an answer forged by the source (it redefined the evaluator) is data checked here" do
    sandbox = Ampule.spawn(sandbox: true)

    forger = """
    defmodule Ampule.Eval.Inside do
      def eval(%{session: :bytes}), do: {:ok, <<"ok ", 255, 254>>, :erlang.term_to_binary(1)}
      def eval(%{session: :big}), do: {:ok, :binary.copy("a", 1_000_000), {:too_large, 5}}
      def eval(%{session: :type}), do: {:error, :badarg, "x"}
      def eval(%{session: :bad_value}), do: {:ok, "1", <<131, 200, 1>>}
      def eval(%{session: :shape}), do: {:ok, 1, 2, 3}
      def eval(%{session: :raise}), do: raise("forged")
      def eval(%{session: :throw}), do: throw(:error)
    end
    """

    assert %Success{} = Ampule.eval_string(forger, container: sandbox)
    run = &Ampule.eval_string("1", container: sandbox, session: &1)

    # Bytes that are not UTF-8 arrive as U+FFFD (one for a run of them): `inspected` is valid
    # text, and bounded.
    assert %Success{inspected: "ok \uFFFD", value: 1} = run.(:bytes)
    assert %Success{inspected: big, refused: {:result_too_large, _}} = run.(:big)
    assert byte_size(big) == 65_536
    assert %Failure{type: :protocol} = run.(:type)
    assert %Success{value: nil, refused: {:protocol, :bad_term}} = run.(:bad_value)
    assert %Failure{type: :protocol} = run.(:shape)
    # The evaluator itself raised or threw: told as the agent described it.
    assert %Failure{type: :exception, message: "** (RuntimeError) forged"} = run.(:raise)
    assert %Failure{type: :throw, message: "** (throw) :error"} = run.(:throw)
    :ok = Ampule.destroy(sandbox)
  end

  test "a huge message or inspected text arrives bounded", ctx do
    assert %Failure{type: :exception, message: message} =
             eval(~S[raise String.duplicate("x", 1_000_000)], ctx)

    assert byte_size(message) <= 16_384 + 3

    assert %Success{inspected: inspected} =
             eval(~S[String.duplicate("y", 1_000_000)], ctx, inspect: [printable_limit: :infinity])

    assert byte_size(inspected) <= 65_536 + 3
  end

  test "a timeout kills the evaluating process even when it traps exits", ctx do
    s = make_ref()

    source = """
    Process.register(self(), :stubborn)
    Process.flag(:trap_exit, true)
    receive do after :infinity -> :ok end
    """

    assert %Failure{type: :timeout} =
             Ampule.eval_string(source, container: ctx.sandbox, session: s, timeout: 300)

    assert %Success{value: nil} =
             Ampule.eval_string("Process.whereis(:stubborn)", container: ctx.sandbox, session: s)
  end

  test "source that prints forever is stopped at :max_output", ctx do
    assert %Failure{type: :output_limit, stdio: stdio} =
             eval(~S[Stream.repeatedly(fn -> IO.write("spam ") end) |> Stream.run()], ctx,
               max_output: 10_000
             )

    assert byte_size(stdio) == 10_000
  end

  test "a process that prints on after the value is not in this evaluation's stdio, nor the next's",
       ctx do
    s = make_ref()

    source = ~S"""
    spawn(fn ->
      Process.register(self(), :late_printer)
      Stream.repeatedly(fn -> IO.puts("late"); Process.sleep(1) end) |> Stream.run()
    end)

    IO.puts("now")
    :ok
    """

    assert %Success{value: :ok, stdio: stdio} =
             Ampule.eval_string(source, container: ctx.sandbox, session: s)

    assert "now" in String.split(stdio, "\n", trim: true)
    assert Enum.all?(String.split(stdio, "\n", trim: true), &(&1 in ["now", "late"]))

    assert %Success{value: true, stdio: "next\n"} =
             Ampule.eval_string(
               ~S[IO.puts("next"); Process.whereis(:late_printer) |> Process.alive?()],
               container: ctx.sandbox,
               session: s
             )

    Ampule.eval_string("Process.exit(Process.whereis(:late_printer), :kill)",
      container: ctx.sandbox,
      session: s
    )
  end

  test "printed bytes that are not UTF-8 reach stdio as they are", ctx do
    assert %Success{stdio: <<"a", 255, 254, "b">>} =
             eval(~S[IO.binwrite(<<"a", 255, 254, "b">>)], ctx)
  end

  test "the source killing its own process is :exit, not a limit", ctx do
    assert %Failure{type: :exit, message: "** (exit) :killed"} =
             eval("Process.exit(self(), :kill)", ctx)
  end
end
