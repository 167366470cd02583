defmodule Ampule.Error do
  @moduledoc """
  Raised by the functions of `Ampule` that return a bare result (`Ampule.call/1,2,3`,
  `Ampule.spawn/0,1`) when Ampule itself fails: the container could not be made, the call
  timed out, the node went away.

  `reason` is one of the reasons listed in `Ampule`'s "Error reasons"; `message/1` explains
  it. An exception raised by the code running in the container is re-raised as itself,
  not wrapped in this one.
  """

  defexception [:reason, :container]

  @type t :: %__MODULE__{reason: Ampule.reason(), container: String.t() | nil}

  @impl true
  def message(%__MODULE__{reason: reason, container: nil}), do: Ampule.format_error(reason)

  def message(%__MODULE__{reason: reason, container: name}),
    do: "container #{name}: " <> Ampule.format_error(reason)
end
