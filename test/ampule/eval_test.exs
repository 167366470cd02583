defmodule Ampule.EvalTest do
  # `Ampule.eval_string/2` and `Ampule.eval_quoted/2` (Ampule.Eval) in real sandboxes: Dune's
  # README examples with a person's expected answers, each failure type, sessions, pools,
  # Erlang source, bad options. The hostile cases are in hostile_eval_test.exs. Not async:
  # the leftover test counts every container.
  use ExUnit.Case, async: false

  alias Ampule.Eval.{Failure, Success}

  @moduletag :root
  @moduletag :lxc

  setup_all do: Ampule.Test.Host.module_sandbox()

  # Each test its own session in the shared sandbox.
  defp eval(source, %{sandbox: sandbox}, opts \\ []) do
    session = Keyword.get_lazy(opts, :session, fn -> make_ref() end)
    Ampule.eval_string(source, [container: sandbox, session: session] ++ opts)
  end

  describe "Dune's README, translated" do
    test ~S[IO.puts("Hello world!") prints "Hello world!\n" and is :ok, in a fresh sandbox] do
      assert %Success{value: :ok, inspected: ":ok", stdio: "Hello world!\n", refused: nil} =
               Ampule.eval_string(~S[IO.puts("Hello world!")])
    end

    test "List.duplicate(:spam, 100_000) under a small heap limit is a :memory failure", ctx do
      assert %Failure{type: :memory, message: message} =
               eval("List.duplicate(:spam, 100_000)", ctx, max_heap_size: 50_000)

      assert message =~ "max_heap_size"
      assert message =~ "50000 words"
      # The same source under no heap limit runs: the limit was what stopped it.
      assert %Success{value: 100_000} = eval("length(List.duplicate(:spam, 100_000))", ctx)
    end

    test "an infinite loop is a :timeout, and its sandbox goes on", ctx do
      source = "defmodule Forever do def loop, do: loop() end; Forever.loop()"
      assert %Failure{type: :timeout, message: message} = eval(source, ctx, timeout: 300)
      assert message =~ "300 ms"
      assert %Success{value: 2} = eval("1 + 1", ctx)
    end

    test "File.cwd!() works: nothing is refused by name, the isolation is the kernel's", ctx do
      assert %Success{value: cwd, inspected: inspected} = eval("File.cwd!()", ctx)
      assert is_binary(cwd) and String.starts_with?(cwd, "/")
      assert inspected == inspect(cwd)
    end
  end

  describe "the source's own failures" do
    test "source that does not parse is :parsing, with the position", ctx do
      assert %Failure{type: :parsing, message: message} = eval("foo(1, ", ctx)
      assert message =~ "** (TokenMissingError) nofile:1"
      assert message =~ "missing terminator"

      assert %Failure{type: :parsing, message: message} = eval("1 +* 2", ctx, file: "cell.exs")
      assert message =~ "** (SyntaxError) cell.exs:1"
    end

    test "source that does not compile is :compile_error", ctx do
      assert %Failure{type: :compile_error, message: message, stdio: stdio} =
               eval("undefined_thing + 1", ctx)

      assert message =~ "** (CompileError) nofile:1: undefined function undefined_thing/0"
      # The compiler's warning went to standard error, which is part of the output.
      assert stdio =~ "undefined_thing"
    end

    test "a raise is :exception, as iex shows it, with the source's frames", ctx do
      source = """
      defmodule Boom do
        def go(x), do: raise(ArgumentError, "bad: \#{x}")
      end

      Boom.go(42)
      """

      assert %Failure{type: :exception, message: message} = eval(source, ctx)
      assert message =~ ~r/\A\*\* \(ArgumentError\) bad: 42\n/
      assert message =~ "Boom.go/1"
      refute message =~ "Ampule.Eval"
      refute message =~ "elixir_eval"

      assert %Failure{type: :exception, message: "** (ArithmeticError) " <> _} =
               eval("1 + :a", ctx)
    end

    test "a throw is :throw and an exit is :exit", ctx do
      assert %Failure{type: :throw, message: "** (throw) :ball" <> _} = eval("throw(:ball)", ctx)
      assert %Failure{type: :exit, message: "** (exit) :bye" <> _} = eval("exit(:bye)", ctx)
    end

    test "what was printed before a failure is kept", ctx do
      assert %Failure{type: :exception, stdio: "before\n"} =
               eval(~S[IO.puts("before"); raise "after"], ctx)
    end
  end

  describe "limits" do
    test "a reductions budget is a :reductions failure", ctx do
      source = "Enum.reduce(1..100_000_000, 0, &+/2)"

      assert %Failure{type: :reductions, message: message} =
               eval(source, ctx, max_reductions: 1_000_000, timeout: 30_000)

      assert message =~ "1000000 reductions"
      assert %Success{value: 5050} = eval("Enum.sum(1..100)", ctx, max_reductions: 1_000_000)
    end

    test "printing past :max_output is an :output_limit failure with the output so far", ctx do
      source = ~S[for i <- 1..100_000, do: IO.puts("line #{i}")]
      assert %Failure{type: :output_limit, stdio: stdio} = eval(source, ctx, max_output: 1_000)
      assert byte_size(stdio) == 1_000
      assert String.starts_with?(stdio, "line 1\nline 2\n")
    end

    test "a sandbox that passes its memory limit is :memory, told apart by its message" do
      source = ":binary.copy(\"x\", 400_000_000) |> byte_size()"

      assert %Failure{type: :memory, message: message} =
               Ampule.eval_string(source, memory: 96 * 1024 * 1024, timeout: 30_000)

      assert message =~ "sandbox passed its memory limit"
      refute message =~ "max_heap_size"
      # The failure says it: the caller is not told again of a sandbox it never held.
      refute_received {:ampule_exit, _, _}
    end

    test "System.halt/0 ends the sandbox: :sandbox_down" do
      assert %Failure{type: :sandbox_down} = Ampule.eval_string("System.halt()")
      refute_received {:ampule_exit, _, _}
    end
  end

  test "stream: a pid gets the output while the evaluation runs, and stdio has it too", ctx do
    source = ~S[IO.puts("first"); IO.puts(:stderr, "second"); :done]

    assert %Success{value: :done, stdio: "first\nsecond\n"} =
             eval(source, ctx, stream: self(), active: true)

    # The stream's messages, all in the mailbox by the answer, make up the same bytes.
    streamed =
      fn ->
        receive do
          {:ampule_output, _call, bytes} -> bytes
        after
          0 -> nil
        end
      end
      |> Stream.repeatedly()
      |> Enum.take_while(& &1)

    assert Enum.join(streamed) == "first\nsecond\n"
  end

  test "standard input is at its end, and the working directory is writable", ctx do
    assert %Success{value: :eof} = eval(~S[IO.gets("name? ")], ctx)

    assert %Success{value: "kept"} =
             eval(~S[File.write!("note.txt", "kept"); File.read!("note.txt")], ctx)
  end

  describe "sessions" do
    test "a held sandbox keeps modules, bindings and aliases from one evaluation to the next",
         ctx do
      s = make_ref()

      assert %Success{} =
               eval(
                 ~S[defmodule Greeter do def hi(x), do: "hi " <> x end],
                 ctx,
                 session: s
               )

      assert %Success{value: "you"} = eval(~S[name = "you"], ctx, session: s)
      assert %Success{value: "hi you"} = eval("Greeter.hi(name)", ctx, session: s)
      assert %Success{} = eval("alias Greeter, as: G", ctx, session: s)
      assert %Success{value: "hi you"} = eval("G.hi(name)", ctx, session: s)

      # A failed evaluation leaves the session as it was.
      assert %Failure{type: :exception} = eval(~S[name = "other"; raise "no"], ctx, session: s)
      assert %Success{value: "you"} = eval("name", ctx, session: s)

      # Another session of the same sandbox has the module (one node) but not the binding.
      assert %Failure{type: :compile_error} = eval("name", ctx)
      assert %Success{value: "hi x"} = eval(~S[Greeter.hi("x")], ctx)
    end

    test "the first evaluations of a sandbox, at once, each make or find the session table" do
      sandbox = Ampule.spawn(sandbox: true)

      results =
        1..6
        |> Task.async_stream(
          fn i -> Ampule.eval_string("x = #{i}", container: sandbox, session: i) end,
          max_concurrency: 6
        )
        |> Enum.map(fn {:ok, result} -> result end)

      assert Enum.map(results, & &1.value) == Enum.to_list(1..6)

      for i <- 1..6,
          do:
            assert(%Success{value: ^i} = Ampule.eval_string("x", container: sandbox, session: i))

      :ok = Ampule.destroy(sandbox)
    end

    test "without :session, a held sandbox's evaluations share the default session", ctx do
      assert %Success{} = Ampule.eval_string("shared_x = 41", container: ctx.sandbox)
      assert %Success{value: 42} = Ampule.eval_string("shared_x + 1", container: ctx.sandbox)
    end
  end

  describe "targets" do
    test "eval_quoted/2 evaluates a quoted form", ctx do
      assert %Success{value: 55} =
               Ampule.eval_quoted(quote(do: Enum.sum(1..10)), container: ctx.sandbox)

      assert %Success{value: 6} = Ampule.eval_quoted(quote(do: 1 + 2 + 3))
    end

    test "a pool's sandbox, plain and prepared" do
      plain = :"eval_pool_#{System.unique_integer([:positive])}"
      prepared = :"eval_pool_prepared_#{System.unique_integer([:positive])}"
      start_supervised!({Ampule.Pool, name: plain, size: 1, sandbox: true}, id: plain)

      start_supervised!(
        {Ampule.Pool, name: prepared, size: 1, sandbox: true, prepare: Ampule.Eval.prepare()},
        id: prepared
      )

      for pool <- [plain, prepared] do
        assert %Success{value: 2, inspected: "2"} = Ampule.eval_string("1 + 1", pool: pool)

        leave =
          "spawn(fn -> Process.register(self(), :left_behind); Process.sleep(:infinity) end)"

        assert %Success{refused: {:result_refused, :pid}} = Ampule.eval_string(leave, pool: pool)
        # Single-use: nothing of the previous evaluation is there.
        assert %Success{value: nil} =
                 Ampule.eval_string("Process.whereis(:left_behind)", pool: pool)
      end
    end

    test "Erlang source with language: :erlang, its errors as the shell shows them", ctx do
      assert %Success{value: 42} = eval("X = 6, X * 7.", ctx, language: :erlang)
      assert %Success{value: 3} = eval("lists:sum([1, 2])", ctx, language: :erlang)

      assert %Failure{type: :parsing, message: message} = eval("X = .", ctx, language: :erlang)
      assert message =~ "nofile:1"

      assert %Failure{type: :exception, message: message} = eval("1 + a.", ctx, language: :erlang)

      assert message =~ "an error occurred when evaluating an arithmetic expression"

      assert %Failure{type: :throw, message: "exception throw: ball" <> _} =
               eval("throw(ball).", ctx, language: :erlang)

      s = make_ref()
      assert %Success{} = eval("Y = 5.", ctx, language: :erlang, session: s)
      assert %Success{value: 10} = eval("Y * 2.", ctx, language: :erlang, session: s)
    end
  end

  test "bad options raise ArgumentError, before any sandbox is made", ctx do
    {:ok, before} = Ampule.list()

    for opts <- [
          [sandbox: false],
          [session: :s],
          [language: :cobol],
          [max_heap_size: 0],
          [max_heap_size: 100],
          [max_reductions: :lots],
          [timeout: -1],
          [inspect: :pretty],
          [container: ctx.sandbox, memory: 64 * 1024 * 1024],
          [container: ctx.sandbox, pool: :p],
          [container: :not_a_container]
        ] do
      assert_raise ArgumentError, fn -> Ampule.eval_string("1", opts) end
    end

    assert_raise ArgumentError, fn -> Ampule.eval_quoted(quote(do: 1), language: :erlang) end
    assert_raise ArgumentError, fn -> Ampule.eval_string(~c"1 + 1", []) end
    # No new container (one of an earlier test may still be going: a pool's).
    {:ok, now} = Ampule.list()
    assert now -- before == []
  end

  test "a distribution container is refused: untrusted source runs in sandboxes only" do
    c = Ampule.spawn()

    assert_raise ArgumentError, ~r/sandboxes only/, fn ->
      Ampule.eval_string("1", container: c)
    end

    :ok = Ampule.destroy(c)
  end

  test "cold evaluations leave nothing behind, whatever their end" do
    {:ok, before} = Ampule.list()

    for {source, opts} <- [
          {"1 + 1", []},
          {"raise \"x\"", []},
          {"Process.sleep(:infinity)", [timeout: 200]},
          {"foo(", []},
          {"System.halt()", []}
        ] do
      Ampule.eval_string(source, opts)
    end

    # No new container (one of an earlier test may still be going: a pool's).
    {:ok, now} = Ampule.list()
    assert now -- before == []
  end
end
