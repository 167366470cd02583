defmodule Ampule.Container do
  @moduledoc """
  A running container: a Linux container with an Erlang node in it.

      container = Ampule.spawn()
      container.nodename
      #=> :"a-k3x9-1@10.213.57.2"
      Node.spawn(container.nodename, fn -> send(pid, :os.cmd(~c"ls -al")) end)

  `nodename` works wherever a node name does: `Node.spawn/2`, `:rpc`, `:erpc`,
  `GenServer.call({name, nodename}, ...)`. The node's cookie is the container's own, random,
  already set for that node alone with `:erlang.set_cookie/2`; it is kept in the struct but
  never printed by `inspect/2`.

  ## Fields

    * `:name` - the container's name (a string), unique among the port's containers
    * `:nodename` - the Erlang node in the container, `name@address`
    * `:address` - the container's IPv4 address on Ampule's bridge (a string)
    * `:cookie` - the node's distribution cookie (an atom; not shown by `inspect/2`)
    * `:init_pid` - the host's PID of the container's init process
    * `:boot_ms` - milliseconds from the spawn request to a completed handshake
    * `:owner` - the process whose exit destroys the container, or `nil`
  """

  @enforce_keys [:name, :nodename, :address, :cookie]
  @derive {Inspect, except: [:cookie]}
  defstruct [:name, :nodename, :address, :cookie, :init_pid, :boot_ms, :owner]

  @type t :: %__MODULE__{
          name: String.t(),
          nodename: node,
          address: String.t(),
          cookie: atom,
          init_pid: non_neg_integer | nil,
          boot_ms: non_neg_integer | nil,
          owner: pid | nil
        }

  @doc false
  # Builds the struct from the port's spawn reply, where the node name and the cookie are
  # binaries (never atoms on the wire); distribution needs them as atoms.
  @spec from_reply(map, pid | nil) :: t
  def from_reply(
        %{name: name, nodename: nodename, address: address, cookie: cookie} = info,
        owner
      ) do
    %__MODULE__{
      name: name,
      nodename: String.to_atom(nodename),
      address: address,
      cookie: String.to_atom(cookie),
      init_pid: Map.get(info, :init_pid),
      boot_ms: Map.get(info, :boot_ms),
      owner: owner
    }
  end
end
