defmodule Ampule.Remote do
  @moduledoc false
  # The code that runs on a container's node for Ampule.call/async_call/multicall/cast.
  #
  # It is found there on the code path Ampule passes (this project's ebin), or loaded by
  # Ampule.start/1 after the boot. Keep it small and free of other modules, even Elixir's
  # (spawn/1, exit/1 and apply/3 compile to :erlang calls).

  @doc """
  Runs `apply(m, f, a)` in this process, which the caller spawned with
  `:erlang.spawn_request/5` and monitors: the result is this process's exit reason,
  `{:ampule_result, :return, value}` or `{:ampule_result, kind, reason, stacktrace}`.

  A watcher kills this process if the caller goes away (exits, or its node disconnects),
  so that no call outlives the process that waits for it. The caller kills it (`:kill`,
  which cannot be trapped) when its timeout passes.
  """
  def call(caller, m, f, a), do: run(caller, m, f, a)

  @doc "As `call/4`, for a 0-arity function: `apply(fun, [])`."
  def call(caller, fun), do: run(caller, :erlang, :apply, [fun, []])

  defp run(caller, m, f, a) do
    worker = self()
    spawn(fn -> watch(caller, worker) end)

    result =
      try do
        {:ampule_result, :return, apply(m, f, a)}
      catch
        kind, reason -> {:ampule_result, kind, reason, __STACKTRACE__}
      end

    exit(result)
  end

  @doc "Runs `apply(m, f, a)`, killed after `timeout` ms unless it is `:infinity`."
  def cast(m, f, a, timeout), do: cast_run(m, f, a, timeout)

  @doc "As `cast/4`, for a 0-arity function."
  def cast(fun, timeout), do: cast_run(:erlang, :apply, [fun, []], timeout)

  defp cast_run(m, f, a, :infinity), do: apply(m, f, a)

  defp cast_run(m, f, a, timeout) do
    worker = self()
    spawn(fn -> deadline(worker, timeout) end)
    apply(m, f, a)
  end

  defp watch(caller, worker) do
    caller_ref = :erlang.monitor(:process, caller)
    worker_ref = :erlang.monitor(:process, worker)

    receive do
      {:DOWN, ^worker_ref, _, _, _} -> :ok
      {:DOWN, ^caller_ref, _, _, _} -> :erlang.exit(worker, :kill)
    end
  end

  defp deadline(worker, timeout) do
    ref = :erlang.monitor(:process, worker)

    receive do
      {:DOWN, ^ref, _, _, _} -> :ok
    after
      timeout -> :erlang.exit(worker, :kill)
    end
  end
end
