defmodule Ampule.Application do
  @moduledoc false
  # The supervision tree: one Ampule.Port, which owns the port program and the containers'
  # ownership. If the port program dies, Ampule.Port stops and is started again with a new
  # port program (which removes what the dead one left behind before its hello). Beside it
  # a Task.Supervisor for the work that must not block its caller: pools' boots and
  # destroys, Ampule.map's calls.

  use Application

  @impl Application
  def start(_type, _args) do
    children = [Ampule.Port, {Task.Supervisor, name: Ampule.TaskSupervisor}]
    Supervisor.start_link(children, strategy: :one_for_one, name: Ampule.Supervisor)
  end
end
