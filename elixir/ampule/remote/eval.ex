defmodule Ampule.Remote.Eval do
  @moduledoc false
  # Runs what `Ampule.run/2` sends: quoted Elixir code and the values of the variables it
  # uses, evaluated in the container as iex would. The `:elixir` application is started
  # on the first use (what `defmodule` and the compiler need).

  @doc "Evaluates `quoted` with `binding`; returns its value."
  def eval(quoted, binding) do
    {:ok, _} = Application.ensure_all_started(:elixir)
    {value, _binding} = Code.eval_quoted(quoted, binding)
    value
  end
end
