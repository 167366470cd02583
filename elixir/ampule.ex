defmodule Ampule do
  @moduledoc """
  Linux containers as closures in a pipeline.

  Every container runs a real Erlang node. You pass data in, it runs code, you get the
  result back, over ordinary Erlang distribution (or, for code you do not trust, through
  an agent that the host trusts with nothing: see "Sandboxes"):

      {:erlang, :node, []}
      |> Ampule.call()
      |> Ampule.mfa(:erlang, :atom_to_list)
      |> Ampule.call()
      #=> ~c"a-k3x9-2@10.213.57.3"

  The first `Ampule.call/1` runs `:erlang.node()` in a fresh container and returns that
  container's node name; `Ampule.mfa/3` turns it into `{:erlang, :atom_to_list, [nodename]}`,
  which the second `Ampule.call/1` runs in another fresh container. Each anonymous
  container is destroyed as soon as its call returns, raises, exits or times out.

  A container you keep is made with `Ampule.spawn/1`:

      container = Ampule.spawn()

      {:erlang, :node, []}
      |> Ampule.call(container)
      |> Ampule.mfa(:erlang, :atom_to_list)
      |> Ampule.call(container)
      |> List.to_atom()
      #=> :"a-k3x9-3@10.213.57.4"

      pid = self()
      Node.spawn(container.nodename, fn -> ls = :os.cmd(~c"ls -al"); send(pid, ls) end)

      Ampule.destroy(container)

  `container.nodename` is a node like any other: `Node.spawn/2`, `:rpc`, `:erpc` and
  `GenServer.call({name, container.nodename}, request)` all work. The containers' nodes are
  hidden (`-hidden`, see `start/1`): they do not join the local node's cluster or
  `:global`, so `Node.list(:hidden)` lists them, not `Node.list/0`.

  Calls take a function of no arguments as well as an MFA (see "Closures"):

      Ampule.call(fn -> Enum.sum(1..10) end, container)
      #=> 55

  ## Sandboxes

  A container's node is a full Erlang distribution peer of yours: code in it can
  `:erpc.call(your_node, :os, :cmd, [...])` as your BEAM's user (see "Distribution" and
  `docs/security.md`). That is fine for code you wrote; for code you did not, make a
  sandbox:

      sandbox = Ampule.spawn(sandbox: true)
      Ampule.call({String, :upcase, ["untrusted"]}, sandbox)
      #=> "UNTRUSTED"
      Ampule.call(fn -> Enum.sum(1..10) end, sandbox)
      #=> 55

      Ampule.call({:erlang, :node, []}, sandbox: true)   # one call, one fresh sandbox
      #=> :nonode@nohost

  `config :ampule, sandbox: true` makes sandboxes the default of `spawn/1`, `start/1` and
  the anonymous `call/1,2`. A sandbox is the same container (limits, seccomp filter, user
  namespace, the host's files read-only), with these differences:

    * Its node is not distributed (`:erlang.node()` is `:nonode@nohost`) and it has no
      network: no veth, no address, a loopback interface only. `container.nodename`,
      `address` and `cookie` are `nil`; the host need not be distributed either.
    * The host reaches it through a small agent (`ampule_agent`, 9 KB of Erlang, on the
      sandbox's code path whatever `:host_code_paths` says) over a Unix socket: one frame
      per call, no process of Ampule's in between. `call/1,2,3`, `cast/3`, `async_call/2`,
      `yield/2`, `multicall/3`, timeouts, owners and `{:ampule_exit, ...}` work as for any
      container. What needs a node name does not: `Node.spawn(nil, ...)`, `:erpc.call(nil,
      ...)` and `GenServer.call({name, nil}, ...)` fail (`:badarg`, or an exit), as with any
      node that does not exist.
    * The host trusts nothing it sends. A result is decoded without creating atoms, and
      refused (`{:result_refused, kind}`) if it holds an atom this node does not have
      (Ampule makes Linux's errno atoms and OTP's usual error reasons exist at start, so
      `{:error, :econnrefused}` comes back), a fun, a pid, a port or a reference, an
      integer of more than 65,536 bits (`config :ampule, max_integer_bits: n`), a
      compiled pattern (`%Regex{}`, `{:re_pattern, ...}`) or a struct that is not plain
      data (below); one that takes more than `:max_result` bytes
      (64 MiB by default, encoded or decoded) is refused as `{:result_too_large, max}`
      without this node ever holding it. Decoding counts inside the call's timeout. A sandbox that breaks the protocol (garbage, a
      frame over the limit or cut short, a result for a call never made, silence after a
      kill) is destroyed, and its calls fail with `{:protocol, detail}`. See "Error
      reasons".
    * An exception raised in the sandbox is raised here as `Ampule.RemoteError`: the
      exception's module name and message as text computed in the sandbox, and its stack
      trace reduced to `{module, function, arity, [file: ..., line: ...]}` frames of
      names this node has (its `error_info` would name a function of this node to
      call). Never as a struct of one of your modules with fields the sandbox chose.

  A result's structs are data only: `Date`, `Time`, `NaiveDateTime` and `DateTime` (ISO
  calendar), `URI`, `Version` and `MapSet`, each checked field by field, and the structs
  you allow (`config :ampule, result_structs: [MyApp.Point, {MyApp.Money,
  &MyApp.Money.valid?/1}]`); any other (`File.Stream`, `IO.Stream`, `Range`, `Regex`,
  exceptions) is refused as `{:result_refused, {:struct, module}}`, since its protocols
  would act with your node's rights. All sandboxes share one budget of result bytes in
  flight (`config :ampule, result_budget: bytes`, 512 MiB): a large result waits in its
  sandbox until it fits. docs/security.md, "What a sandbox's result may hold", has the
  reasons and the tests.

  What a result may hold: numbers, binaries, lists, tuples, maps, and atoms this node
  already has. An atom that only the sandbox knows (made there with `String.to_atom/1`, or
  one that appears only in a module this node has not loaded) is refused: return strings
  for such names. Funs cannot come back; pids in a closure you send mean nothing there
  (they name the sandbox's processes, never yours).

  The sandbox's standard output and error (`IO.puts/1`, `:io.format/2`, crash reports)
  go to its node's output, `~/boot.log` inside the sandbox, which counts against its
  memory limit and goes with it; a boot that fails carries its last lines. They never
  reach your console. (A distribution container's calls print to the caller's group
  leader, as remote processes do.)

  Which to choose: a distribution container when you trust the code and want a real node
  (`Node.spawn/2`, registered names, links and monitors across nodes); a sandbox when you
  do not trust the code, or need no more than calls. A sandbox boots no slower (no EPMD,
  no handshake) and a small call is no slower either (`docs/benchmarks.md`).
  `docs/security.md` sets the two threat models side by side.

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

  ## Setting up the host

  Containers need Linux with liblxc, a root range in `/etc/subuid` and `/etc/subgid`, and
  a port program running as root. `mix ampule.check` lists what the host lacks and how to
  fix each. `mix compile` builds the port program (Rust, `cargo`) into `priv/`.

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
  OTP's, 108 ms after, medians on the machine of docs/benchmarks.md). So a module of
  yours named like one of OTP's does not replace it in a container. Elixir's standard
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
  protocol and Ampule destroyed it; see "Error reasons"), or `:killed` if Ampule's process
  that holds its channel died. The port takes the status from the kernel (its process events), not
  from anything the container wrote, so a container cannot forge it beyond exiting with a
  status of its choice; it is `:unknown` when the kernel's report did not arrive (a host
  whose kernel lacks process events, or a burst of exits that overflowed them).

  The port program destroys every container it made when the BEAM closes it or dies, even
  by `kill -9`. A port that dies itself is restarted; the new one removes whatever the dead
  one left behind (containers, veths, directories) before it takes requests.

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

  ## Cluster

  Users who outgrow one machine have more, already joined as an Erlang cluster: each runs
  its own Ampule (its own port program, bridge, firewall tables and state directory) and
  offers it to the others (`config :ampule, offer: true`). Such a host joins Ampule's
  `:pg` group and publishes its load, so any node of the cluster sees which hosts offer
  containers and how loaded each is (`Ampule.Cluster.hosts/0`), and places work on them:

      container = Ampule.spawn(sandbox: true, on: :"ampule@10.0.0.2")
      Ampule.call({String, :upcase, ["there"]}, container)
      #=> "THERE"

      Ampule.call({:erlang, :node, []}, on: :"ampule@10.0.0.2")   # a fresh container there

      {:ok, host} = Ampule.Cluster.place(Ampule.Cluster.hosts())   # the most room

      children = [{Ampule.Pool, name: MyApp.Boxes, size: 12, sandbox: true, hosts: :all}]

    * `on: node` (`spawn/1`, `start/1`, the anonymous `call/2`) makes the container on that
      host's Ampule, with the options checked here first (code paths are the host's own: a
      cluster runs one release). The container belongs to that host's port, with the
      caller (or `:owner`) as its owner, monitored across nodes: if the owner exits, or its
      node goes away, the host destroys it. `container.host` names the host; `destroy/1`
      and `info/1` go there. `Ampule.Pool` takes `hosts: [node] | :all` and boots each
      container on the host with the most room (see "Hosts" in `Ampule.Pool`).
    * A sandbox on another host is reached at its channel, a process of the host's that
      holds its agent's socket: a call is one hop more than on this node, and needs no
      route to the host's bridge. `docs/scaling.md` has the figures.
    * A distribution container on another host cannot be reached from here: its node's
      address is on the host's bridge, which the host's firewall keeps apart from
      everything but the host (no forwarding to or from it). `call/1,2,3`, `async_call/2`,
      `yield/2`, `multicall/3` and `cast/3` go through a relay process on the host (two
      hops more than on this node), with the same timeouts and kills. What needs the node
      itself does not work from another node: `Node.spawn(container.nodename, ...)`,
      `:erpc` to it, `GenServer.call({name, container.nodename}, ...)`, links and monitors
      to its processes. They would need a route between the bridges and the host's
      firewall to forward into its bridge, which Ampule does not open (that rule is what
      keeps containers apart from the rest of the network). Run such code from the host,
      which holds the container's cookie: `:erpc.call(container.host, Node, :spawn,
      [container.nodename, fun])`, or use a sandbox.
    * The hosts and the callers are one Erlang cluster, so they trust each other fully:
      any node of it can run code on any other, as that BEAM's user (root on a host whose
      BEAM runs the port directly). Containers are what is not trusted.

  A host that goes away takes its containers with it: its port destroys them when its
  BEAM dies, as on one machine. Everyone elsewhere gets `{:host_down, node}`: a call in
  flight to one of its containers returns it as soon as the connection to the host drops
  (milliseconds for a BEAM that died; up to the distribution tick, `net_ticktime`, 60 s
  by default, for a machine that vanished without closing its connections), a new call
  at once, and an owner of one of its containers gets `{:ampule_exit, container,
  {:host_down, node}}` (from its own node's `Ampule.Cluster`, which keeps track of the
  containers its processes own elsewhere). A host that leaves is no longer placed on.

  Membership follows `:pg`, which sees the nodes this node is connected to as visible
  nodes (on OTP 25 a hidden connection does not carry `:pg` groups): a caller sees the
  hosts it is connected to. `docs/scaling.md` says what this costs with 10 and 100 hosts.

  ## Timeouts

  Every call takes a timeout (default #{5_000} ms), like `GenServer.call/3`, and returns
  within it and a few milliseconds, even when the container is unreachable (destroyed,
  its node halted). A call that times out does not leave its work running: the process in
  the container is killed (`:kill`) as the call returns (confirmed within those
  milliseconds when the container answers), and an anonymous container is destroyed. A
  sandbox's agent confirms each kill; one that does not within 5 s is destroyed. A call
  whose caller exits is killed too. A container's boot has its own `:boot_timeout`.

  ## Running without root

  The port program must run as root (it makes network links, mounts and user namespaces).
  A BEAM that does not run as root starts it through `sudo`:

      # config/config.exs
      config :ampule, sudo: true

  and sudoers must let that user run it without a password and keep its protocol file
  descriptors (3 and 4) open (sudo closes them unless allowed). Ampule's `script/sudoers`
  (as root) writes that rule, `/etc/sudoers.d/ampule-alice`:

      Defaults:alice closefrom_override
      alice ALL=(root) NOPASSWD: /home/alice/app/deps/ampule/priv/ampule_port ""

  Ampule runs `sudo -n -C 5 -- PATH/ampule_port ...`, with `--bridge`, `--subnet`,
  `--state-dir` and `--log-level` when they are configured; the rule pins those arguments
  (`""` is none). `mix ampule.check` prints the command for this user and configuration.
  Whoever may run the port is root-equivalent (see the README).

  ## Configuration

  Application environment of `:ampule`, read when the port starts:

    * `:sudo` - run the port through `sudo` (default `false`)
    * `:port_path` - the port program (default `priv/ampule_port`; the environment variable
      `AMPULE_PORT_PATH` wins over both)
    * `:bridge` - Ampule's bridge (default `"ampule0"`)
    * `:subnet` - its subnet (default `"10.213.57.0/24"`; the host takes the first address)
    * `:state_dir` - the port's directory for containers and leases (default
      `"/var/lib/ampule"`)
    * `:log_level` - the port's log level: `:error`, `:warn`, `:info` (default), `:debug`

  and read at each `spawn/1`, `start/1` and anonymous `call/1,2`:

    * `:sandbox` - `true` makes sandboxes the default (see "Sandboxes"; default `false`)
    * `:lean_boot` - `false` boots stock nodes. By default a container's node boots lean:
      one scheduler (and one dirty CPU scheduler) per CPU of its `:cpus` quota, one dirty
      I/O scheduler, no async threads, schedulers that sleep at once when idle instead of
      spinning on the quota, no cached memory segments, process and port tables of 65,536
      and 8,192, and a boot script (made from the system's, kept in Ampule's `priv/boot`)
      that neither loads `erl_eval`, `erl_lint` and `erl_parse` before they are used nor
      reads `.erlang`. A boot then costs about a quarter less CPU and the node a third less
      memory (docs/benchmarks.md). The container's `:args` come after these flags and
      override them; a `-boot` among them replaces the script.

  and by `Ampule.Cluster` (see "Cluster"):

    * `:offer` - this node is a host: it offers its containers to the cluster (default
      `false`)
    * `:cluster_interval` - milliseconds between a host's load broadcasts (default 1000;
      a change in its number of containers is sent at once besides)
    * `:max_containers` - the most containers placement puts on this host (default
      `:infinity`)

  ## Logs

  The port's log lines arrive in `Logger`, once each, as `ampule_port: NAME: message` with
  the container's name also as the `:container` metadata when they are about one; Logger's
  level applies to them (`config :logger, level: :warning` silences the port's `info`
  lines). The port writes to stderr only before it is ready (and with `--log-stderr`).

  The port program starts on first use, not with the application: a project that has
  Ampule as a dependency and makes no container runs no root program.

  When Ampule starts distribution itself it starts EPMD first if none runs. A VM that
  halts (`System.halt/1`, the end of `mix run`) while the port still cleans up may print
  `erl_child_setup: failed with error 32 on line ...`: the VM's helper for ports could
  not report the port's exit to a VM that was gone (EPIPE). It is harmless (the port
  finishes its cleanup); `System.stop/0` or `Application.stop(:ampule)` before halting
  avoids it.

  ## Error reasons

  Functions that return `{:error, reason}` (and `Ampule.Error`, raised by those that return
  a bare result) use these reasons; `format_error/1` explains each.

  Making a container (`start/1`, `spawn/1`, the anonymous `call/1,2`):

    * `{:boot_timeout, phase, log_tail}` - the container was not ready within
      `:boot_timeout`; `phase` is `:create`, `:start`, `:epmd` or `:handshake`, or for a
      sandbox `:agent` (its node ran, but its agent did not connect and say hello), and
      `log_tail` the node's last output lines (a string). The container was destroyed.
    * `{:boot_failed, status, log_tail}` - the node's `erl` exited with `status` (an
      integer, `:killed`, `:oom` or `:unknown`, as in `{:ampule_exit, ...}`) before it was
      ready; `log_tail` is its last output. The
      container was destroyed.
    * `{:lxc, call}` - liblxc refused `call`; the port's log (in Logger) has the details.
    * `{:rootfs, message}` - the port could not prepare the container's directory.
    * `{:leases, message}` - the port could not read or write its address leases.
    * `:no_address` - the bridge's subnet has no free address.
    * `:name_in_use` - a container with this `:name` exists.
    * `{:bad_option, key}`, `{:bad_option_value, key, value}`, `{:bad_config_key, key}` -
      the port refused an option (Ampule checks them first, so these are rare).
    * `{:connect_failed, nodename, reason}` - the container booted but this node could not
      reach its node. The container was destroyed.
    * `:owner_exited` - the owner exited while the container booted; it was destroyed.
    * `:sandbox_unsupported` - the port program does not make sandboxes (it is older than
      this library: rebuild it with `mix compile --force`).
    * `{:agent_socket, reason}` - a sandbox's agent socket could not be made in the port's
      `agents_dir` (`reason` is a POSIX error atom).
    * `{:protocol, detail}` - also while a sandbox boots: its agent's hello was not one
      (`:bad_hello`), came from another process than the sandbox's node (`:peer`), or the
      agent closed the connection (`:closed`). The sandbox was destroyed.

  The host and the port program:

    * `{:host_not_ready, reason, message}` - the port cannot run containers here (not
      root, no liblxc, no subuid range, no bridge); `message` says how to fix it, and so
      does `mix ampule.check`.
    * `{:port_not_found, path}` - there is no port program at `path`: run `mix compile`,
      or set `AMPULE_PORT_PATH`.
    * `{:port_not_started, path, error}` - the port program could not be executed.
    * `{:port_failed, status}` - the port program exited before it was ready; its stderr
      (the BEAM's) says why.
    * `:port_exited` - the port program died while the request was pending. Its containers
      are gone; a new port is started for the next request.
    * `{:unsupported_protocol, version}` - the port speaks another protocol version than
      this library (rebuild it with `mix compile --force`).
    * `:hello_timeout` - the port program did not start within 60 seconds.
    * `:not_running` - Ampule's port process is not running (the `:ampule` application is
      not started, or it is restarting).
    * `{:short_names, node}` - the local node uses short names; see "Distribution".
    * `{:distribution, reason}` - Ampule could not start distribution.
    * `{:unknown_request, request}`, `{:bad_request, request}`, `{:bad_reply, reply}` -
      this library and the port program disagree on the protocol (a bug; rebuild both).

  Calls (`yield/2`, `multicall/3`; `call/1,2,3` raises or re-raises them):

    * `:timeout` - no result within the timeout; the remote process was killed.
    * `{:exception, exception, stacktrace}` - the function raised (`call` re-raises it).
    * `{:throw, value}` - the function threw `value` (`call` throws it again).
    * `{:exit, reason}` - the function exited, or its process was killed (`call` exits).
    * `:noconnection` - the container's node is gone (destroyed, halted).
    * `:oom` - the fresh container of an anonymous call (`call/1`, `call/2` with options),
      or any sandbox, was killed for exceeding its memory limit. (A distribution container
      of your own reports it to its owner as `{:ampule_exit, container, :oom}`; the call
      itself gets `:noconnection`.)
    * `{:spawn_failed, reason}` - the node refused to start the call's process.

  Calls to a sandbox, besides (see "Sandboxes"):

    * `{:result_refused, kind}` - the result holds what the host refuses from a sandbox:
      `kind` is `:atoms` (an atom this node does not have), `:fun`, `:pid`, `:port`,
      `:reference`, `:integer` (over `max_integer_bits`), `:re_pattern` (a compiled
      pattern), `{:struct, module}` (a struct that is not plain data) or `:struct` (a
      `__struct__` key that is not a module). Nothing of it was created here. The
      sandbox goes on.
    * `{:result_budget, size}` - the result takes `size` bytes, more than the host's
      whole budget for results in flight (`config :ampule, result_budget: bytes`); it was
      not read. The sandbox goes on.
    * `{:result_too_large, max}` - the result takes more than `max` bytes (`:max_result`),
      encoded or decoded; it was not read into this node. The sandbox goes on.
    * `{:protocol, detail}` - the sandbox broke the agent protocol and was destroyed
      before this was returned: `:bad_frame` (a frame of no known kind), `:unexpected_id`
      (a result for a call never made, or made twice), `:unexpected_frame` (any byte
      while no call was waiting), `:frame_too_large` (a frame over the
      limit, refused before it was read), `:bad_term` (a result that is not a well-formed
      term), `:closed` (the agent closed the channel, maybe in the middle of a frame, while
      the sandbox ran on), `:unresponsive` (the agent answered no kill for 5 s, or read no
      frame for 10 s). Its owner gets `{:ampule_exit, container, {:protocol, detail}}`.

  Pools (`Ampule.Pool`, `call/2` with `:pool`): `:checkout_timeout` - no container of the
  pool came within its `:checkout_timeout`.

  System containers (`create/1`, `console/2`, `stop/1`, `restart/1`):

    * `{:template_unavailable, template, why}` - the template downloads images from the
      internet (`download`, `ubuntu`, ...), which Ampule refuses at once.
    * `{:unknown_template, template}` - no LXC template of that name
      (`/usr/share/lxc/templates/lxc-NAME`).
    * `{:create_failed, message}` - the template failed (`message` ends with its last
      lines; the port's log has more).
    * `:create_timeout` - the template did not finish within `:timeout`.
    * `{:dhcp, message}` - the port could not start the DHCP server on its bridge.
    * `:no_console`, `{:console, message}` - the container has no console attached (it is
      stopped), or writing to it failed.
    * `:not_system` - `restart/1` of an application container (it cannot boot again).
    * `:already_running` - `restart/1` of a container that runs.
    * `:stopped` - `stop/1` of a container that is stopped already.

  Across hosts (see "Cluster"):

    * `{:host_down, node}` - the container's host cannot be reached: its node is gone
      (its port destroyed its containers) or cut off. From calls, `start/1` and
      `destroy/1` with a container or `on:` there, and to owners as
      `{:ampule_exit, container, {:host_down, node}}`.
    * `:no_host` - a pool with `:hosts` has no host to boot on (none of them offers
      containers now).

  Managing containers: `:not_found` - no such container (already destroyed); `:booting` -
  `destroy/1` while its spawn has not answered yet (the spawn's owner exiting destroys it);
  `:closing` - the port is shutting down (its BEAM went away) and takes no new work.

  Options the port refused (Ampule checks them first, so these are rare):
  `{:bad_option, key}`, `{:bad_option_value, key, value}`, `{:bad_config_key, key}`;
  `{:rootfs, message}`, `{:leases, message}` - the port could not write a container's
  directory or its address lease; `{:sudo_not_found, path}` - `config :ampule, sudo:
  true`, but there is no `sudo` (install it, then run `script/sudoers USER`).
  """

  import Kernel, except: [spawn: 1]

  alias Ampule.{Call, Container, Distribution, Options, Port}

  @default_timeout 5_000

  @typedoc "A function to run: `{module, function, arguments}`."
  @type mfa_tuple :: {module, atom, [term]}

  @typedoc """
  What a container runs: `{module, function, arguments}` or a function of no arguments
  (see "Closures").
  """
  @type callable :: mfa_tuple | (() -> term)

  @typedoc """
  How a system container's console output reaches its owner (see "Console flow control").
  """
  @type console_mode :: boolean | :once | integer

  @typedoc "See \"Error reasons\" above."
  @type reason ::
          :timeout
          | {:exception, Exception.t(), Exception.stacktrace()}
          | {:throw, term}
          | {:exit, term}
          | :noconnection
          | :oom
          | {:spawn_failed, term}
          | {:result_refused,
             :atoms
             | :fun
             | :pid
             | :port
             | :reference
             | :integer
             | :re_pattern
             | :struct
             | {:struct, module}}
          | {:result_too_large, pos_integer}
          | {:result_budget, pos_integer}
          | {:protocol, atom}
          | :sandbox_unsupported
          | {:agent_socket, atom}
          | {:boot_timeout, atom, String.t()}
          | {:boot_failed, term, String.t()}
          | {:lxc, atom}
          | :no_address
          | :name_in_use
          | :not_found
          | :owner_exited
          | {:connect_failed, node, term}
          | {:host_not_ready, atom, String.t()}
          | {:port_not_found, String.t()}
          | {:port_not_started, String.t(), term}
          | {:port_failed, term}
          | :port_exited
          | {:unsupported_protocol, term}
          | :hello_timeout
          | :not_running
          | {:short_names, node}
          | {:distribution, term}
          | {:host_down, node}
          | :no_host
          | {:sudo_not_found, String.t()}
          | {:bad_option, term}
          | {:bad_option_value, atom, term}
          | {:bad_config_key, String.t()}
          | {:rootfs, String.t()}
          | {:leases, String.t()}
          | :booting
          | :closing
          | :checkout_timeout
          | {:unknown_request, term}
          | {:bad_request, term}
          | {:bad_reply, term}
          | {:template_unavailable, String.t(), String.t()}
          | {:unknown_template, String.t()}
          | {:create_failed, String.t()}
          | :create_timeout
          | {:dhcp, String.t()}
          | {:console, String.t()}
          | :no_console
          | :not_system
          | :already_running
          | :stopped

  ## Running code

  @doc """
  Runs `{module, function, args}` (or a function of no arguments, see "Closures") in a
  fresh container and returns its result.

  The container is made for this call (see `start/1`) and destroyed as soon as the call
  returns, raises, exits or times out. If the function raises, the exception is raised
  again here, with the container's stacktrace; a throw is thrown again and an exit exits.
  If Ampule fails (the container does not boot, the call times out), `Ampule.Error` is
  raised.

      iex> {:erlang, :node, []} |> Ampule.call() |> Ampule.mfa(:erlang, :atom_to_list) |> Ampule.call()
      ~c"a-k3x9-2@10.213.57.3"

  See `call/2` for options.
  """
  @spec call(callable) :: term
  def call(mfa), do: call(mfa, [])

  @doc """
  Runs `{module, function, args}` or a function of no arguments in `container`, or in a
  fresh container made with `options`, and returns its result.

  With a container (from `spawn/1` or `start/1`), the container outlives the call; the
  timeout is #{@default_timeout} ms (see `call/3`).

  With a keyword list, a fresh container is made with those options and destroyed after
  the call, as in `call/1`:

      Ampule.call({Enum, :sum, [[1, 2, 3]]}, timeout: 1_000, memory: 64 * 1024 * 1024)
      Ampule.call(fn -> Enum.sum([1, 2, 3]) end, sandbox: true)

  ## Options

    * `:timeout` - milliseconds to wait for the result, or `:infinity` (default
      #{@default_timeout}). On timeout the remote process is killed and `Ampule.Error` with
      reason `:timeout` is raised.
    * `:pool` - take the container from this `Ampule.Pool` instead of making one: it is
      handed out pristine, runs this call alone and is destroyed after it (see
      `Ampule.Pool`); only `:timeout` may go with it
    * every option of `start/1` (`:on`, `:sandbox`, `:boot_timeout`, `:memory`, ...).
  """
  @spec call(callable, Container.t() | keyword) :: term
  def call(mfa, %Container{} = container), do: call(mfa, container, @default_timeout)

  def call(what, opts) when is_list(opts) do
    what = callable!(what)

    case Keyword.pop(opts, :pool) do
      {nil, opts} -> fresh_call(what, opts)
      {pool, opts} -> pooled_call(what, pool, opts)
    end
  end

  defp fresh_call(what, opts) do
    {timeout, spawn_opts} = Options.call!(opts, @default_timeout)
    container = spawn(spawn_opts)

    try do
      call(what, container, timeout)
    rescue
      error in Ampule.Error ->
        reraise %{error | reason: node_gone_reason(error.reason, container)}, __STACKTRACE__
    after
      destroy(container)
    end
  end

  # A container of the pool's, made with the pool's options: only the timeout is the
  # call's own.
  defp pooled_call(what, pool, opts) do
    {timeout, rest} = Keyword.pop(opts, :timeout, @default_timeout)
    timeout = Options.timeout!(timeout, :timeout)

    if rest != [] do
      raise ArgumentError,
            "with :pool, the only other option of a call is :timeout (the pool makes its " <>
              "containers with its own options), got: #{inspect(Keyword.keys(rest))}"
    end

    Ampule.Pool.with_container(pool, fn container ->
      try do
        call(what, container, timeout)
      rescue
        error in Ampule.Error ->
          reraise %{error | reason: node_gone_reason(error.reason, container)}, __STACKTRACE__
      end
    end)
  end

  # The fresh container's node went away during the call. Its owner (this process) hears
  # why from the port; when it was the memory limit, say so rather than `:noconnection`.
  defp node_gone_reason(:noconnection, %Container{name: name}) do
    receive do
      {:ampule_exit, %Container{name: ^name}, :oom} -> :oom
      {:ampule_exit, %Container{name: ^name}, _status} -> :noconnection
    after
      # The port reports the exit right when the init is gone; longer, and the failed
      # call would wait for a reason that changes nothing.
      500 -> :noconnection
    end
  end

  defp node_gone_reason(reason, _container), do: reason

  @doc """
  Runs `{module, function, args}` in `container`, waiting at most `timeout` milliseconds
  (or `:infinity`).

  Returns the function's result. If it raises, throws or exits, so does this call (the
  exception keeps the container's stacktrace). If no result comes within `timeout`, the
  process running the function in the container is killed, and `Ampule.Error` is raised
  with reason `:timeout`; if the container's node is gone, with `:noconnection`.

      container = Ampule.spawn()
      Ampule.call({String, :upcase, ["ampule"]}, container, 1_000)
      #=> "AMPULE"
  """
  @spec call(callable, Container.t(), timeout) :: term
  def call(what, %Container{} = container, timeout) do
    what = callable!(what)
    timeout = Options.timeout!(timeout, :timeout)

    case Call.await(Call.async(container, what), timeout) do
      {:ok, value} -> value
      {:error, {:exception, exception, stacktrace}} -> reraise exception, stacktrace
      {:error, {:throw, value}} -> throw(value)
      {:error, {:exit, reason}} -> exit(reason)
      {:error, reason} -> raise Ampule.Error, reason: reason, container: container.name
    end
  end

  @doc """
  Runs a block of code in a container: the code itself travels, quoted, with the values of
  the variables it uses, and is evaluated there as iex would. For code that lives only in
  this node's memory, which a closure cannot carry (see "Code in containers"): a script
  (`mix run script.exs`), an ExUnit test file.

      require Ampule
      words = ["a", "b"]
      Ampule.run(sandbox: true, do: Enum.map(words, &String.upcase/1))
      #=> ["A", "B"]

      Ampule.run container do
        defmodule Greeter, do: def(hi(x), do: "hi " <> x)
        Greeter.hi("there")
      end

  `run(opts, do: ...)` runs in a fresh container made with `call/2`'s options (a pool's
  with `pool:`, a sandbox with `sandbox: true`, `:timeout` included); `run(container, do:
  ...)` in a container you hold (with `timeout:` beside `do:` if needed). Returns
  the block's value; raises, throws and exits as `call/2` does. The first `run/2` in a
  container starts the `:elixir` application there (`defmodule` needs it).
  """
  defmacro run(opts) when is_list(opts) do
    {block, opts} = Keyword.pop(opts, :do)
    run_quoted(opts, block, __CALLER__)
  end

  @doc "As `run/1`, in `target`: a container, or a keyword list of `call/2` options."
  defmacro run(target, opts, do_block) when is_list(opts) and is_list(do_block),
    do: run_with(target, opts ++ do_block, __CALLER__)

  @doc false
  defmacro run(target, opts) when is_list(opts), do: run_with(target, opts, __CALLER__)

  defp run_with(target, opts, caller) do
    {block, opts} = Keyword.pop(opts, :do)

    case Keyword.pop(opts, :timeout) do
      {nil, []} -> run_quoted(target, block, caller)
      {timeout, []} -> run_quoted({:__with_timeout__, target, timeout}, block, caller)
      {_, other} -> raise ArgumentError, "Ampule.run/2: unknown options #{inspect(other)}"
    end
  end

  defp run_quoted(_target, nil, _caller), do: raise(ArgumentError, "Ampule.run needs a do block")

  defp run_quoted(target, block, caller) do
    bound = caller |> Macro.Env.vars() |> MapSet.new()

    used =
      block
      |> Macro.prewalk(MapSet.new(), fn
        {name, _meta, context} = var, acc when is_atom(name) and is_atom(context) ->
          if MapSet.member?(bound, {name, context}),
            do: {var, MapSet.put(acc, {name, context})},
            else: {var, acc}

        other, acc ->
          {other, acc}
      end)
      |> elem(1)
      |> Enum.filter(fn {_name, context} -> context == nil end)

    binding = for {name, nil} <- used, do: {name, Macro.var(name, nil)}

    mfa = quote do: {Ampule.Remote.Eval, :eval, [unquote(Macro.escape(block)), unquote(binding)]}

    case target do
      {:__with_timeout__, container, timeout} ->
        quote do: Ampule.call(unquote(mfa), unquote(container), unquote(timeout))

      target ->
        quote do: Ampule.call(unquote(mfa), unquote(target))
    end
  end

  @doc """
  Runs a function on each element of `enumerable`, each in a container of its own, as a
  stream in the manner of `Task.async_stream/3`.

      1..100
      |> Ampule.map({:erlang, :phash2, []}, max_concurrency: 4, pool: MyApp.Boxes)
      |> Enum.to_list()
      #=> [{:ok, 2_627_060_397}, {:ok, 3_474_221_563}, ...]

      Ampule.map(["a", "b"], &String.upcase/1, sandbox: true) |> Enum.to_list()
      #=> [{:ok, "A"}, {:ok, "B"}]

  `fun` is a function of one argument (it travels as a closure) or `{module, function,
  extra_args}`, called as `apply(module, function, [element | extra_args])`, as `mfa/4`
  builds it. Each element runs in a fresh container, cold (with `start/1`'s options) or
  from a pool (`pool: name`).

  Each element gives `{:ok, result}`, or `{:error, reason}` when it failed: `:timeout`
  (the element's `:timeout` passed: its work and its container were killed),
  `{:exception, exception, stacktrace}`, `{:throw, value}`, `{:exit, reason}` for the
  function's own failures, or Ampule's reason (the container did not boot, a pool's
  `:checkout_timeout`, ...). A failure never stops the stream.

  ## Options

    * `:max_concurrency` - elements in flight at once (default `System.schedulers_online/0`)
    * `:ordered` - results in the order of `enumerable` (default `true`); `false` gives
      each as soon as it is done
    * `:timeout` - milliseconds for each element, boot included (default 30000)
    * `:pool`, or any option of `start/1` for cold containers

  Halting the stream early, or the caller exiting, kills what is in flight; their
  containers are destroyed.
  """
  @spec map(Enumerable.t(), (term -> term) | {module, atom, [term]}, keyword) :: Enumerable.t()
  def map(enumerable, fun, opts \\ []), do: Ampule.Map.stream(enumerable, fun, opts)

  @doc """
  Builds the `{module, function, args}` that passes `value` as the first argument, so that
  a result pipes into the next `call/1`:

      iex> :"a@10.213.57.2" |> Ampule.mfa(:erlang, :atom_to_list)
      {:erlang, :atom_to_list, [:"a@10.213.57.2"]}

      iex> "a,b" |> Ampule.mfa(String, :split, [","])
      {String, :split, ["a,b", ","]}
  """
  @spec mfa(term, module, atom, [term]) :: mfa_tuple
  def mfa(value, module, function, extra \\ [])
      when is_atom(module) and is_atom(function) and is_list(extra) do
    {module, function, [value | extra]}
  end

  @doc """
  Runs `{module, function, args}` in `container` without waiting for it; returns `:ok`.

  The function runs until it returns, or for at most `timeout` milliseconds (default
  `:infinity`), after which its process is killed. Nothing is reported back, not even
  an unreachable node (as `:erpc.cast/4`).

      Ampule.cast({:timer, :sleep, [60_000]}, container, 1_000)
  """
  @spec cast(callable, Container.t(), timeout) :: :ok
  def cast(what, %Container{} = container, timeout \\ :infinity) do
    Call.cast(container, callable!(what), Options.timeout!(timeout, :timeout))
  end

  @doc """
  Starts `{module, function, args}` in `container` and returns at once; `yield/2` awaits
  the result.

      call = Ampule.async_call({:lists, :seq, [1, 3]}, container)
      # ... other work ...
      Ampule.yield(call, 1_000)
      #=> {:ok, [1, 2, 3]}

  The call belongs to the calling process: only it can `yield/2`, and if it exits, the
  remote process is killed.
  """
  @spec async_call(callable, Container.t()) :: Call.t()
  def async_call(what, %Container{} = container) do
    Call.async(container, callable!(what))
  end

  @doc """
  Waits at most `timeout` milliseconds (default #{@default_timeout}) for the result of
  `async_call/2`.

  Returns `{:ok, result}`, or `{:error, reason}` where reason is `:timeout` (the remote
  process was killed), `{:exception, exception, stacktrace}`, `{:throw, value}`,
  `{:exit, reason}` or `:noconnection` (see "Error reasons"). A call is yielded once.
  """
  @spec yield(Call.t(), timeout) :: {:ok, term} | {:error, reason}
  def yield(%Call{} = call, timeout \\ @default_timeout) do
    Call.await(call, Options.timeout!(timeout, :timeout))
  end

  @doc """
  Runs `{module, function, args}` in each of `containers` at the same time and returns
  their results in the same order, each `{:ok, result}` or `{:error, reason}` as in
  `yield/2`.

  All the calls share one deadline, `timeout` milliseconds (default #{@default_timeout})
  from now; the processes still running then are killed and their results are
  `{:error, :timeout}`.

      Ampule.multicall({:erlang, :node, []}, [c1, c2], 2_000)
      #=> [{:ok, :"a-k3x9-1@10.213.57.2"}, {:ok, :"a-k3x9-2@10.213.57.3"}]
  """
  @spec multicall(callable, [Container.t()], timeout) :: [{:ok, term} | {:error, reason}]
  def multicall(what, containers, timeout \\ @default_timeout) when is_list(containers) do
    what = callable!(what)
    timeout = Options.timeout!(timeout, :timeout)

    containers
    |> Enum.map(fn %Container{} = container -> Call.async(container, what) end)
    |> Call.await_many(timeout)
  end

  ## Containers

  @doc """
  Makes a container and returns it, raising `Ampule.Error` if it cannot.

      container = Ampule.spawn()
      container.nodename
      #=> :"a-k3x9-1@10.213.57.2"

  Takes the options of `start/1`.
  """
  @spec spawn(keyword) :: Container.t()
  def spawn(opts \\ []) do
    case start(opts) do
      {:ok, container} -> container
      {:error, reason} -> raise Ampule.Error, reason: reason, container: opts[:name]
    end
  end

  @doc """
  Makes a container and returns `{:ok, container}` when its node answers, or
  `{:error, reason}` (see "Error reasons"; a container that failed is already destroyed).

  The container belongs to the calling process: it is destroyed when that process exits
  (see "Orphan containers"). If the local node is not alive, distribution is started first
  (see "Distribution"), except for a sandbox, which needs none (its agent's hello is its
  readiness).

  ## Options

    * `:sandbox` - `true` for a sandbox: a node that is not distributed, without network,
      reached through an agent and trusted with nothing (see "Sandboxes"); default
      `false`, or `config :ampule, sandbox: true`
    * `:max_result` - a sandbox's largest result in bytes, encoded or decoded; a larger
      one is refused with `{:result_too_large, max}` (default 64 MiB, at most
      4,294,967,278). Only with `sandbox: true`: a distribution container's results are
      not limited, and asking for it there raises `ArgumentError`
    * `:name` - the container's name, 1 to 40 of `A-Z a-z 0-9 _ -` (default: generated)
    * `:boot_timeout` - milliseconds for the container to boot and its node to answer a
      handshake (a sandbox's agent to say hello); past it the container is destroyed and
      the reason is `{:boot_timeout, phase, log_tail}` (default `15_000`)
    * `:owner` - the process whose exit destroys the container, or `false` for none
      (default: the calling process)
    * `:host_code_paths` - mount and add the caller's code paths (see "Code in
      containers"; default `true`)
    * `:code_paths` - more absolute directories to mount read-only and add with `-pz`
      (default `[]`)
    * `:args` - more arguments for the node's `erl` (default `[]`)
    * `:hidden` - start the node as a hidden node (default `true`; a sandbox's node is not
      distributed, so it has no meaning there). A visible node joins
      the local node's `:global` cluster, which then tries to connect every container
      with every other one (they have different cookies, so it fails) and, on Erlang/OTP
      25 and later, disconnects the containers "to prevent overlapping partitions"
    * `:env` - environment variables for the node, `{name, value}` pairs (default `[]`)
    * `:memory` - memory limit in bytes, rounded down to whole pages by the kernel
      (default: the port's, 512 MiB)
    * `:pids` - process limit (default: the port's, 512)
    * `:cpu_shares` - relative CPU weight (default: the port's, 1024)
    * `:cpus` - a hard CPU quota, in CPUs (`0.5` is half of one CPU's time, `2` two
      CPUs' worth), enforced by the CFS bandwidth controller; `:infinity` for none, the
      CPU then shared by weight alone (`:cpu_shares`). Default `1`: a runaway node (a
      fork bomb, a busy loop on every scheduler) leaves the host's other CPUs alone, and a
      node's boot is not measurably slower for it (`docs/security.md`)
    * `:seccomp` - the system calls the container's processes may not make: `true`
      (default) for Ampule's policy, in the spirit of Docker's default profile (no new
      user namespaces, no keyrings, io_uring, bpf, perf_event_open, userfaultfd, kernel
      modules or kexec, ... — the list and the reasons are in `docs/security.md`); `:lxc`
      for LXC's own short list only (kernel modules, kexec, file handles, forced
      unmounts), which lets code make user namespaces; `false` for no filter at all; or
      the absolute path of a profile file of your own, in LXC's seccomp format (see
      `lxc.container.conf(5)`), which liblxc reads as root. A refused call fails with
      `EPERM` (`clone3` with `ENOSYS`, so that libc falls back to `clone`)
    * `:config` - raw `lxc.*` configuration items, `{key, value}` pairs, applied last
      (default `[]`)

  And, for a container on another host of the cluster (see "Cluster"):

    * `:on` - the node whose Ampule makes the container (default: this node's). Its
      failures are those of `start/1` there, or `{:host_down, node}` when the node cannot
      be reached.

  An unknown option or a bad value raises `ArgumentError` naming the option.
  """
  @spec start(keyword) :: {:ok, Container.t()} | {:error, reason}
  def start(opts \\ []) do
    case Options.on!(opts) do
      {nil, opts} -> start_here(opts)
      {host, opts} -> start_on(host, opts)
    end
  end

  defp start_here(opts) do
    case Options.spawn!(opts) do
      {owner, request, {:sandbox, max_result}} -> Ampule.Sandbox.start(owner, request, max_result)
      {owner, request, :distribution} -> start_distributed(owner, request)
    end
  end

  # The host's Ampule makes it, with its own port, bridge and code paths, for an owner
  # here (checked here first, so that a bad option raises in the caller).
  defp start_on(host, opts) do
    {owner, request, _kind} = Options.spawn!(opts)
    opts = Keyword.put(opts, :owner, owner || false)
    remote(host, :start, [opts], request.boot_timeout + 60_000)
  end

  # Runs a function of Ampule on `host`; a host that cannot be reached (gone, or cut off)
  # is `{:error, {:host_down, host}}`, and what the host raises is raised here.
  defp remote(host, function, args, timeout) do
    :erpc.call(host, __MODULE__, function, args, timeout)
  catch
    :error, {:erpc, :noconnection} -> {:error, {:host_down, host}}
    :error, {:erpc, :timeout} -> {:error, :timeout}
    :error, {:exception, reason, stacktrace} -> :erlang.raise(:error, reason, stacktrace)
    :exit, {:exception, reason} -> exit(reason)
  end

  defp start_distributed(owner, request) do
    with {:ok, hello} <- Port.hello(),
         :ok <- Distribution.ensure_started(hello.host_address),
         {:ok, container} <- Port.spawn(request, owner) do
      case connect(container, request.boot_timeout) do
        :ok ->
          {:ok, container}

        {:error, reason} ->
          Port.destroy(container.name)
          {:error, reason}
      end
    end
  end

  # Sets the container's cookie and connects to its node; makes sure the code Ampule runs
  # there (Ampule.Remote) is loaded, sending it if the node cannot load it from its path.
  defp connect(%Container{nodename: node, cookie: cookie}, timeout) do
    Distribution.set_cookie(node, cookie)

    case :erpc.call(node, :code, :ensure_loaded, [Ampule.Remote], timeout) do
      {:module, _} ->
        :ok

      {:error, _} ->
        {module, binary, file} = :code.get_object_code(Ampule.Remote)

        case :erpc.call(node, :code, :load_binary, [module, file, binary], timeout) do
          {:module, _} -> :ok
          {:error, reason} -> {:error, {:connect_failed, node, {:load_binary, reason}}}
        end
    end
  catch
    :error, {:erpc, reason} -> {:error, {:connect_failed, node, reason}}
  end

  @doc """
  Destroys a container: kills everything in it and removes its files, veth and address.

  Returns `:ok` once nothing of the container runs any more (its node is down), or
  `{:error, :not_found}` if it is already gone (see "Error reasons" for the port's errors).
  Any process may destroy any container.

  Like `:peer.stop/1`, it does not wait for the last of the cleanup: the port releases an
  application container's rootfs, veth, cgroups and address right after it answers (tens of
  milliseconds; most of it is the kernel deleting the veth). The container is gone from
  `list/0` and `info/1` at once, its `:name` can be used again at once (a spawn with it
  waits for the release), and the port finishes every release before it exits, so nothing
  outlives the BEAM either way. A system container's `destroy` returns when everything of
  it is removed.
  """
  @spec destroy(Container.t() | String.t()) :: :ok | {:error, reason}
  def destroy(%Container{name: name, nodename: node} = container) do
    if Container.local?(container) do
      # Its node goes with it; disconnecting first closes the connection cleanly (see
      # Ampule.Port, which does the same for the containers it knows). A sandbox has none.
      if node, do: :erlang.disconnect_node(node)
      Port.destroy(name)
    else
      remote(container.host, :destroy, [container], 65_000)
    end
  end

  def destroy(name) when is_binary(name), do: Port.destroy(name)

  def destroy(%Ampule.SystemContainer{name: name}), do: Port.destroy(name)

  ## System containers

  @create_options [
    :name,
    :template,
    :release,
    :user,
    :password,
    :privileged,
    :persistent,
    :timeout,
    :owner,
    :progress,
    :memory,
    :pids,
    :cpu_shares,
    :cpus,
    :active
  ]

  # Chunks of console output sent to the owner before it must re-arm (`console_active/2`);
  # as cowboy's `active_n`. Bounds its mailbox to about 100 × 16 KiB.
  @default_active 100

  @doc """
  Creates and boots a system container: a whole distribution from an LXC template, with
  its own init and a login on its console; raises `Ampule.Error` on failure (see
  `create_container/1` for tagged tuples).

      container = Ampule.create()
      "ubuntu\n" |> Ampule.console(container)
      "ubuntu\n" |> Ampule.console(container)
      "ls -al\n" |> Ampule.console(container)

  Everything the console prints arrives at the owner as
  `{:ampule_console, container, binary}` (at most 16 KiB each), in order and byte for byte
  (no byte value is reserved or altered), #{@default_active} messages at a time: then the
  owner gets `{:ampule_console_passive, container}`, and the rest waits until
  `console_active/2` re-arms it. A container that floods its console stalls there, not in
  the BEAM's memory (see "Console flow control").

  ## Options

    * `:template` - `"busybox"` (default: instant, busybox init with a getty on the console)
      or `"debian"` (debootstrap from Debian's mirror: about a minute the first time, then
      from LXC's cache in `/var/cache/lxc/debian`). Templates that download images from the
      internet (`"download"`, `"ubuntu"`) fail at once with `{:template_unavailable, ...}`:
      this host does not reach image servers; Ubuntu needs them or an Ubuntu mirror.
    * `:release` - the distribution release for `"debian"` (e.g. `"bookworm"`)
    * `:user`, `:password` - the console login written into the rootfs; default
      `"ubuntu"`/`"ubuntu"`, as in the seed's images
    * `:privileged` - `false` (default) runs it in a user namespace; templates that cannot
      build unprivileged (debian) build as root and the rootfs is shifted into the range
    * `:persistent` - `false` (default): destroyed with the port like any container;
      `true` keeps it (stopped, disk intact) when the port exits and the next port adopts it
    * `:timeout` - milliseconds for the template to finish (default 600000)
    * `:owner` - the process that gets console output and whose exit destroys the
      container (default: the caller); `false` for none
    * `:memory`, `:pids`, `:cpu_shares`, `:cpus` - limits, as for `start/1`, except that
      a system container has no CPU quota unless `:cpus` asks for one; inside a system
      container the kernel's OOM killer picks a victim among its processes (its init
      survives if it can)
    * `:active` - how console output reaches the owner, as `:active` for a socket
      (default `#{@default_active}`): a count `n` from 1 to 32767 sends `n` messages, then
      `{:ampule_console_passive, container}`; `:once` sends one; `false` none until
      `console_active/2`; `true` all of it, with no bound on the owner's mailbox (see
      "Console flow control")
    * `:progress` - `true` sends the owner `{:ampule_progress, name, phase}` as the
      container is made (`:creating`, `:starting`, `:running`; the first debian build
      takes a minute). Phases are always logged.

  System containers get their address from the DHCP server Ampule runs on its bridge
  (dnsmasq, the top quarter of the subnet); `Ampule.info/1` shows it.

  Their processes run under LXC's own seccomp profile
  (`/usr/share/lxc/config/common.seccomp`: no kernel modules, kexec, file handles or forced
  unmounts), whichever the template, not under the stricter policy of `start/1`'s
  containers: a distribution's init and services use namespaces and keyrings.
  """
  @spec create(keyword) :: Ampule.SystemContainer.t()
  def create(opts \\ []) do
    case create_container(opts) do
      {:ok, container} -> container
      {:error, reason} -> raise Ampule.Error, reason: reason
    end
  end

  @doc "Like `create/1`, returning `{:ok, container}` or `{:error, reason}`."
  @spec create_container(keyword) :: {:ok, Ampule.SystemContainer.t()} | {:error, reason}
  def create_container(opts \\ []) do
    opts = Keyword.validate!(opts, @create_options)
    {owner, opts} = Keyword.pop(opts, :owner, self())
    owner = if owner == false, do: nil, else: owner
    {progress, opts} = Keyword.pop(opts, :progress, false)
    {password, opts} = Keyword.pop(opts, :password)
    {active, opts} = Keyword.pop(opts, :active, @default_active)
    active = Options.active!(active, :create)

    # Progress events name the container before the reply does: pick the name here.
    opts =
      if progress and owner,
        do:
          Keyword.put_new_lazy(opts, :name, fn -> "s-#{System.unique_integer([:positive])}" end),
        else: opts

    {user, opts} = Keyword.pop(opts, :user)
    timeout = Keyword.get(opts, :timeout, 600_000)

    request =
      Enum.reduce(opts, %{}, fn
        {key, value}, acc when key in [:name, :template, :release] and is_binary(value) ->
          Map.put(acc, key, value)

        {key, value}, acc when key in [:privileged, :persistent] and is_boolean(value) ->
          Map.put(acc, key, value)

        {:timeout, value}, acc when is_integer(value) and value > 0 ->
          Map.put(acc, :timeout, value)

        {key, value}, acc
        when key in [:memory, :pids, :cpu_shares] and is_integer(value) and value >= 16 and
               (key != :memory or value >= 16_777_216) and (key != :cpu_shares or value >= 2) ->
          Map.put(acc, key, value)

        {:cpus, value}, acc ->
          Map.put(acc, :cpu_millis, Options.cpu_millis(Options.cpus!(value)))

        {key, value}, _acc ->
          raise ArgumentError, "invalid value for #{inspect(key)}: #{inspect(value)}"
      end)

    request =
      case {user, password} do
        {nil, nil} -> request
        {u, p} when is_binary(u) and is_binary(p) -> Map.put(request, :user, {u, p})
        _ -> raise ArgumentError, ":user and :password go together, both strings"
      end

    # The console travels over the port, not distribution: no node needs to be alive.
    progress_to = if progress, do: owner
    Port.create(request, owner, progress_to, active, timeout + 30_000)
  end

  @doc """
  Writes `data` to a system container's console, in the seed's pipeline order
  (`"ls -al\n" |> Ampule.console(container)`). Returns `:ok`.
  """
  @spec console(iodata, Ampule.SystemContainer.t() | String.t()) :: :ok | {:error, reason}
  def console(data, %Ampule.SystemContainer{name: name}), do: console(data, name)

  def console(data, name) when is_binary(name) do
    Port.request({:console, name, IO.iodata_to_binary(data)})
  end

  @doc """
  Sets how a system container's console output reaches its owner, as
  `:inet.setopts(socket, active: active)` does for a socket's data: `true`, `false`,
  `:once`, or an integer from -32768 to 32767 added to the count of messages still to send
  (a count that reaches 0 sends `{:ampule_console_passive, container}`). Output that waited
  while the owner was passive is sent first, in order.

      receive do
        {:ampule_console, ^container, bytes} -> IO.write(bytes)
        {:ampule_console_passive, ^container} -> Ampule.console_active(container, 100)
      end

  Any process may call it; the messages go to the owner. Returns `:ok`, or
  `{:error, :not_found}` for a container this node's Ampule did not create or has
  destroyed. A bad `active` raises `ArgumentError`. See "Console flow control".
  """
  @spec console_active(Ampule.SystemContainer.t() | String.t(), console_mode) ::
          :ok | {:error, reason}
  def console_active(%Ampule.SystemContainer{name: name}, active),
    do: console_active(name, active)

  def console_active(name, active) when is_binary(name) do
    Port.console_active(name, Options.active!(active, :set))
  end

  @doc "Stops a system container; its disk stays, `restart/1` boots it again."
  @spec stop(Ampule.SystemContainer.t()) :: :ok | {:error, reason}
  def stop(%Ampule.SystemContainer{name: name}), do: Port.request({:stop, name})

  @doc "Boots a stopped system container again (its console output resumes)."
  @spec restart(Ampule.SystemContainer.t()) :: :ok | {:error, reason}
  def restart(%Ampule.SystemContainer{name: name}) do
    case Port.request({:start, name}) do
      {:ok, _} -> :ok
      other -> other
    end
  end

  @doc "The port's view of a container: state, address, init pid."
  @spec info(Ampule.Container.t() | Ampule.SystemContainer.t() | String.t()) ::
          {:ok, map} | {:error, reason}
  def info(%Container{name: name} = container) do
    if Container.local?(container),
      do: info(name),
      else: remote(container.host, :info, [name], 60_000)
  end

  def info(%{name: name}), do: info(name)

  def info(name) when is_binary(name) do
    case Port.request({:info, name}) do
      # The port says `undefined` (Erlang's way) for what a container has not (yet): nil.
      {:ok, info} ->
        {:ok, Map.new(info, fn {k, v} -> {k, if(v == :undefined, do: nil, else: v)} end)}

      other ->
        other
    end
  end

  @doc """
  Returns the names of the containers the port has made and not destroyed, oldest first.
  """
  @spec list() :: {:ok, [String.t()]} | {:error, reason}
  def list, do: Port.request(:list)

  ## Errors

  @doc """
  Explains an error reason (see "Error reasons") in a sentence or two.

      iex> Ampule.format_error(:timeout)
      "no result within the timeout; the process running the call in the container was killed"
  """
  @spec format_error(reason) :: String.t()
  def format_error(:timeout),
    do: "no result within the timeout; the process running the call in the container was killed"

  def format_error({:exception, exception, _stacktrace}),
    do: "the function raised: " <> Exception.message(exception)

  def format_error({:throw, value}), do: "the function threw #{inspect(value)}"
  def format_error({:exit, reason}), do: "the function's process exited: #{inspect(reason)}"

  def format_error(:oom),
    do: "the container exceeded its memory limit and its node was killed (see :memory)"

  def format_error(:noconnection),
    do: "the container's node cannot be reached (the container was destroyed or its node stopped)"

  def format_error({:result_refused, :atoms}) do
    "the sandbox's result holds an atom this node does not have; it was refused without " <>
      "creating it (return a string instead)"
  end

  def format_error({:result_refused, kind}) when kind in [:fun, :pid, :port, :reference] do
    "the sandbox's result holds a #{kind}; nothing from a sandbox may name code or a " <>
      "process of this node, so it was refused"
  end

  def format_error({:result_refused, :integer}) do
    "the sandbox's result holds an integer of more than #{Ampule.Sandbox.Decode.max_integer_bits()} " <>
      "bits by default (config :ampule, max_integer_bits: n); printing one costs time " <>
      "quadratic in its size, so it was refused"
  end

  def format_error({:result_refused, :re_pattern}) do
    "the sandbox's result holds a compiled pattern (a Regex or :re_pattern); PCRE trusts " <>
      "compiled patterns, so one made elsewhere could crash this node: it was refused"
  end

  def format_error({:result_refused, {:struct, module}}) do
    "the sandbox's result holds a %#{inspect(module)}{} struct, which is not plain data (its " <>
      "protocols would act with this node's rights); it was refused (see :result_structs)"
  end

  def format_error({:result_refused, :struct}) do
    "the sandbox's result holds a map whose __struct__ is not a module; it was refused"
  end

  def format_error({:result_budget, size}) do
    "the sandbox's result takes #{size} bytes, more than the host's whole budget for " <>
      "sandbox results in flight (config :ampule, result_budget: bytes); it was not read"
  end

  def format_error({:result_too_large, max}) do
    "the sandbox's result is larger than #{max} bytes (encoded or decoded); it was refused " <>
      "before this node held it (see the :max_result option)"
  end

  def format_error({:protocol, detail}) do
    "the sandbox broke the agent protocol (#{protocol_detail(detail)}) and was destroyed"
  end

  def format_error({:boot_timeout, :agent, log_tail}) do
    "the sandbox's node ran, but its agent did not connect and say hello within the boot " <>
      "timeout; the sandbox was destroyed." <> log_section(log_tail)
  end

  def format_error(:sandbox_unsupported),
    do:
      "the port program does not make sandboxes (it is older than this library): rebuild it with `mix compile --force`"

  def format_error({:agent_socket, reason}),
    do: "could not make the sandbox's agent socket in the port's agents_dir: #{inspect(reason)}"

  def format_error({:spawn_failed, reason}),
    do: "the container's node refused to start the call's process: #{inspect(reason)}"

  def format_error({:boot_timeout, phase, log_tail}) do
    "the container was not ready within its boot timeout (it was in the #{phase} phase) " <>
      "and was destroyed; raise :boot_timeout if the host is slow, or run `mix ampule.check`." <>
      log_section(log_tail)
  end

  def format_error({:boot_failed, status, log_tail}) do
    "the container's Erlang node exited with status #{inspect(status)} before it was ready; " <>
      "the container was destroyed." <> log_section(log_tail)
  end

  def format_error({:lxc, call}),
    do:
      "liblxc refused #{inspect(call)}; the port's log (in Logger) has its messages. Run `mix ampule.check`."

  def format_error(:no_address),
    do: "no free address is left on Ampule's bridge (the subnet is full)"

  def format_error(:name_in_use), do: "a container with this name exists"
  def format_error(:not_found), do: "no such container (it was destroyed, or never existed)"
  def format_error({:bad_option, key}), do: "the port refused the option #{inspect(key)}"

  def format_error({:bad_option_value, key, value}) when key in [:memory, :pids, :cpu_shares],
    do:
      "the port refused the value #{inspect(value)} of the option #{inspect(key)}: it takes " <>
        Options.limit_expected(key)

  def format_error({:bad_option_value, key, value}),
    do: "the port refused the value #{inspect(value)} of the option #{inspect(key)}"

  def format_error({:bad_config_key, key}),
    do: "the port refused the lxc configuration key #{inspect(key)}"

  def format_error({:connect_failed, node, reason}) do
    "the container booted but this node could not reach #{node} (#{inspect(reason)}); " <>
      "the container was destroyed. Is the local node's name reachable from Ampule's bridge?"
  end

  def format_error(:owner_exited),
    do: "the container's owner exited while it booted; it was destroyed"

  def format_error({:host_not_ready, reason, message}),
    do:
      "this host cannot run containers (#{reason}): #{message}\nRun `mix ampule.check` for every missing piece."

  def format_error({:port_not_found, path}) do
    "the port program is not at #{path}: run `mix compile` (it builds it with cargo), " <>
      "or set AMPULE_PORT_PATH to a built ampule_port. `mix ampule.check` checks the host."
  end

  def format_error({:port_not_started, path, error}),
    do: "could not run the port program #{path} (#{inspect(error)}); run `mix ampule.check`"

  def format_error({:port_failed, status}) do
    "the port program exited (#{inspect(status)}) before it was ready; its messages are on " <>
      "stderr. Through sudo, sudoers must let it run without a password and keep its file " <>
      "descriptors (`Defaults closefrom_override`). Run `mix ampule.check`."
  end

  def format_error(:port_exited),
    do:
      "the port program exited while the request was pending; its containers are gone and a new port is started"

  def format_error({:unsupported_protocol, version}) do
    "the port program speaks protocol #{inspect(version)}, this library speaks " <>
      "#{Ampule.Protocol.version()}: rebuild it with `mix compile --force`"
  end

  def format_error(:hello_timeout), do: "the port program did not become ready within 60 seconds"

  def format_error({:host_down, node}) do
    "the container's host #{node} cannot be reached (its node went away or is cut off); " <>
      "a host that went away destroyed its containers"
  end

  def format_error(:no_host),
    do: "no host of the pool's :hosts offers containers now (see Ampule.Cluster.hosts/0)"

  def format_error(:not_running),
    do:
      "Ampule is not running: start the :ampule application (Application.ensure_all_started(:ampule))"

  def format_error({:short_names, _} = reason), do: Distribution.explain(reason)
  def format_error({:distribution, _} = reason), do: Distribution.explain(reason)

  def format_error(:checkout_timeout),
    do: "no container of the pool came within its :checkout_timeout (raise it, or :size)"

  def format_error({:template_unavailable, template, why}),
    do: "the #{template} template cannot be used here: #{why}"

  def format_error({:unknown_template, template}),
    do:
      "there is no LXC template #{inspect(template)} (/usr/share/lxc/templates/lxc-#{template}); " <>
        "use \"busybox\" or \"debian\""

  def format_error({:create_failed, message}),
    do: "the template failed: #{message}. The port's log (in Logger) has liblxc's messages"

  def format_error(:create_timeout),
    do: "the template did not finish within :timeout (a first debian build takes a minute)"

  def format_error({:dhcp, message}),
    do: "the port could not start the DHCP server for system containers: #{message}"

  def format_error(:no_console), do: "the container has no console attached: it is stopped"
  def format_error({:console, message}), do: "writing to the console failed: #{message}"

  def format_error(:not_system),
    do: "an application container cannot boot again: make a new one with Ampule.spawn/1"

  def format_error(:already_running), do: "the container is running already"
  def format_error(:stopped), do: "the container is stopped already"

  def format_error(:booting),
    do:
      "the container is still booting: destroy it once its spawn has answered (its owner's " <>
        "exit destroys it too)"

  def format_error(:closing),
    do: "the port is shutting down (its BEAM went away) and takes no new work"

  def format_error({:rootfs, message}),
    do: "the port could not prepare the container's directory: #{message}"

  def format_error({:leases, message}),
    do: "the port could not read or write its address leases: #{message}"

  def format_error({:sudo_not_found, path}),
    do:
      "config :ampule, sudo: true, but there is no sudo (#{path}): apt-get install sudo, " <>
        "then allow the port with script/sudoers USER (see \"Running without root\")"

  def format_error({:unknown_request, request}),
    do: "the port does not know the request #{inspect(request)}: rebuild it (mix compile --force)"

  def format_error({:bad_request, request}),
    do: "the port refused the request #{inspect(request)} as malformed (a bug: rebuild both)"

  def format_error({:bad_reply, reply}),
    do: "the port answered #{inspect(reply)}, which this library does not know (rebuild both)"

  def format_error(reason), do: "unexpected reason: " <> inspect(reason)

  defp protocol_detail(:bad_frame), do: "a frame of no known kind"
  defp protocol_detail(:unexpected_id), do: "a result for a call it was not asked"
  defp protocol_detail(:unexpected_frame), do: "a frame while no call was waiting"
  defp protocol_detail(:frame_too_large), do: "a frame over the result limit"
  defp protocol_detail(:bad_term), do: "a result that is not a well-formed term"

  defp protocol_detail(:closed),
    do: "the agent closed the channel, maybe in the middle of a frame"

  defp protocol_detail(:unresponsive), do: "the agent stopped answering"
  defp protocol_detail(:bad_hello), do: "the agent's first frame was not its hello"
  defp protocol_detail(:peer), do: "the connection did not come from the sandbox's node"
  defp protocol_detail(other), do: inspect(other)

  defp log_section(log) when is_binary(log) and log != "",
    do: "\nThe node's last output:\n" <> String.trim_trailing(log)

  defp log_section(_), do: ""

  defp callable!({m, f, a} = mfa) when is_atom(m) and is_atom(f) and is_list(a), do: mfa
  defp callable!(fun) when is_function(fun, 0), do: Ampule.Closure.check!(fun)

  defp callable!(other) do
    raise ArgumentError,
          "expected {module, function, args} or a function of no arguments, got: #{inspect(other)}"
  end
end
