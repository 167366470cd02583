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
  reached only through `Ampule.call/3` and its siblings (see `Ampule.Sandbox`).

  ## What a container is

  A transient LXC container made by Ampule's port program, `ampule_port`: a fresh root
  directory with the host's `/usr` mounted read-only, a private `/tmp`, a user namespace
  (its uid 1000 is an unprivileged uid on the host), memory, process and CPU limits (one
  CPU by default), 65,536 open files whatever limit your BEAM was started with (or the
  port's hard limit, if root may not raise it), a seccomp filter that refuses the system calls containers escape
  through (new user namespaces, keyrings, io_uring, bpf, ...), and a veth on Ampule's own
  bridge (`ampule0`, `10.213.57.0/24`, with no route to anywhere else). Its init is
  `erl -name NAME@ADDRESS`. It boots in about 140 ms (a sandbox in about 105 ms). `docs/security.md` lists every
  guarantee, its default and the test that proves it.

  ## Distribution

  The containers' nodes are reached by IP address, so the local node needs long names. If
  it is not alive, Ampule starts distribution itself the first time a container is made,
  as `ampule_host_<random>@10.213.57.1` (the host's address on Ampule's bridge), and logs
  that it did. To choose the name, start the node yourself:

      iex --name ampule@10.213.57.1 -S mix

  A node started with short names (`--sname`) cannot reach the containers: Ampule refuses
  it with an error that says so.

  Each container has its own random cookie, set for that node alone with
  `:erlang.set_cookie/2`: the host's cookie never enters a container, and one container's
  cookie does not open another.

  ## Code in containers

  A container sees the host's `/usr`, so Erlang/OTP is there. The rest of the caller's code
  path (every directory of `:code.get_path/0` outside `:code.root_dir/0`: Elixir's
  libraries, the project's `_build/ENV/lib/*/ebin`, its consolidated protocols) is
  bind-mounted read-only at the same place and added with `-pz`, after OTP's own
  directories: a node loads some hundred OTP modules as it boots, and each used to be
  looked for in every one of these first (a sandbox's spawn took 126 ms with them before
  OTP's, 108 ms after, medians on the machine of docs/benchmarks.md). Once booted, and
  before any of your code runs, the node puts them before OTP's (`ampule_code_path`), as
  a local `elixir` or `mix` has them: real work loads Elixir's modules by the hundred,
  and each was looked for in OTP's 37 directories first (docs/benchmarks.md, "Real
  work"). So, as locally, a module of yours named like one of OTP's that the boot did not
  load replaces it in a container. Elixir's standard
  library works inside, a module of your project can be called there, and an anonymous
  function sent with `Node.spawn/2` runs there, whether it was compiled in a module or made
  by `Code.eval_string/1` or iex. Code compiled only into this VM's memory (an `.exs`
  script's top level, an ExUnit test module) is not on disk to be loaded: `run/1,2`
  sends such code itself (quoted, with the variables it uses) and evaluates it there, as
  iex would. `host_code_paths: false` turns the mounts off, and `code_paths:` adds
  directories.

  ## Closures

  `call/1,2,3`, `cast/3`, `async_call/2` and `multicall/3` take a function of no
  arguments wherever they take `{module, function, args}`, in distribution containers and
  sandboxes alike:

      Ampule.call(fn -> :os.cmd(~c"id -u") end, container)
      #=> ~c"1000\n"

  The function is sent with what it captured, and runs in the container: a closure made in
  iex (an `:erl_eval` function, with its bindings) runs as is; one compiled in a module of
  your project runs because that module is on the container's code path. One whose module
  exists only in this VM (an `.exs` script, a test file) cannot be loaded there: such a
  function is refused before anything is sent, with an `ArgumentError` that names its
  module and what works instead (`run/1,2` above all), also when it hides in what another
  closure captured.

  ## Orphan containers

  A container belongs to the process that made it (or the one given as `:owner`). When
  that process exits, its containers are destroyed. Pass `owner: false` for a container
  that lives until `destroy/1` or the end of the port.

  If the container's node stops on its own (it halts, or the memory limit kills it), the
  port destroys the container and its owner receives

      {:ampule_exit, %Ampule.Container{}, status}

  where `status` is the node's exit status (an integer: `System.halt(3)` gives `3`), `:oom`
  (the memory limit), `:killed` (a signal ended it), `:unknown`, or `:port_exited` if the
  port program died. A sandbox may also end with `{:protocol, detail}` (it broke the agent
  protocol and Ampule destroyed it; see "Error reasons" in `Ampule.Error`), or `:killed` if
  Ampule's process
  that holds its channel died. The port takes the status from the kernel (its process events), not
  from anything the container wrote, so a container cannot forge it beyond exiting with a
  status of its choice; it is `:unknown` when the kernel's report did not arrive (a host
  whose kernel lacks process events, or a burst of exits that overflowed them).

  The port program destroys every container it made when the BEAM closes it or dies, even
  by `kill -9`. A port that dies itself is restarted; the new one removes whatever the dead
  one left behind (containers, veths, directories) before it takes requests.

  ## Timeouts

  Every call takes a timeout (default #{5_000} ms), like `GenServer.call/3`, and returns
  within it and a few milliseconds, even when the container is unreachable (destroyed,
  its node halted). A call that times out does not leave its work running: the process in
  the container is killed (`:kill`) as the call returns (confirmed within those
  milliseconds when the container answers), and an anonymous container is destroyed. A
  sandbox's agent confirms each kill; one that does not within 5 s is destroyed. A call
  whose caller exits is killed too. A container's boot has its own `:boot_timeout`.

  ## Fields

    * `:name` - the container's name (a string), unique among the port's containers
    * `:nodename` - the Erlang node in the container, `name@address`; `nil` for a sandbox
    * `:address` - the container's IPv4 address on Ampule's bridge (a string); `nil` for a
      sandbox, which has no network but loopback
    * `:cookie` - the node's distribution cookie (an atom; not shown by `inspect/2`); `nil`
      for a sandbox
    * `:init_pid` - the host's PID of the container's init process
    * `:boot_ms` - milliseconds from the spawn request to the node's announcement that it
      is up (for a sandbox: to its init running; the agent's hello comes after)
    * `:owner` - the process whose exit destroys the container, or `nil`
    * `:sandbox` - `true` for a sandbox
    * `:max_result` - a sandbox's result limit in bytes (`nil` otherwise)
    * `:channel` - the process that carries a sandbox's calls (`nil` otherwise), on the
      container's host
    * `:host` - the node whose Ampule made the container and owns it (`node()` when it was
      made here; see `Ampule.Cluster`)
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
    :host,
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
          channel: pid | nil,
          host: node | nil
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
      max_result: max,
      host: node()
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
      owner: owner,
      host: node()
    }
  end

  @doc false
  # Whether the container was made by this node's Ampule. A container made before this
  # node became distributed names `:nonode@nohost`; one from an older struct, none.
  @spec local?(t) :: boolean
  def local?(%__MODULE__{host: host}), do: host in [nil, node(), :nonode@nohost]
end
