defmodule Ampule.Eval do
  @moduledoc """
  Running untrusted source: Elixir (or Erlang) source text in, a value and its output
  out, as `Ampule.eval_string/2` and `Ampule.eval_quoted/2` do it.

      Ampule.eval_string(~S[IO.puts("Hello world!")])
      #=> %Ampule.Eval.Success{value: :ok, inspected: ":ok", stdio: "Hello world!\\n"}

      Ampule.eval_string("List.duplicate(:spam, 100_000)", max_heap_size: 50_000)
      #=> %Ampule.Eval.Failure{type: :memory, message: "the evaluation passed its heap
      #=>   limit of 50000 words (max_heap_size) and was stopped", stdio: ""}

      Ampule.eval_string("File.cwd!()")
      #=> %Ampule.Eval.Success{value: "/home/ampule", inspected: ~S["/home/ampule"], stdio: ""}

  The interface is [Dune](https://hexdocs.pm/dune)'s (`Dune.eval_string/2`, its
  `Success` and `Failure` structs, its limits), the isolation is not: Dune evaluates in
  your own VM behind an allow-list of functions and says itself that it cannot offer
  strong guarantees; here the source runs in a sandbox (`Ampule.Sandbox`: its own node,
  its own kernel namespaces, memory and CPU limits, a seccomp filter, no network) and
  nothing is refused by name. `File.cwd!()`, which Dune restricts, works: it shows the
  sandbox's own directory. What the source may do is whatever a process in that sandbox
  may do; what reaches you is data (below).

  ## Where the source runs

    * by default, in a fresh sandbox made for the evaluation with `Ampule.start/1`'s
      options (`:memory`, `:cpus`, `:pids`, `:boot_timeout`, `:prepare`, ...) and
      destroyed after it, whatever happened;
    * `pool: name`: in a sandbox of an `Ampule.Pool` of sandboxes, handed out pristine
      and destroyed after the evaluation (a pool with `prepare: Ampule.Eval.prepare()`
      has `:elixir` started and the compiler loaded ahead, see `prepare/0`);
    * `container: sandbox`: in a sandbox you hold (`Ampule.spawn(sandbox: true)`), which
      is then a **session**, as iex is or `Dune.Session`: the bindings, aliases, imports
      and requires of one evaluation are there in the next, and so are the modules it
      defined and the processes it started.

  Always a sandbox: a distribution container's node is a peer of yours that code can
  call back into, so `sandbox: false`, or a pool or container that is not a sandbox,
  raises `ArgumentError`.

  ## Sessions

      sandbox = Ampule.spawn(sandbox: true)
      Ampule.eval_string("defmodule Greeter, do: def(hi(x), do: \\"hi \\" <> x)", container: sandbox)
      Ampule.eval_string("name = \\"you\\"", container: sandbox)
      Ampule.eval_string("Greeter.hi(name)", container: sandbox).value
      #=> "hi you"

  A session's state lives in its sandbox, not in your node: a table of that node keyed
  by `:session` (any term; default `:default`), so one sandbox can hold several sessions
  apart, which share the node's modules and processes but not their bindings. The state
  is written when an evaluation succeeds; one that fails leaves the session as it was
  (as iex does). Two evaluations of one session at once both start from the state
  before them, and the one that ends last is kept. The session ends with the sandbox:
  destroy it to start over, or use another `:session` key; a sandbox that ends during an
  evaluation (`:memory` by its memory limit, `:sandbox_down`) ends its sessions too.
  Elixir and Erlang keep their bindings apart. Nothing of a session ever crosses back.

  ## What the source sees

  A node of its own, `:nonode@nohost`, with `:elixir` started by the evaluation (a
  sandbox boots without it), the caller's code paths (read-only), its working directory
  `/home/ampule` (writable, in the sandbox's memory), a loopback interface and nothing
  else of a network. Standard input is at its end (`IO.gets/1` gives `:eof`). Compiler
  warnings go to standard error, so to `stdio`, as they would at a terminal. Elixir's
  protocols are consolidated there, as in a release: a `defimpl` of `Inspect` or
  `Enumerable` in the source compiles but is not dispatched to, so a struct it defines
  is inspected by its fields.

  ## What crosses back

  Only bytes that the sandbox made, each read here as hostile data:

    * `inspected` and a failure's `message`: text made in the sandbox (the value's
      `inspect/2`, an exception's `Exception.format/3`: the source's own `Inspect`
      implementation or `message/1` runs there, under the evaluation's limits, never
      here). Bounded (64 KiB and 16 KiB), made valid UTF-8 here, and otherwise
      whatever the source chose: show it as text, never evaluate or interpret it;
    * `stdio`: bytes the source printed, bounded by `:max_output`, not even UTF-8;
    * `value`: decoded by the rules of every sandbox result, without making an atom
      (`Ampule.Sandbox`, "What a sandbox's result may hold"). A value that may not cross
      (an atom only the sandbox has, such as `:hello_world`, a fun, a pid, a struct that
      is not plain data, more than the sandbox's `:max_result` bytes) comes back as its
      `inspected` text alone, with `value: nil` and the reason in `refused`. However many
      atoms the source makes, this node's atom table does not grow: there is no
      `:atom_leak` failure as in Dune, since the source's atoms are the sandbox's.

  ## Limits

  Each limit passed is its own failure type (`Ampule.Eval.Failure`), and stops the
  evaluation:

    * `:timeout` - milliseconds for the evaluation, from the call into the sandbox to its
      answer (a cold sandbox's boot is `:boot_timeout`'s); past it the evaluating process
      is killed: `:timeout`. Default 5000
    * `:max_heap_size` - the evaluating process's heap limit, in words (as
      `Process.flag(:max_heap_size, ...)`, 233 to 2^58): `:memory`. Default: none, the
      sandbox's memory limit being the wall
    * `:memory` (and every other option of `Ampule.start/1`, cold only) - the whole
      sandbox's memory limit: the kernel kills the sandbox past it: `:memory` as well,
      told apart by its message
    * `:max_reductions` - the evaluating process's budget of reductions (the BEAM's unit
      of work), read every 5 ms in the sandbox, so passed by at most that much work:
      `:reductions`. Default: none
    * `:max_output` - bytes of output: `:output_limit`, the output so far kept. Default
      1 MiB

  The per-process limits are the evaluating process's own, as in Dune: processes the
  source starts are bounded by the sandbox's limits (`:memory`, `:pids`, `:cpus`), not
  by these. The source killing its own process with `:kill` under `:max_heap_size` looks
  like the heap limit from outside, and is `:memory`. One long call of a built-in
  function that does not yield (printing a bignum of millions of bits) holds the
  sandbox's only scheduler: the evaluation is `:timeout` all the same, and the sandbox,
  which cannot answer the kill meanwhile, is destroyed as unresponsive (a held one with
  its sessions).

  ## Options

  Besides the limits above:

    * `:container`, `:pool` - where it runs (above)
    * `:session` - the session's key in a held sandbox (default `:default`); only with
      `:container`
    * `:language` - `:elixir` (default) or `:erlang`: a sequence of Erlang expressions
      (`"X = 6, X * 7."`, the final dot optional), evaluated by `:erl_eval` and reported
      as the Erlang shell shows errors. Only for `Ampule.eval_string/2`
    * `:file` - the file name in messages and stack traces (default `"nofile"`)
    * `:inspect` - options of `inspect/2` for `inspected` (default `limit: 50,
      printable_limit: 4096, pretty: true, width: 80`)
    * `:stream` - a pid that also gets the output while the evaluation runs, as
      `{:ampule_output, call, bytes}` messages (Livebook's way), `:active` of them at a
      time (default 100, or `true` for no bound): then `{:ampule_output_passive, call}`,
      and the evaluation's printing waits until `Ampule.output_active(call, n)` re-arms
      it, as a console's flow does (see `Ampule.async_call/3`). `stdio` still has all of
      it

  A bad option raises `ArgumentError`. When Ampule itself cannot evaluate (a cold
  sandbox does not boot, a pool has no sandbox within its checkout timeout), the call
  raises `Ampule.Error`: a failure struct is the source's doing, or its sandbox's.
  """

  alias Ampule.{Call, Container, Containers}
  alias Ampule.Eval.{Failure, Inside, Success}
  alias Ampule.Sandbox.Decode

  @eval_keys [
    :container,
    :pool,
    :session,
    :language,
    :file,
    :inspect,
    :stream,
    :active,
    :timeout,
    :max_heap_size,
    :max_reductions,
    :max_output
  ]
  @inspect_defaults [limit: 50, printable_limit: 4096, pretty: true, width: 80]
  @max_inspected 65_536
  @max_message 16_384
  # What the answer holds besides the encoded value: `inspected` and the tuple around it.
  @overhead @max_inspected + 1_024

  @type result :: Success.t() | Failure.t()

  @doc """
  A pool's `prepare:` for evaluations: `:elixir` started, and one small module compiled
  and called through the evaluator, so that a pooled evaluation pays for its own source
  and not for loading the compiler (see "Prepared containers" in `Ampule.Pool`).

      {Ampule.Pool, name: MyApp.Playground, size: 4, sandbox: true, prepare: Ampule.Eval.prepare()}
  """
  @spec prepare() :: keyword
  def prepare do
    [
      applications: [:elixir],
      modules: [Inside, Ampule.Eval.Session],
      run: {Inside, :warm, []}
    ]
  end

  @doc false
  @spec string(String.t(), keyword) :: result
  def string(source, opts) when is_binary(source) and is_list(opts),
    do: run(%{source: source, quoted: nil}, opts)

  def string(source, _opts),
    do: raise(ArgumentError, "expected source text (a binary), got: #{inspect(source)}")

  @doc false
  @spec quoted(Macro.t(), keyword) :: result
  def quoted(quoted, opts) when is_list(opts) do
    if Keyword.get(opts, :language, :elixir) != :elixir,
      do: raise(ArgumentError, "eval_quoted/2 takes Elixir's quoted form only: no :language")

    run(%{source: nil, quoted: quoted}, opts)
  end

  defp run(what, opts) do
    {eval_opts, start_opts} = Keyword.split(opts, @eval_keys)
    config = config!(eval_opts)
    request = Map.merge(what, request(config))

    case {eval_opts[:container], eval_opts[:pool]} do
      {nil, nil} ->
        cold(request, config, start_opts)

      {%Container{} = container, nil} ->
        only!(start_opts, :container)
        evaluate(sandbox!(container, :container), request, config)

      {nil, pool} ->
        only!(start_opts, :pool)
        if config.session, do: raise(ArgumentError, ":session needs a held sandbox (:container)")
        pooled(pool, request, config)

      {other, nil} ->
        raise ArgumentError, "expected :container to be a sandbox, got: #{inspect(other)}"

      _both ->
        raise ArgumentError, "give :container or :pool, not both"
    end
  end

  defp cold(request, config, start_opts) do
    if config.session, do: raise(ArgumentError, ":session needs a held sandbox (:container)")

    if Keyword.get(start_opts, :sandbox, true) != true,
      do: raise(ArgumentError, "untrusted source runs in sandboxes only: no sandbox: false")

    container = Containers.spawn!(Keyword.put(start_opts, :sandbox, true))

    try do
      evaluate(container, request, config)
    after
      Containers.destroy(container)
      forget_exit(container)
    end
  end

  defp pooled(pool, request, config) do
    Ampule.Pool.with_container(pool, fn container ->
      try do
        evaluate(sandbox!(container, :pool), request, config)
      after
        forget_exit(container)
      end
    end)
  end

  # A sandbox of the evaluation's own that ended during it (its memory limit, a halt)
  # told its owner or holder, this process, already: the failure says it, and a caller
  # that is a GenServer should not get a message about a sandbox it never held.
  defp forget_exit(%Container{name: name}) do
    receive do
      {:ampule_exit, %Container{name: ^name}, _status} -> :ok
    after
      0 -> :ok
    end
  end

  defp evaluate(%Container{} = container, request, config) do
    deadline = deadline(config.timeout)
    request = %{request | max_value: max(container.max_result - @overhead, 0)}

    capture =
      [timeout: config.timeout, max_output: config.max_output] ++
        if(config.stream, do: [stream: config.stream, active: config.active], else: [])

    {result, stdio} = Call.capture(container, {Inside, :eval, [request]}, capture)
    outcome(result, stdio, container, config, deadline)
  end

  ## What came back

  defp outcome({:ok, {:ok, inspected, encoded}}, stdio, container, _config, deadline)
       when is_binary(inspected) and (is_binary(encoded) or is_tuple(encoded)) do
    {value, refused} = value(encoded, container.max_result, deadline)

    %Success{
      value: value,
      refused: refused,
      inspected: text(inspected, @max_inspected),
      stdio: stdio
    }
  end

  defp outcome({:ok, {:error, type, message}}, stdio, _container, _config, _deadline)
       when is_binary(message) do
    if type in Inside.types(),
      do: failure(type, text(message, @max_message), stdio),
      else: failure(:protocol, "the sandbox answered with an unknown failure type", stdio)
  end

  defp outcome({:ok, _other}, stdio, _container, _config, _deadline) do
    failure(:protocol, "the sandbox answered what the evaluation never sends", stdio)
  end

  defp outcome({:error, reason}, stdio, _container, config, _deadline),
    do: failure(type(reason), limit_message(reason, config), stdio)

  defp type(:timeout), do: :timeout
  defp type({:output_limit, _max}), do: :output_limit
  defp type(:oom), do: :memory
  defp type({:exception, _exception, _stacktrace}), do: :exception
  defp type({:throw, _value}), do: :throw
  defp type({:exit, _reason}), do: :exit
  defp type(:noconnection), do: :sandbox_down
  defp type({:host_down, _node}), do: :sandbox_down
  defp type({:protocol, _detail}), do: :protocol
  defp type({:result_refused, _kind}), do: :protocol
  defp type({:result_too_large, _max}), do: :protocol
  defp type(reason), do: raise(Ampule.Error, reason: reason)

  # The call's own failures: the watcher in the sandbox was killed or broken by the
  # source (it can reach any process of its node), or the sandbox ended.
  defp limit_message(:timeout, config),
    do: "the evaluation did not end within its timeout of #{config.timeout} ms and was stopped"

  defp limit_message({:output_limit, max}, _config),
    do: "the evaluation printed more than its limit of #{max} bytes (max_output) and was stopped"

  defp limit_message(:oom, _config),
    do: "the sandbox passed its memory limit and the kernel killed it; it is gone"

  # As iex shows it: the module and message the sandbox described (Ampule.RemoteError).
  defp limit_message({:exception, %Ampule.RemoteError{module: m, message: text}, _stack}, _),
    do: text("** (#{m}) #{text}", @max_message)

  defp limit_message({:exception, exception, _stacktrace}, _config),
    do: text(Exception.format_banner(:error, exception), @max_message)

  defp limit_message({kind, term}, _config) when kind in [:throw, :exit],
    do: text("** (#{kind}) " <> inspect(term, limit: 50, printable_limit: 4096), @max_message)

  defp limit_message(reason, _config), do: Ampule.Error.format_error(reason)

  # The value, decoded as any sandbox result: `{value, nil}`, or `{nil, why not}`.
  defp value(encoded, max, deadline) when is_binary(encoded) do
    case Decode.decode(encoded, max, deadline) do
      {:ok, value} -> {value, nil}
      {:refused, kind} -> {nil, {:result_refused, kind}}
      :too_large -> {nil, {:result_too_large, max}}
      :timeout -> {nil, :timeout}
      {:error, :bad_term} -> {nil, {:protocol, :bad_term}}
    end
  end

  defp value({:too_large, _size}, max, _deadline), do: {nil, {:result_too_large, max}}
  defp value(_other, _max, _deadline), do: {nil, {:protocol, :bad_term}}

  defp failure(type, message, stdio), do: %Failure{type: type, message: message, stdio: stdio}

  # Text from the sandbox: at most `max` bytes, and valid UTF-8 (what is not becomes
  # U+FFFD), whatever the sandbox wrote.
  defp text(bytes, max) do
    bytes = if byte_size(bytes) > max, do: binary_part(bytes, 0, max), else: bytes

    if String.valid?(bytes) do
      bytes
    else
      bytes
      |> String.chunk(:valid)
      |> Enum.map(fn chunk -> if String.valid?(chunk), do: chunk, else: "\uFFFD" end)
      |> IO.iodata_to_binary()
    end
  end

  ## Options

  defp config!(opts) do
    %{
      language: member!(opts, :language, [:elixir, :erlang], :elixir),
      session: Keyword.get(opts, :session) || if(opts[:container], do: :default),
      file: string!(opts, :file, "nofile"),
      inspect: inspect!(Keyword.get(opts, :inspect, [])),
      stream: pid!(opts[:stream]),
      active: Keyword.get(opts, :active),
      timeout: Ampule.Options.timeout!(Keyword.get(opts, :timeout, 5_000), :timeout),
      max_heap_size: heap!(opts[:max_heap_size]),
      max_reductions: positive!(opts, :max_reductions),
      max_output: positive!(opts, :max_output) || Call.default_max_output()
    }
  end

  defp request(config) do
    %{
      language: config.language,
      session: config.session,
      file: config.file,
      inspect: config.inspect,
      max_inspected: @max_inspected,
      max_heap_size: config.max_heap_size,
      max_reductions: config.max_reductions,
      max_value: 0
    }
  end

  defp member!(opts, key, allowed, default) do
    value = Keyword.get(opts, key, default)

    if value in allowed,
      do: value,
      else:
        raise(
          ArgumentError,
          "expected #{inspect(key)} to be one of #{inspect(allowed)}, got: #{inspect(value)}"
        )
  end

  defp string!(opts, key, default) do
    case Keyword.get(opts, key, default) do
      value when is_binary(value) ->
        value

      other ->
        raise ArgumentError, "expected #{inspect(key)} to be a string, got: #{inspect(other)}"
    end
  end

  defp inspect!(opts) do
    if Keyword.keyword?(opts),
      do: Keyword.merge(@inspect_defaults, opts),
      else:
        raise(
          ArgumentError,
          "expected :inspect to be options of inspect/2, got: #{inspect(opts)}"
        )
  end

  defp pid!(nil), do: nil
  defp pid!(pid) when is_pid(pid), do: pid

  defp pid!(other),
    do: raise(ArgumentError, "expected :stream to be a pid, got: #{inspect(other)}")

  # What the runtime accepts: at least a process's smallest heap, at most 2^58 words.
  defp heap!(nil), do: nil
  defp heap!(words) when is_integer(words) and words in 233..0x400000000000000, do: words

  defp heap!(other) do
    raise ArgumentError,
          "expected :max_heap_size to be a number of words from 233 to 2^58, got: " <>
            inspect(other)
  end

  defp positive!(opts, key) do
    case Keyword.get(opts, key) do
      nil ->
        nil

      n when is_integer(n) and n > 0 ->
        n

      other ->
        raise ArgumentError,
              "expected #{inspect(key)} to be a positive integer, got: #{inspect(other)}"
    end
  end

  defp only!([], _target), do: :ok

  defp only!(start_opts, target) do
    raise ArgumentError,
          "with #{inspect(target)} the sandbox is already made: options of Ampule.start/1 " <>
            "(#{inspect(Keyword.keys(start_opts))}) go only with a cold evaluation"
  end

  defp sandbox!(%Container{sandbox: true} = container, _key), do: container

  defp sandbox!(container, key) do
    raise ArgumentError,
          "untrusted source runs in sandboxes only: the #{inspect(key)} gave #{inspect(container.name)}, " <>
            "a distribution container"
  end

  defp deadline(:infinity), do: :infinity
  defp deadline(timeout), do: System.monotonic_time(:millisecond) + timeout
end
