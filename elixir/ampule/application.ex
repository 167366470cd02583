defmodule Ampule.Application do
  @moduledoc false
  # The supervision tree: one Ampule.Port, which owns the port program and the containers'
  # ownership. If the port program dies, Ampule.Port stops and is started again with a new
  # port program (which removes what the dead one left behind before its hello).

  use Application

  @impl Application
  def start(_type, _args) do
    children = [Ampule.Port]
    Supervisor.start_link(children, strategy: :one_for_one, name: Ampule.Supervisor)
  end
end
