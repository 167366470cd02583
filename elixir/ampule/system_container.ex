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
  container itself, so a console flood cannot fill the BEAM's memory; see "Console flow control".

  ## Console flow control

  A system container (`create/1`) sends its console output to its owner as messages, as a
  socket sends its data to its controlling process, and under the same control: the
  `:active` mode of `:inet.setopts/2`.

      container = Ampule.create(active: 10)
      # 10 × {:ampule_console, container, bytes}, then {:ampule_console_passive, container}
      Ampule.console_active(container, 10)
      # 10 more

    * a count `n` (the default, 100) - `n` more messages, then
      `{:ampule_console_passive, container}`, then nothing until `console_active/2`. An
      integer given to `console_active/2` is added to the count, as for sockets; a count
      that reaches 0 that way sends the passive message too.
    * `:once` - one message, then nothing (and no passive message, as for sockets).
    * `false` - nothing until re-armed.
    * `true` - everything, as it comes. The owner's mailbox is then unbounded: a container
      that prints faster than its owner reads (`yes` on the console) grows it without limit,
      and the BEAM's memory with it. Only for an owner that keeps up.

  While the owner is passive, output waits, first in Ampule's port process, then in the
  container. Ampule acknowledges a chunk to the port program only once it has sent it to
  the owner, and the port reads a console at most 256 KiB ahead of those acknowledgements;
  after that the container's pty fills and whatever writes to its console blocks. When the
  owner re-arms, what waited comes first, in order: no byte is lost or reordered (message
  boundaries mean nothing, as with TCP: output that waited comes joined into messages of
  up to 16 KiB). So the
  BEAM holds at most `n` messages of at most 16 KiB in the owner's mailbox, plus the
  port's window (256 KiB and one read) per container, however fast and for however long a
  container prints. `docs/security.md` ("Console flood") has the measured figures and the
  test.

  The default, 100 (as cowboy's `active_n`), keeps a console usable from iex: `flush()`
  shows the output, and `{:ampule_console_passive, container}` among it says to re-arm. A
  container without an owner (`owner: false`) has its output discarded, so it never
  stalls.

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
