defmodule Ampule.Port.Pending do
  @moduledoc false
  # A request sent to the port program, waiting for its reply under its tag in
  # Ampule.Port's `pending` map.
  #
  # - `kind`: `:request` (any request, the reply passed on), `:spawn`, `:create`,
  #   `:destroy`, `:broken` (a sandbox that broke the agent protocol, destroyed), or
  #   `:internal` (Ampule.Port's own: a destroy after an owner exit, a console ack).
  # - `from`: the caller waiting for the reply, nil for an internal request. If the port
  #   exits, every `from` gets `{:error, :port_exited}`.
  # - `request`: what was sent, for the log if an internal request fails.
  # - `owner`, `ref` (its monitor), `owner_exited` (a spawn whose owner exited while it
  #   booted: the container is destroyed on arrival), `sandbox`, `template`, `active`:
  #   what a spawn or a create needs to make its Ampule.Port.Owned.
  # - `container`: the container a destroy removes; a sandbox's channel is told its end
  #   when the reply (or the port's exit) says it is gone.

  defstruct [
    :kind,
    :from,
    :request,
    :owner,
    :ref,
    :sandbox,
    :template,
    :active,
    :container,
    owner_exited: false
  ]

  @type kind :: :request | :spawn | :create | :destroy | :broken | :internal
  @type t :: %__MODULE__{kind: kind, from: GenServer.from() | nil}
end
