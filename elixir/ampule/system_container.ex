defmodule Ampule.SystemContainer do
  @moduledoc """
  A system container: a whole distribution booted from an LXC template, with its own init
  and a login on its console. Made by `Ampule.create/1`.

      container = Ampule.create()
      "ubuntu\\n" |> Ampule.console(container)
      "ubuntu\\n" |> Ampule.console(container)
      "ls -al\\n" |> Ampule.console(container)
      flush()
      #=> {:ampule_console, %Ampule.SystemContainer{...}, "ubuntu\\r\\nPassword: "} ...

  Everything the console prints arrives at the owner as
  `{:ampule_console, container, binary}`, in order and byte for byte, under the owner's
  `:active` mode, as a socket's data does: 100 messages by default, then
  `{:ampule_console_passive, container}` and nothing more until
  `Ampule.console_active(container, n)`. Meanwhile the output waits, in the end in the
  container itself, so a console flood cannot fill the BEAM's memory; see "Console flow
  control" in `Ampule`.

  ## Fields

    * `:name` - the container's name
    * `:template` - the LXC template it was made from
    * `:init_pid` - the host's PID of its init while it runs
    * `:owner` - the process that gets its console output, and whose exit destroys it
  """

  @enforce_keys [:name]
  defstruct [:name, :template, :init_pid, :owner]

  @type t :: %__MODULE__{
          name: String.t(),
          template: String.t() | nil,
          init_pid: non_neg_integer | nil,
          owner: pid | nil
        }
end
