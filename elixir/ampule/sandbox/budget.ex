defmodule Ampule.Sandbox.Budget do
  @moduledoc false
  # The host-wide budget for sandboxes' result bytes in flight: one per node, shared by
  # every channel. Without it, twenty sandboxes each returning a 60 MiB result at once
  # took this node to 1.7 GB (each result is within its own `:max_result`); and ten
  # sandboxes with no call pending each held 64 MiB of a frame they never finished.
  #
  # A result over `Ampule.Sandbox.Frame.eager/0` bytes is counted twice, one phase after
  # the other, never both at once:
  #
  #   - received: the agent announces it with its size and sends it only once its
  #     channel holds that many bytes of this budget (`request/2`, answered by
  #     `{:ampule_budget, id}`); the channel gives them back (`release/1`) when it hands
  #     the frame to the caller;
  #   - decoded: the caller holds as many bytes again while it decodes (`acquire/2`,
  #     within its call's deadline). Holding them until the decode was over from the
  #     channel's side would let one caller with several large calls in flight wait for
  #     itself: its next result would need the bytes of one it has not decoded yet.
  #
  # Requests are granted in the order they came, so a large one is not starved by small
  # ones behind it. That is back-pressure: while the budget is spent, a sandbox's result
  # waits in the sandbox, and its caller's timeout runs as for any slow call. A request
  # larger than the whole budget can never be granted and gets `{:ampule_budget_refused,
  # id}` at once. A holder that dies gives back everything it held (this process monitors
  # it). Results up to the eager size are not counted: a channel reads at most one such
  # frame at a time, so they are bounded by the number of sandboxes.
  #
  # The budget is `config :ampule, result_budget: bytes` (default 512 MiB), read at start.

  use GenServer

  @default 512 * 1024 * 1024

  @doc "The budget in force when none is configured, in bytes."
  def default, do: @default

  def start_link(opts) do
    GenServer.start_link(__MODULE__, opts, name: Keyword.get(opts, :name, __MODULE__))
  end

  @doc "Asks for `size` bytes for call `id`; the answer comes as a message (above)."
  @spec request(term, non_neg_integer) :: :ok
  def request(id, size), do: GenServer.cast(__MODULE__, {:request, self(), id, size})

  @doc """
  Waits for `size` bytes until `deadline` (monotonic ms, or `:infinity`): `{:ok, held}`,
  to give back with `release(held)`, or `:timeout`.
  """
  @spec acquire(non_neg_integer, integer | :infinity) :: {:ok, reference} | :timeout
  def acquire(size, deadline) do
    id = make_ref()
    request(id, size)

    receive do
      {:ampule_budget, ^id} -> {:ok, id}
      {:ampule_budget_refused, ^id} -> :timeout
    after
      remaining(deadline) ->
        # Withdrawn, or given back if it was granted meanwhile.
        release(id)
        :timeout
    end
  end

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)

  @doc "Gives back what `id` holds, or withdraws its request."
  @spec release(term) :: :ok
  def release(id), do: GenServer.cast(__MODULE__, {:release, self(), id})

  @doc "`%{total: bytes, used: bytes, waiting: count}`."
  @spec info() :: %{total: pos_integer, used: non_neg_integer, waiting: non_neg_integer}
  def info, do: GenServer.call(__MODULE__, :info)

  @impl GenServer
  def init(opts) do
    total =
      Keyword.get_lazy(opts, :total, fn ->
        Application.get_env(:ampule, :result_budget, @default)
      end)

    unless is_integer(total) and total > 0 do
      raise ArgumentError,
            "config :ampule, result_budget: expected a positive integer (bytes), got: #{inspect(total)}"
    end

    # held: {pid, id} => size; queue of {pid, id, size}; monitors: pid => {ref, count}.
    {:ok, %{total: total, used: 0, held: %{}, queue: :queue.new(), monitors: %{}}}
  end

  @impl GenServer
  def handle_cast({:request, pid, id, size}, %{total: total} = state) when size > total do
    send(pid, {:ampule_budget_refused, id})
    {:noreply, state}
  end

  def handle_cast({:request, pid, id, size}, state) do
    state = watch(state, pid)
    {:noreply, grant(%{state | queue: :queue.in({pid, id, size}, state.queue)})}
  end

  def handle_cast({:release, pid, id}, state) do
    state =
      case Map.pop(state.held, {pid, id}) do
        {nil, _} ->
          queue = :queue.filter(fn {p, i, _} -> not (p == pid and i == id) end, state.queue)

          if :queue.len(queue) < :queue.len(state.queue),
            do: unwatch(%{state | queue: queue}, pid),
            else: state

        {size, held} ->
          unwatch(%{state | held: held, used: state.used - size}, pid)
      end

    {:noreply, grant(state)}
  end

  @impl GenServer
  def handle_call(:info, _from, state),
    do: {:reply, %{total: state.total, used: state.used, waiting: :queue.len(state.queue)}, state}

  @impl GenServer
  def handle_info({:DOWN, _ref, :process, pid, _reason}, state) do
    {mine, held} = Enum.split_with(state.held, fn {{p, _id}, _size} -> p == pid end)
    freed = mine |> Enum.map(fn {_key, size} -> size end) |> Enum.sum()
    held = Map.new(held)
    queue = :queue.filter(fn {p, _, _} -> p != pid end, state.queue)
    state = %{state | held: held, used: state.used - freed, queue: queue}
    {:noreply, grant(%{state | monitors: Map.delete(state.monitors, pid)})}
  end

  # Grants from the head of the queue while the head fits.
  defp grant(state) do
    case :queue.peek(state.queue) do
      {:value, {pid, id, size}} when state.used + size <= state.total ->
        send(pid, {:ampule_budget, id})

        grant(%{
          state
          | queue: :queue.drop(state.queue),
            used: state.used + size,
            held: Map.put(state.held, {pid, id}, size)
        })

      _ ->
        state
    end
  end

  defp watch(state, pid) do
    monitors =
      Map.update(state.monitors, pid, {Process.monitor(pid), 1}, fn {ref, n} -> {ref, n + 1} end)

    %{state | monitors: monitors}
  end

  defp unwatch(state, pid) do
    case state.monitors do
      %{^pid => {ref, 1}} ->
        Process.demonitor(ref, [:flush])
        %{state | monitors: Map.delete(state.monitors, pid)}

      %{^pid => {ref, n}} ->
        %{state | monitors: Map.put(state.monitors, pid, {ref, n - 1})}

      _ ->
        state
    end
  end
end
