defmodule Ampule.Port.Owned do
  @moduledoc false
  # A container Ampule.Port made and keeps, under its name in the `owned` map.
  #
  # - `kind`: `:container` (a node or a sandbox, `container` an Ampule.Container) or
  #   `:system` (`container` an Ampule.SystemContainer, `console` its Ampule.Port.Console).
  # - `ref`: the monitor of the owner (nil without one): its exit destroys the container.
  # - `channel_ref`: the monitor of a sandbox's channel: its exit destroys the sandbox.

  defstruct [:kind, :container, :ref, :channel_ref, :console]

  @type t :: %__MODULE__{
          kind: :container | :system,
          container: Ampule.Container.t() | Ampule.SystemContainer.t(),
          ref: reference | nil,
          channel_ref: reference | nil,
          console: Ampule.Port.Console.t() | nil
        }
end
