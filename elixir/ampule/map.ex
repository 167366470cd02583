defmodule Ampule.Map do
  @moduledoc false
  # Ampule.map/3: Task.async_stream's engine (ordering, concurrency, per-element timeouts,
  # killing what is in flight when the stream halts or its caller exits) over Ampule.call.
  # A task killed at its timeout takes its container with it: a cold container is owned by
  # the task, a pooled one is destroyed by its pool when its holder exits.

  @stream_options [:max_concurrency, :ordered, :timeout]

  @spec stream(Enumerable.t(), {module, atom, [term]} | (term -> term), keyword) :: Enumerable.t()
  def stream(enumerable, fun, opts) do
    {stream_opts, call_opts} = Keyword.split(opts, @stream_options)
    work = work!(fun)

    Task.Supervisor.async_stream_nolink(
      Ampule.TaskSupervisor,
      enumerable,
      fn element -> run(work.(element), call_opts) end,
      max_concurrency: Keyword.get(stream_opts, :max_concurrency, System.schedulers_online()),
      ordered: Keyword.get(stream_opts, :ordered, true),
      timeout: Keyword.get(stream_opts, :timeout, 30_000),
      on_timeout: :kill_task
    )
    |> Stream.map(fn
      {:ok, result} -> result
      {:exit, :timeout} -> {:error, :timeout}
      {:exit, reason} -> {:error, {:exit, reason}}
    end)
  end

  defp work!({m, f, extra}) when is_atom(m) and is_atom(f) and is_list(extra),
    do: fn element -> {m, f, [element | extra]} end

  defp work!(fun) when is_function(fun, 1) do
    Ampule.Closure.check!(fun)
    fn element -> fn -> fun.(element) end end
  end

  defp work!(other) do
    raise ArgumentError,
          "expected {module, function, extra_args} or a function of one argument, got: " <>
            inspect(other)
  end

  # One element: its call, in a fresh container or one from a pool, as a result tuple.
  defp run(what, call_opts) do
    {:ok, Ampule.Call.call_with!(what, Keyword.put_new(call_opts, :timeout, :infinity))}
  rescue
    error in Ampule.Error -> {:error, error.reason}
    exception -> {:error, {:exception, exception, __STACKTRACE__}}
  catch
    :throw, value -> {:error, {:throw, value}}
    :exit, reason -> {:error, {:exit, reason}}
  end
end
