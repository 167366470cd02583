defmodule Ampule.Eval.Session do
  @moduledoc false
  # Where a session's state lives: in its sandbox, in a public ETS table of that node,
  # `{{key, language}, state}`, so that an evaluation in a sandbox the caller holds finds
  # what the previous ones left. The state is, for Elixir, the binding and the
  # environment (aliases, imports, requires, as iex keeps them); for Erlang, the binding.
  # Modules need no keeping: a module defined in a node stays loaded in it.
  #
  # The table's owner is a process of its own, started by the first evaluation of a
  # session and living as long as the node, outside any call (its group leader is the
  # node's, not the call's). Nothing of a session ever reaches the host, and a session
  # ends with its sandbox. The sandbox's own code can read or change the table, as it can
  # anything else in its node: the session is the sandbox's, not a secret from it.

  @table :ampule_eval_sessions

  @doc "The state a request's evaluation starts from: its session's, or a fresh one."
  def get(%{session: nil} = request, language), do: fresh(request, language)

  def get(%{session: key} = request, language) do
    table()

    case :ets.lookup(@table, {key, language}) do
      [{_key, state}] -> state
      [] -> fresh(request, language)
    end
  end

  @doc "Keeps `state` for the request's session (nothing without one)."
  def put(%{session: nil}, _language, _state), do: :ok

  def put(%{session: key}, language, state) do
    true = :ets.insert(@table, {{key, language}, state})
    :ok
  end

  defp fresh(_request, :erlang), do: :erl_eval.new_bindings()
  defp fresh(%{file: file}, :elixir), do: {[], Code.env_for_eval(file: file)}

  # The table, made on first use. `:ets.new/2` of a named table is atomic: of two
  # evaluations racing here, one owner makes it and stays, the other's gives up.
  defp table do
    if :ets.whereis(@table) == :undefined do
      caller = self()
      ref = make_ref()
      # The node's, not the call's: the owner outlives the call and never prints.
      leader = Process.whereis(:user) || Process.group_leader()

      spawn(fn ->
        Process.group_leader(leader, self())

        try do
          :ets.new(@table, [:named_table, :public, :set])
        rescue
          ArgumentError -> send(caller, ref)
        else
          _table ->
            send(caller, ref)
            Process.sleep(:infinity)
        end
      end)

      receive do
        ^ref -> :ok
      end
    end

    @table
  end
end
