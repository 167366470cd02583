defmodule Ampule.Eval.Inside do
  @moduledoc false
  # The part of `Ampule.eval_string/2` and `Ampule.eval_quoted/2` that runs in the
  # sandbox, as one call (`{Ampule.Eval.Inside, :eval, [request]}`: Ampule's ebin is on
  # every sandbox's code path). Two processes of its own:
  #
  #   * the call's process, the *watcher*: starts `:elixir` (a sandbox's lean boot does
  #     not), spawns the evaluator, and waits for its answer, checking its reductions
  #     against `max_reductions` every @tick ms and killing it past them;
  #   * the *evaluator*, spawned with `max_heap_size` (killed by the runtime past it):
  #     parses, evaluates, and turns the outcome into what crosses back, all under its
  #     limits. A value's `inspect`, an exception's `message/1` and the value's encoding
  #     are the source's code as much as the source is (its own `Inspect` implementation,
  #     its own exception module): they run here, where the limits and the timeout reach
  #     them, never on the host.
  #
  # What the host gets back is data of known shape, its atoms the host's own:
  #
  #   {:ok, inspected, value}   inspected: text bounded by `max_inspected` bytes;
  #                             value: `term_to_binary` of the value, for the host to
  #                             decode by the sandbox's rules, or {:too_large, bytes}
  #   {:error, type, message}   type: one of @types; message: text bounded here
  #
  # The call's timeout (the host's) kills the watcher; a guard process then kills the
  # evaluator, which the source could otherwise keep alive by trapping exits.

  alias Ampule.Eval.Session

  # How often the watcher reads the evaluator's reductions: the budget is passed by at
  # most what the evaluator does in that long.
  @tick 5
  # The most bytes of a failure's message.
  @max_message 16_384
  # What a stack trace of the source's code loses: the evaluator's own frames and the
  # compiler's (as iex prunes its own).
  @internals [
    __MODULE__,
    :erl_eval,
    Ampule.Eval.Session,
    :elixir,
    :elixir_eval,
    :elixir_expand,
    :elixir_compiler,
    :elixir_module,
    :elixir_clauses,
    :elixir_lexical,
    :elixir_def,
    :elixir_map,
    :elixir_erl,
    :elixir_erl_clauses,
    :elixir_erl_pass
  ]

  @doc "The failure types decided here (the host adds its own)."
  def types, do: [:parsing, :compile_error, :exception, :throw, :exit, :memory, :reductions]

  @doc "Runs in the sandbox: evaluates `request` (see Ampule.Eval) and answers as above."
  def eval(request) do
    {:ok, _} = Application.ensure_all_started(:elixir)
    watcher = self()
    ref = make_ref()
    heap = request.max_heap_size

    opts =
      if heap,
        do: [:monitor, max_heap_size: %{size: heap, kill: true, error_logger: false}],
        else: [:monitor]

    {pid, mon} = :erlang.spawn_opt(fn -> send(watcher, {ref, evaluate(request)}) end, opts)
    guard = spawn(fn -> guard(watcher, pid) end)

    try do
      watch(pid, mon, ref, request)
    after
      send(guard, :done)
    end
  end

  defp guard(watcher, pid) do
    mon = Process.monitor(watcher)

    receive do
      {:DOWN, ^mon, :process, _, _} -> Process.exit(pid, :kill)
      :done -> :ok
    end
  end

  defp watch(pid, mon, ref, request) do
    receive do
      {^ref, answer} ->
        Process.demonitor(mon, [:flush])
        answer

      {:DOWN, ^mon, :process, ^pid, reason} ->
        died(reason, request)
    after
      tick(request) ->
        case Process.info(pid, :reductions) do
          {:reductions, n} when n > request.max_reductions ->
            Process.exit(pid, :kill)

            receive do
              {:DOWN, ^mon, :process, ^pid, _} -> :ok
            end

            {:error, :reductions,
             "the evaluation passed its budget of #{request.max_reductions} reductions " <>
               "(max_reductions) and was stopped"}

          _ ->
            watch(pid, mon, ref, request)
        end
    end
  end

  defp tick(%{max_reductions: nil}), do: :infinity
  defp tick(_request), do: @tick

  # The evaluator ended without answering. Killed, with a heap limit set: the runtime's
  # heap limit (the source killing itself with `:kill` looks the same from here).
  defp died(:killed, %{max_heap_size: words}) when words != nil do
    {:error, :memory,
     "the evaluation passed its heap limit of #{words} words (max_heap_size) and was stopped"}
  end

  defp died(reason, _request), do: {:error, :exit, bound("** (exit) " <> safe_inspect(reason))}

  @doc """
  For a pool's `prepare:` (Ampule.Eval.prepare/0): one evaluation of a small module and
  a call, so that the compiler's and the evaluator's modules are loaded before any
  caller's source; the module is then removed.
  """
  def warm do
    request = %{
      language: :elixir,
      source:
        "defmodule Ampule.Eval.Warm do\n  def x(a), do: a + 1\nend\n\nAmpule.Eval.Warm.x(1)",
      quoted: nil,
      session: nil,
      file: "nofile",
      inspect: [],
      max_inspected: 1024,
      max_heap_size: nil,
      max_reductions: nil,
      max_value: 1024
    }

    {:ok, "2", _value} = eval(request)
    :code.purge(Ampule.Eval.Warm)
    :code.delete(Ampule.Eval.Warm)
    :ok
  end

  ## The evaluator

  defp evaluate(%{language: :erlang} = request) do
    with {:ok, exprs} <- parse_erlang(request) do
      try do
        {:value, value, binding} = :erl_eval.exprs(exprs, Session.get(request, :erlang))
        :ok = Session.put(request, :erlang, binding)
        success(value, request)
      catch
        kind, reason -> failure(:erlang, kind, reason, __STACKTRACE__)
      end
    end
  end

  defp evaluate(request) do
    with {:ok, quoted} <- parse_elixir(request) do
      {binding, env} = Session.get(request, :elixir)

      try do
        {value, binding, env} = Code.eval_quoted_with_env(quoted, binding, env)
        :ok = Session.put(request, :elixir, {binding, env})
        success(value, request)
      catch
        kind, reason -> failure(:elixir, kind, reason, __STACKTRACE__)
      end
    end
  end

  defp parse_elixir(%{quoted: quoted}) when quoted != nil, do: {:ok, quoted}

  defp parse_elixir(%{source: source, file: file}) do
    {:ok, Code.string_to_quoted!(source, file: file, columns: true)}
  rescue
    e -> {:error, :parsing, message(fn -> Exception.format_banner(:error, e, []) end)}
  end

  # An expression sequence, with or without its final dot (as in the shell, which wants
  # it).
  defp parse_erlang(%{source: source, file: file}) do
    text = String.trim_trailing(source)
    text = if String.ends_with?(text, "."), do: text, else: text <> "."

    with {:ok, tokens, _end} <- :erl_scan.string(String.to_charlist(text)),
         {:ok, exprs} <- :erl_parse.parse_exprs(tokens) do
      {:ok, exprs}
    else
      {:error, {location, module, description}, _end} ->
        {:error, :parsing, erlang_parse_message(file, location, module, description)}

      {:error, {location, module, description}} ->
        {:error, :parsing, erlang_parse_message(file, location, module, description)}
    end
  rescue
    e -> {:error, :parsing, message(fn -> Exception.message(e) end)}
  end

  defp erlang_parse_message(file, location, module, description) do
    line =
      case location do
        {line, column} -> "#{line}:#{column}"
        line -> "#{line}"
      end

    message(fn -> "#{file}:#{line}: #{module.format_error(description)}" end)
  end

  defp success(value, request) do
    inspected = message(fn -> inspect(value, request.inspect) end, request.max_inspected)

    encoded =
      case :erlang.external_size(value) do
        size when size > request.max_value -> {:too_large, size}
        _ -> :erlang.term_to_binary(value)
      end

    {:ok, inspected, encoded}
  end

  defp failure(:elixir, :error, %CompileError{} = e, _stack),
    do: {:error, :compile_error, message(fn -> Exception.format_banner(:error, e, []) end)}

  defp failure(:elixir, :error, reason, stack) do
    {:error, :exception,
     message(fn -> Exception.format_banner(:error, reason, stack) <> trace(stack) end)}
  end

  defp failure(:elixir, :throw, value, stack) do
    {:error, :throw, message(fn -> "** (throw) " <> safe_inspect(value) <> trace(stack) end)}
  end

  defp failure(:elixir, :exit, reason, stack) do
    {:error, :exit, message(fn -> "** (exit) " <> safe_inspect(reason) <> trace(stack) end)}
  end

  defp failure(:erlang, kind, reason, stack) do
    type = %{error: :exception, throw: :throw, exit: :exit}[kind]
    trim = fn module, _function, _arity -> module in [:erl_eval, __MODULE__] end

    {:error, type,
     message(fn ->
       :erl_error.format_exception(kind, reason, stack, %{stack_trim_fun: trim})
     end)}
  end

  defp trace([]), do: ""

  defp trace(stack) do
    case prune(stack) do
      [] -> ""
      frames -> "\n" <> String.trim_trailing(Exception.format_stacktrace(frames))
    end
  end

  # As iex: the frames below the evaluation go, and the compiler's.
  defp prune(stack) do
    stack
    |> Enum.reverse()
    |> Enum.drop_while(&(elem(&1, 0) not in [:elixir_eval, :erl_eval]))
    |> Enum.reverse()
    |> case do
      [] -> stack
      kept -> Enum.reject(kept, &(elem(&1, 0) in @internals))
    end
  end

  # Text made by the source's code (a message/1, an Inspect implementation) may raise,
  # throw or exit, or not be text: the failure is described instead. Bounded either way.
  defp message(fun, max \\ @max_message) do
    text =
      try do
        fun.() |> IO.chardata_to_string()
      catch
        kind, reason ->
          "(could not be shown: #{kind} #{safe_inspect(reason)} while making the text)"
      end

    bound(text, max)
  end

  defp safe_inspect(term) do
    inspect(term, limit: 50, printable_limit: 4096)
  catch
    _kind, _reason -> "(a term that could not be inspected)"
  end

  defp bound(text, max \\ @max_message) do
    if byte_size(text) > max,
      do: binary_part(text, 0, max) <> "...",
      else: text
  end
end
