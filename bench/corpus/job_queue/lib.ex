defmodule Corpus.JobQueue do
  @moduledoc "A job queue: a GenServer handing jobs to at most `limit` tasks at a time."

  use GenServer

  def start_link(limit), do: GenServer.start_link(__MODULE__, limit)

  @doc "Queues `fun`; returns a reference that the result is sent with: `{:job_done, ref, result}`."
  def submit(queue, fun), do: GenServer.call(queue, {:submit, fun, self()})

  def stats(queue), do: GenServer.call(queue, :stats)

  def run_all(queue, funs) do
    refs = Enum.map(funs, &submit(queue, &1))

    Enum.map(refs, fn ref ->
      receive do
        {:job_done, ^ref, result} -> result
      after
        5_000 -> :timeout
      end
    end)
  end

  @impl true
  def init(limit),
    do: {:ok, %{limit: limit, running: %{}, waiting: :queue.new(), done: 0, peak: 0}}

  @impl true
  def handle_call({:submit, fun, caller}, _from, state) do
    ref = make_ref()
    state = %{state | waiting: :queue.in({ref, fun, caller}, state.waiting)}
    {:reply, ref, dispatch(state)}
  end

  def handle_call(:stats, _from, state) do
    {:reply,
     %{
       running: map_size(state.running),
       waiting: :queue.len(state.waiting),
       done: state.done,
       peak: state.peak
     }, state}
  end

  @impl true
  def handle_info({task_ref, result}, state) when is_map_key(state.running, task_ref) do
    Process.demonitor(task_ref, [:flush])
    {{ref, caller}, running} = Map.pop(state.running, task_ref)
    send(caller, {:job_done, ref, {:ok, result}})
    {:noreply, dispatch(%{state | running: running, done: state.done + 1})}
  end

  def handle_info({:DOWN, task_ref, :process, _pid, reason}, state) do
    {{ref, caller}, running} = Map.pop(state.running, task_ref)
    send(caller, {:job_done, ref, {:error, reason}})
    {:noreply, dispatch(%{state | running: running, done: state.done + 1})}
  end

  defp dispatch(state) do
    with true <- map_size(state.running) < state.limit,
         {{:value, {ref, fun, caller}}, waiting} <- :queue.out(state.waiting) do
      task = Task.Supervisor.async_nolink(Corpus.JobQueue.Tasks, fun)
      running = Map.put(state.running, task.ref, {ref, caller})

      dispatch(%{
        state
        | running: running,
          waiting: waiting,
          peak: max(state.peak, map_size(running))
      })
    else
      _ -> state
    end
  end
end
