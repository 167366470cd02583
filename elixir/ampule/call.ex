defmodule Ampule.Call do
  @moduledoc """
  A call in flight, made by `Ampule.async_call/2,3` and awaited with `Ampule.yield/2`;
  and `capture/3`, a sandbox call with what it printed.

  Only the process that made the call can await it (the reply is a message to that
  process). The struct is opaque.
  """

  # The public face of a call; the work is the transport's:
  # - Ampule.Call.Dist: a distribution container. The remote process is spawned over
  #   distribution and its result is its exit reason (Ampule.Remote).
  # - Ampule.Call.Sandbox: a sandbox. Frames over the agent channel; the result is decoded
  #   as hostile data (Ampule.Sandbox.Decode).
  # Both share one deadline per await, and both kill the remote work on timeout before
  # they return.
  #
  # A container on another host (see `Ampule.Cluster` in Ampule): a sandbox's channel is a pid
  # on that host, reached over distribution like a local one. A distribution container's
  # node cannot be reached from here (its bridge is the host's alone), so the call goes
  # through a relay process on the host (Ampule.Call.Relay): one hop more.

  alias Ampule.Container
  alias Ampule.Call.{Dist, Sandbox}

  @enforce_keys [:transport, :ref, :owner]
  defstruct [:transport, :ref, :mon, :owner, :target, :id, :max, :via, :name, :output]

  @opaque t :: %__MODULE__{
            transport: Dist | Sandbox,
            ref: reference,
            mon: reference | nil,
            owner: pid,
            target: node | pid,
            id: non_neg_integer | nil,
            max: pos_integer | nil,
            via: node | nil,
            name: String.t() | nil,
            output: output | nil
          }

  @typedoc false
  # Where a sandbox call's output goes when not to its log (Ampule.Sandbox.Channel).
  @type output :: %{
          capture?: boolean,
          stream: pid | nil,
          active: boolean | :once | pos_integer,
          max: pos_integer
        }

  @typedoc "What a container runs: `{module, function, args}` or a 0-arity function."
  @type callable :: {module, atom, [term]} | (() -> term)

  @type result :: {:ok, term} | {:error, Ampule.Error.reason()}

  @default_timeout 5_000
  # Output of a call, when asked: the most bytes (`:max_output`), and the chunks a stream
  # receiver is sent before it must re-arm (as a console's `:active`).
  @default_max_output 1024 * 1024
  @default_stream_active 100

  @doc false
  @spec default_timeout() :: pos_integer
  def default_timeout, do: @default_timeout

  @doc false
  # What `Ampule.call/1,2,3` and its siblings accept as work; anything else raises.
  @spec callable!(term) :: callable
  def callable!({m, f, a} = mfa) when is_atom(m) and is_atom(f) and is_list(a), do: mfa
  def callable!(fun) when is_function(fun, 0), do: Ampule.Closure.check!(fun)

  def callable!(other) do
    raise ArgumentError,
          "expected {module, function, args} or a function of no arguments, got: #{inspect(other)}"
  end

  @doc false
  # `Ampule.call/2`: in a container held, with the default timeout, or in a fresh one.
  @spec call!(term, Container.t() | keyword) :: term
  def call!(what, %Container{} = container), do: call!(what, container, @default_timeout)
  def call!(what, opts) when is_list(opts), do: call_with!(what, opts)

  @doc false
  # `Ampule.call/3`: the result, or the function's raise/throw/exit again here, or
  # Ampule.Error for Ampule's own failure. With options (`:timeout`, `:output`,
  # `:max_output`), `output: :capture` makes it `{value, output}`.
  @spec call!(term, Container.t(), term) :: term
  def call!(what, %Container{} = container, opts) when is_list(opts) do
    {timeout, opts} = Keyword.pop(opts, :timeout, @default_timeout)
    call!(what, container, timeout, output!(opts))
  end

  def call!(what, %Container{} = container, timeout), do: call!(what, container, timeout, nil)

  defp call!(what, container, timeout, output) do
    what = callable!(what)
    timeout = Ampule.Options.timeout!(timeout, :timeout)

    case {output, await(async(container, what, output), timeout)} do
      {%{capture?: true}, {result, printed}} -> {value!(result, container), printed}
      {_, result} -> value!(result, container)
    end
  end

  defp value!({:ok, value}, _container), do: value

  defp value!({:error, {:exception, exception, stacktrace}}, _container),
    do: reraise(exception, stacktrace)

  defp value!({:error, {:throw, value}}, _container), do: throw(value)
  defp value!({:error, {:exit, reason}}, _container), do: exit(reason)

  defp value!({:error, reason}, container),
    do: raise(Ampule.Error, reason: reason, container: container.name)

  @doc false
  # `Ampule.multicall/3`: one deadline for all.
  @spec multicall(callable, [Container.t()], timeout) :: [result]
  def multicall(what, containers, timeout) do
    containers
    |> Enum.map(fn %Container{} = container -> async(container, what) end)
    |> await_many(timeout)
  end

  @doc false
  # `Ampule.call/2` with options: in a fresh container, destroyed after the call, or in
  # one of a pool's (`pool:`).
  @spec call_with!(term, keyword) :: term
  def call_with!(what, opts) when is_list(opts) do
    what = callable!(what)

    case Keyword.pop(opts, :pool) do
      {nil, opts} -> fresh_call(what, opts)
      {pool, opts} -> pooled_call(what, pool, opts)
    end
  end

  defp fresh_call(what, opts) do
    {output_opts, opts} = Keyword.split(opts, [:output, :max_output])
    {timeout, spawn_opts} = Ampule.Options.call!(opts, @default_timeout)
    # Checked before a container is made for it.
    _ = output!(output_opts)
    container = Ampule.Containers.spawn!(spawn_opts)

    try do
      call!(what, container, [timeout: timeout] ++ output_opts)
    rescue
      error in Ampule.Error ->
        reraise %{error | reason: node_gone_reason(error.reason, container)}, __STACKTRACE__
    after
      Ampule.Containers.destroy(container)
    end
  end

  # A container of the pool's, made with the pool's options: only the timeout is the
  # call's own.
  defp pooled_call(what, pool, opts) do
    {timeout, rest} = Keyword.pop(opts, :timeout, @default_timeout)
    timeout = Ampule.Options.timeout!(timeout, :timeout)
    {output_opts, rest} = Keyword.split(rest, [:output, :max_output])
    _ = output!(output_opts)

    if rest != [] do
      raise ArgumentError,
            "with :pool, the only other options of a call are :timeout, :output and " <>
              ":max_output (the pool makes its containers with its own options), got: " <>
              "#{inspect(Keyword.keys(rest))}"
    end

    Ampule.Pool.with_container(pool, fn container ->
      try do
        call!(what, container, [timeout: timeout] ++ output_opts)
      rescue
        error in Ampule.Error ->
          reraise %{error | reason: node_gone_reason(error.reason, container)}, __STACKTRACE__
      end
    end)
  end

  @doc false
  # The fresh container's node went away during the call. Its owner (this process) hears
  # why from the port; when it was the memory limit, say so rather than `:noconnection`.
  # (Ampule.Grade's fresh sandboxes too.)
  @spec node_gone_reason(Ampule.Error.reason(), Container.t()) :: Ampule.Error.reason()
  def node_gone_reason(:noconnection, %Container{name: name}) do
    receive do
      {:ampule_exit, %Container{name: ^name}, :oom} -> :oom
      {:ampule_exit, %Container{name: ^name}, _status} -> :noconnection
    after
      # The port reports the exit right when the init is gone; longer, and the failed
      # call would wait for a reason that changes nothing.
      500 -> :noconnection
    end
  end

  def node_gone_reason(reason, _container), do: reason

  @doc false
  @spec default_max_output() :: pos_integer
  def default_max_output, do: @default_max_output

  @doc """
  Runs `callable` in the sandbox `container` and returns `{result, output}`: `result` is
  what `Ampule.yield/2` returns for the call (`{:ok, value}` or `{:error, reason}`, among
  them `{:error, {:output_limit, max}}`, `{:error, :timeout}` and the sandbox's end, such
  as `{:error, :oom}`), `output` everything the call and the processes it started printed
  (standard output and standard error, in order, as bytes) until then, even when the call
  failed.

  Options: `:timeout` (ms or `:infinity`, default #{@default_timeout}: the call is killed
  then), `:max_output` (bytes, default #{@default_max_output}: past it the call is killed
  and answers `{:error, {:output_limit, max}}`, the output holding exactly `max` bytes),
  `:stream` (a pid that is sent the output as it comes too, see `Ampule.async_call/3`)
  and `:active` (the stream's flow, default #{@default_stream_active}).

  Raises ArgumentError for a distribution container (output is a sandbox's).
  """
  @spec capture(Container.t(), callable, keyword) :: {result, binary}
  def capture(%Container{} = container, what, opts \\ []) do
    what = callable!(what)
    {timeout, opts} = Keyword.pop(opts, :timeout, @default_timeout)
    timeout = Ampule.Options.timeout!(timeout, :timeout)

    {stream, opts} = Keyword.pop(opts, :stream)
    {active, opts} = Keyword.pop(opts, :active)
    mode = if stream, do: {:stream, stream, active}, else: :capture
    output = %{output!([output: mode] ++ opts) | capture?: true}
    call = async(container, what, output)
    Sandbox.await_output(call, deadline(timeout))
  end

  @doc false
  # The `:output` and `:max_output` options of a call: nil for the log (the default), or
  # where the output goes. Raises on anything else.
  @spec output!(keyword) :: output | nil
  def output!(opts) do
    {max, opts} = Keyword.pop(opts, :max_output, @default_max_output)
    {mode, opts} = Keyword.pop(opts, :output, :log)

    if opts != [],
      do:
        raise(ArgumentError, "unknown options of a call's output: #{inspect(Keyword.keys(opts))}")

    unless is_integer(max) and max > 0 and max <= 0xFFFF_FFFF_FFFF_FFFF do
      raise ArgumentError,
            "expected :max_output to be a positive integer of bytes, got: #{inspect(max)}"
    end

    case mode do
      :log ->
        nil

      :capture ->
        %{capture?: true, stream: nil, active: false, max: max}

      {:stream, pid} when is_pid(pid) ->
        %{capture?: false, stream: pid, active: @default_stream_active, max: max}

      # From capture/3 without `:active`.
      {:stream, pid, nil} when is_pid(pid) ->
        %{capture?: false, stream: pid, active: @default_stream_active, max: max}

      {:stream, pid, active}
      when is_pid(pid) and
             (is_boolean(active) or active == :once or
                (is_integer(active) and active > 0)) ->
        %{capture?: false, stream: pid, active: active, max: max}

      other ->
        raise ArgumentError,
              "expected :output to be :log, :capture, {:stream, pid} or {:stream, pid, " <>
                "active} (active: true, false, :once or a positive count), got: #{inspect(other)}"
    end
  end

  @doc false
  # `Ampule.output_active/2`: the flow of a call's streamed output.
  @spec output_active(t, boolean | :once | integer) :: :ok
  def output_active(%__MODULE__{transport: Sandbox, target: channel, id: id, output: %{}}, mode)
      when is_boolean(mode) or mode == :once or is_integer(mode) do
    send(channel, {:ampule_output_active, id, mode})
    :ok
  end

  def output_active(call, mode) do
    raise ArgumentError,
          "expected a call made with output: {:stream, pid} and true, false, :once or an " <>
            "integer, got: #{inspect(call)}, #{inspect(mode)}"
  end

  @doc false
  @spec async(Container.t(), callable, output | nil) :: t
  def async(container, what, output \\ nil)

  def async(%Container{sandbox: true} = container, what, output),
    do: Sandbox.async(container, what, output)

  def async(%Container{name: name}, _what, %{}) do
    raise ArgumentError,
          "output: and max_output: are for sandboxes (sandbox: true); in the distribution " <>
            "container #{name}, output goes to its log (or use :erpc with a group leader of " <>
            "your own)"
  end

  def async(container, what, nil), do: async_dist(container, what)

  defp async_dist(%Container{nodename: node, host: host} = container, what) do
    if Container.local?(container),
      do: Dist.async(node, what),
      else: Dist.async_via(host, node, what)
  end

  @doc false
  @spec cast(Container.t(), callable, timeout) :: :ok
  def cast(%Container{sandbox: true} = container, what, timeout),
    do: Sandbox.cast(container, what, timeout)

  def cast(%Container{nodename: node, host: host} = container, what, timeout) do
    if Container.local?(container),
      do: Dist.cast(node, what, timeout),
      else: Dist.cast_via(host, node, what, timeout)
  end

  @doc false
  @spec await(t, timeout) :: result
  def await(%__MODULE__{owner: owner} = call, timeout) do
    if owner != self() do
      raise ArgumentError,
            "Ampule.yield/2 must be called by the process that made the call " <>
              "(#{inspect(owner)}), not #{inspect(self())}"
    end

    case call do
      %{output: %{capture?: true}} -> Sandbox.await_output(call, deadline(timeout))
      _ -> call.transport.await(call, deadline(timeout))
    end
  end

  @doc false
  # Awaits several calls against one deadline (multicall).
  @spec await_many([t], timeout) :: [result]
  def await_many(calls, timeout) do
    deadline = deadline(timeout)
    Enum.map(calls, & &1.transport.await(&1, deadline))
  end

  defp deadline(:infinity), do: :infinity
  defp deadline(timeout), do: System.monotonic_time(:millisecond) + timeout

  @doc false
  def remaining(:infinity), do: :infinity
  def remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)
end
