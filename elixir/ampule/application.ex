defmodule Ampule.Application do
  @moduledoc false
  # The supervision tree: one Ampule.Port, which owns the port program and the containers'
  # ownership. If the port program dies, Ampule.Port stops and is started again with a new
  # port program (which removes what the dead one left behind before its hello). Beside it
  # a Task.Supervisor for the work that must not block its caller: pools' boots and
  # destroys, Ampule.map's calls. The budget of sandboxes' result bytes in flight
  # (Ampule.Sandbox.Budget). Sandboxes' channels (Ampule.Sandbox.Channel) live under a
  # DynamicSupervisor, started after the port and so stopped before it: their agents see
  # the channel close first. Last, Ampule's :pg scope and Ampule.Cluster, which offers this
  # host's containers to the cluster's other nodes once the port has said hello.

  use Application

  @impl Application
  def start(_type, _args) do
    # Errno and common error atoms, which sandboxes' results name (Ampule.Sandbox.Atoms).
    _ = Ampule.Sandbox.Atoms.list()
    # The plain-data structs a result may hold, loaded so that their fields' atoms exist
    # (a URI from a sandbox was refused as :atoms by a node that had not used URI yet).
    Enum.each(Ampule.Sandbox.Inert.plain_structs(), &Code.ensure_loaded!/1)

    children = [
      Ampule.Port,
      {Task.Supervisor, name: Ampule.TaskSupervisor},
      Ampule.Sandbox.Budget,
      {DynamicSupervisor, name: Ampule.SandboxSupervisor, strategy: :one_for_one},
      %{id: :pg, start: {:pg, :start_link, [Ampule.Cluster.scope()]}},
      Ampule.Cluster
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: Ampule.Supervisor)
  end
end
