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

  A sandbox (`Ampule.spawn(sandbox: true)`) is a container too, but its node is not
  distributed: `nodename`, `address` and `cookie` are `nil`, `sandbox` is `true`, and it is
  reached only through `Ampule.call/3` and its siblings (see "Sandboxes" in `Ampule`).

  ## Fields

    * `:name` - the container's name (a string), unique among the port's containers
    * `:nodename` - the Erlang node in the container, `name@address`; `nil` for a sandbox
    * `:address` - the container's IPv4 address on Ampule's bridge (a string); `nil` for a
      sandbox, which has no network but loopback
    * `:cookie` - the node's distribution cookie (an atom; not shown by `inspect/2`); `nil`
      for a sandbox
    * `:init_pid` - the host's PID of the container's init process
    * `:boot_ms` - milliseconds from the spawn request to a completed handshake (for a
      sandbox: to its init running; the agent's hello comes after)
    * `:owner` - the process whose exit destroys the container, or `nil`
    * `:sandbox` - `true` for a sandbox
    * `:max_result` - a sandbox's result limit in bytes (`nil` otherwise)
    * `:channel` - the local process that carries a sandbox's calls (`nil` otherwise)
  """

  @enforce_keys [:name, :nodename, :address, :cookie]
  @derive {Inspect, except: [:cookie, :channel]}
  defstruct [
    :name,
    :nodename,
    :address,
    :cookie,
    :init_pid,
    :boot_ms,
    :owner,
    :max_result,
    :channel,
    sandbox: false
  ]

  @type t :: %__MODULE__{
          name: String.t(),
          nodename: node | nil,
          address: String.t() | nil,
          cookie: atom | nil,
          init_pid: non_neg_integer | nil,
          boot_ms: non_neg_integer | nil,
          owner: pid | nil,
          sandbox: boolean,
          max_result: pos_integer | nil,
          channel: pid | nil
        }

  @doc false
  # Builds the struct from the port's spawn reply, where the node name and the cookie are
  # binaries (never atoms on the wire); distribution needs them as atoms. A sandbox's reply
  # has neither; it comes with the channel that reaches it.
  @spec from_reply(map, pid | nil, %{channel: pid, max_result: pos_integer} | nil) :: t
  def from_reply(info, owner, sandbox \\ nil)

  def from_reply(%{name: name} = info, owner, %{channel: channel, max_result: max}) do
    %__MODULE__{
      name: name,
      nodename: nil,
      address: nil,
      cookie: nil,
      init_pid: Map.get(info, :init_pid),
      boot_ms: Map.get(info, :boot_ms),
      owner: owner,
      sandbox: true,
      channel: channel,
      max_result: max
    }
  end

  def from_reply(
        %{name: name, nodename: nodename, address: address, cookie: cookie} = info,
        owner,
        nil
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
