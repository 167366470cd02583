defmodule Bench.Work.Probe do
  @moduledoc false
  # First calls into a pristine container that need a module of the caller's project
  # (bench/work.exs compiles this file to disk, onto the code path containers mount).

  @doc "`Code.eval_string/1` as a user would call it in a sandbox: the lean boot starts no `:elixir`."
  def eval(source) do
    {:ok, _} = Application.ensure_all_started(:elixir)
    {value, _binding} = Code.eval_string(source)
    value
  end

  @doc "A function of the caller's own project, that touches no other module: its cost is loading this one."
  def own(x), do: :erlang.phash2({x, :own})
end
