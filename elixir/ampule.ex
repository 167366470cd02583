defmodule Ampule do
  @moduledoc """
  Linux containers as closures in a pipeline.

  Every container runs a real Erlang node. You pass data in, it runs code, you get the
  result back, over ordinary Erlang distribution (or, for code you do not trust, through
  an agent that the host trusts with nothing: see `Ampule.Sandbox`):

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

  Calls take a function of no arguments as well as an MFA (see "Closures" in `Ampule.Container`):

      Ampule.call(fn -> Enum.sum(1..10) end, container)
      #=> 55

  ## Running untrusted source

  Source text from someone you do not trust (a playground, a grader, a bot) goes to
  `eval_string/2` or `eval_quoted/2`, which evaluate it in a sandbox and hand back data,
  in the manner of Dune:

      Ampule.eval_string(~S[IO.puts("Hello world!")])
      #=> %Ampule.Eval.Success{value: :ok, inspected: ":ok", stdio: "Hello world!\\n"}

      Ampule.eval_string("List.duplicate(:spam, 100_000)", max_heap_size: 50_000).type
      #=> :memory

  A fresh sandbox by default, a pool's with `pool:`, or one you hold with `container:`,
  which is then a session (bindings and modules kept, as in iex). Each limit passed is a
  failure type of its own (`:timeout`, `:memory`, `:reductions`, `:output_limit`), beside
  the source's own (`:parsing`, `:compile_error`, `:exception`, `:throw`, `:exit`).
  Nothing is refused by name, as Dune must: the isolation is the kernel's (`File.cwd!()`
  shows the sandbox's directory). What comes back is text made in the sandbox
  (`inspected`, `message`, `stdio`), bounded and trusted for nothing, and the value only
  when it may cross under a sandbox's rules: `{:ok, :hello_world}` comes back as its
  `inspected` text, with `value: nil`, and does not make the atom here. See `Ampule.Eval`.

  ## Where to read on

    * `Ampule.Container` - what a container is, its node, the code it sees, closures,
      owners and orphan containers, timeouts
    * `Ampule.Sandbox` - sandboxes: containers for code you do not trust
    * `Ampule.Eval` - untrusted source text evaluated in sandboxes, sessions, limits
    * `Ampule.Pool` and `map/3` - containers booted ahead, and many calls at once
    * `Ampule.Grade` - a project's ExUnit tests run in a sandbox, per-test results as data
    * `Ampule.Cluster` - containers on other hosts of an Erlang cluster
    * `Ampule.SystemContainer` - whole distributions from LXC templates, and console
      flow control
    * `Ampule.Error` - every error reason and what it means
    * [the host guide](host.md) (`docs/host.md`) - setting up the host, running without
      root, configuration, logs
    * [the protocol](protocol.md) (`docs/protocol.md`) - what the port program speaks
  """

  import Kernel, except: [spawn: 1]

  alias Ampule.{Call, Container, Containers, Options}

  @default_timeout Call.default_timeout()

  @typedoc "A function to run: `{module, function, arguments}`."
  @type mfa_tuple :: {module, atom, [term]}

  @typedoc """
  What a container runs: `{module, function, arguments}` or a function of no arguments
  (see "Closures" in `Ampule.Container`).
  """
  @type callable :: mfa_tuple | (() -> term)

  @typedoc """
  How a system container's console output reaches its owner (see "Console flow control" in
  `Ampule.SystemContainer`).
  """
  @type console_mode :: boolean | :once | integer

  @typedoc "See \"Error reasons\" in `Ampule.Error`."
  @type reason :: Ampule.Error.reason()

  ## Running code

  @doc """
  Runs `{module, function, args}` (or a function of no arguments, see "Closures" in
  `Ampule.Container`) in a
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
      `Ampule.Pool`); only `:timeout`, `:output` and `:max_output` may go with it
    * `:output`, `:max_output` - what the call prints, in a sandbox (see `call/3`)
    * every option of `start/1` (`:on`, `:sandbox`, `:boot_timeout`, `:memory`, ...).
  """
  @spec call(callable, Container.t() | keyword) :: term
  def call(what, target) when is_struct(target, Container) or is_list(target),
    do: Call.call!(what, target)

  @doc """
  Runs `{module, function, args}` in `container`, waiting at most `timeout` milliseconds
  (or `:infinity`), or with options.

  Returns the function's result. If it raises, throws or exits, so does this call (the
  exception keeps the container's stacktrace). If no result comes within `timeout`, the
  process running the function in the container is killed, and `Ampule.Error` is raised
  with reason `:timeout`; if the container's node is gone, with `:noconnection`.

      container = Ampule.spawn()
      Ampule.call({String, :upcase, ["ampule"]}, container, 1_000)
      #=> "AMPULE"

  ## Options (a keyword list instead of `timeout`)

    * `:timeout` - as above (default #{@default_timeout})
    * `:output` - where what the call prints goes, in a sandbox (see "Output" in
      `Ampule.Sandbox`): `:log` (the default: the sandbox's log, as always), `:capture`
      (this returns `{value, output}`, `output` a binary, as `System.cmd/3` returns its
      output beside the status), `{:stream, pid}` or `{:stream, pid, active}` (`pid` is sent
      the output while the code runs, see `async_call/3`)
    * `:max_output` - the most bytes the call may print with `:capture` or `:stream`
      (default 1 MiB); past it the call is killed with `{:output_limit, max}`

  A failed call raises as above, and its output is lost: `async_call/3` with `yield/2`
  (or `Ampule.Call.capture/3`) returns the output so far with the failure.

      Ampule.call(fn -> IO.puts("hi"); 42 end, sandbox, output: :capture)
      #=> {42, "hi\n"}
  """
  @spec call(callable, Container.t(), timeout | keyword) :: term
  def call(what, %Container{} = container, timeout_or_opts),
    do: Call.call!(what, container, timeout_or_opts)

  @doc """
  Runs a block of code in a container: the code itself travels, quoted, with the values of
  the variables it uses, and is evaluated there as iex would. For code that lives only in
  this node's memory, which a closure cannot carry (see "Code in containers" in
  `Ampule.Container`): a script
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
    Ampule.Run.quoted(opts, block, __CALLER__)
  end

  @doc "As `run/1`, in `target`: a container, or a keyword list of `call/2` options."
  defmacro run(target, opts, do_block) when is_list(opts) and is_list(do_block),
    do: Ampule.Run.quoted_with(target, opts ++ do_block, __CALLER__)

  @doc false
  defmacro run(target, opts) when is_list(opts),
    do: Ampule.Run.quoted_with(target, opts, __CALLER__)

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
  def cast(what, %Container{} = container, timeout \\ :infinity),
    do: Call.cast(container, Call.callable!(what), Options.timeout!(timeout, :timeout))

  @doc """
  Starts `{module, function, args}` in `container` and returns at once; `yield/2` awaits
  the result.

      call = Ampule.async_call({:lists, :seq, [1, 3]}, container)
      # ... other work ...
      Ampule.yield(call, 1_000)
      #=> {:ok, [1, 2, 3]}

  The call belongs to the calling process: only it can `yield/2`, and if it exits, the
  remote process is killed.

  In a sandbox, `opts` say where the call's output goes (see "Output" in `Ampule.Sandbox`):
  `output: :log` (the default), `output: :capture` (then `yield/2` returns `{result,
  output}`: the output so far, even when the call failed), `output: {:stream, pid}` or
  `{:stream, pid, active}`; and `max_output:` (bytes, default 1 MiB). A stream's receiver
  gets `{:ampule_output, call, bytes}` while the code runs, `call` being what this
  returns, and `{:ampule_output_passive, call}` when its count of chunks (`active`,
  default 100; `true`, `false`, `:once` or a count, as a socket's) is spent: it re-arms
  with `output_active/2`. A receiver that does not take its output stops the printing
  processes (their writes wait), never this node's memory.

      call = Ampule.async_call(fn -> IO.puts("working"); 42 end, sandbox, output: {:stream, self()})
      receive do: ({:ampule_output, ^call, bytes} -> bytes)
      #=> "working\n"
      Ampule.yield(call)
      #=> {:ok, 42}
  """
  @spec async_call(callable, Container.t(), keyword) :: Call.t()
  def async_call(what, %Container{} = container, opts \\ []),
    do: Call.async(container, Call.callable!(what), Call.output!(opts))

  @doc """
  Waits at most `timeout` milliseconds (default #{@default_timeout}) for the result of
  `async_call/2`.

  Returns `{:ok, result}`, or `{:error, reason}` where reason is `:timeout` (the remote
  process was killed), `{:exception, exception, stacktrace}`, `{:throw, value}`,
  `{:exit, reason}` or `:noconnection` (see "Error reasons" in `Ampule.Error`). A call is
  yielded once. A call made with `output: :capture` gives `{that, output}`.
  """
  @spec yield(Call.t(), timeout) :: {:ok, term} | {:error, reason} | {Call.result(), binary}
  def yield(%Call{} = call, timeout \\ @default_timeout),
    do: Call.await(call, Options.timeout!(timeout, :timeout))

  @doc """
  Sets how a call's streamed output reaches its receiver (`async_call/3` with `output:
  {:stream, pid}`), as `:inet.setopts(socket, active: mode)` does: `true`, `false`,
  `:once`, or an integer added to the count of chunks still to send.
  """
  @spec output_active(Call.t(), boolean | :once | integer) :: :ok
  def output_active(%Call{} = call, mode), do: Call.output_active(call, mode)

  @doc """
  Evaluates Elixir source text in a sandbox and returns what it gave: an
  `Ampule.Eval.Success` (the value, its `inspect/2` text made in the sandbox, and what it
  printed) or an `Ampule.Eval.Failure` (its type, a message as iex shows it, and what it
  printed until then).

      Ampule.eval_string(~S[IO.puts("Hello world!")])
      #=> %Ampule.Eval.Success{value: :ok, inspected: ":ok", stdio: "Hello world!\\n"}

      Ampule.eval_string("1 +", timeout: 1_000).type
      #=> :parsing

  In a fresh sandbox by default (with `start/1`'s options), in a pool's (`pool:`), or in
  a sandbox you hold (`container:`), which keeps bindings and modules from one
  evaluation to the next as iex does. Limits: `:timeout`, `:max_heap_size`,
  `:max_reductions`, `:max_output` and `start/1`'s `:memory`. See `Ampule.Eval` for the
  options, sessions, and what crosses back.
  """
  @spec eval_string(String.t(), keyword) :: Ampule.Eval.Success.t() | Ampule.Eval.Failure.t()
  def eval_string(source, opts \\ []), do: Ampule.Eval.string(source, opts)

  @doc """
  As `eval_string/2`, for Elixir's quoted form (`quote do ... end`,
  `Code.string_to_quoted!/1`): the quoted form travels to the sandbox, which evaluates
  it there.

      Ampule.eval_quoted(quote(do: Enum.sum(1..10)), pool: MyApp.Sandboxes).value
      #=> 55
  """
  @spec eval_quoted(Macro.t(), keyword) :: Ampule.Eval.Success.t() | Ampule.Eval.Failure.t()
  def eval_quoted(quoted, opts \\ []), do: Ampule.Eval.quoted(quoted, opts)

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
  def multicall(what, containers, timeout \\ @default_timeout) when is_list(containers),
    do: Call.multicall(Call.callable!(what), containers, Options.timeout!(timeout, :timeout))

  ## Containers

  @doc """
  Makes a container and returns it, raising `Ampule.Error` if it cannot.

      container = Ampule.spawn()
      container.nodename
      #=> :"a-k3x9-1@10.213.57.2"

  Takes the options of `start/1`.
  """
  @spec spawn(keyword) :: Container.t()
  def spawn(opts \\ []), do: Containers.spawn!(opts)

  @doc """
  Makes a container and returns `{:ok, container}` when its node answers, or
  `{:error, reason}` (see "Error reasons" in `Ampule.Error`; a container that failed is
  already destroyed).

  The container belongs to the calling process: it is destroyed when that process exits
  (see "Orphan containers" in `Ampule.Container`). If the local node is not alive,
  distribution is started first
  (see "Distribution" in `Ampule.Container`), except for a sandbox, which needs none (its
  agent's hello is its
  readiness).

  ## Options

    * `:sandbox` - `true` for a sandbox: a node that is not distributed, without network,
      reached through an agent and trusted with nothing (see `Ampule.Sandbox`); default
      `false`, or `config :ampule, sandbox: true`
    * `:prepare` - what the container does once booted, before `start/1` returns:
      `applications:` to start, `modules:` to load, `run:` an MFA to call (see "Prepared
      containers" in `Ampule.Pool`, where it pays most); a failure destroys the container
      and returns `{:error, {:prepare_failed, why}}`. Default: nothing
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
    * `:host_code_paths` - mount and add the caller's code paths (see "Code in containers"
      in `Ampule.Container`; default `true`)
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

  And, for a container on another host of the cluster (see `Ampule.Cluster`):

    * `:on` - the node whose Ampule makes the container (default: this node's). Its
      failures are those of `start/1` there, or `{:host_down, node}` when the node cannot
      be reached.

  An unknown option or a bad value raises `ArgumentError` naming the option.
  """
  @spec start(keyword) :: {:ok, Container.t()} | {:error, reason}
  def start(opts \\ []), do: Containers.start(opts)

  @doc """
  Destroys a container: kills everything in it and removes its files, veth and address.

  Returns `:ok` once nothing of the container runs any more (its node is down), or
  `{:error, :not_found}` if it is already gone (see "Error reasons" in `Ampule.Error` for
  the port's errors).
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
  def destroy(container), do: Containers.destroy(container)

  ## System containers

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
  (no byte value is reserved or altered), #{Options.default_active()} messages at a time: then the
  owner gets `{:ampule_console_passive, container}`, and the rest waits until
  `console_active/2` re-arms it. A container that floods its console stalls there, not in
  the BEAM's memory (see "Console flow control" in `Ampule.SystemContainer`).

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
      (default `#{Options.default_active()}`): a count `n` from 1 to 32767 sends `n` messages, then
      `{:ampule_console_passive, container}`; `:once` sends one; `false` none until
      `console_active/2`; `true` all of it, with no bound on the owner's mailbox (see
      "Console flow control" in `Ampule.SystemContainer`)
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
  def create(opts \\ []), do: Ampule.System.create(opts)

  @doc "Like `create/1`, returning `{:ok, container}` or `{:error, reason}`."
  @spec create_container(keyword) :: {:ok, Ampule.SystemContainer.t()} | {:error, reason}
  def create_container(opts \\ []), do: Ampule.System.create_container(opts)

  @doc """
  Writes `data` to a system container's console, in the seed's pipeline order
  (`"ls -al\n" |> Ampule.console(container)`). Returns `:ok`.
  """
  @spec console(iodata, Ampule.SystemContainer.t() | String.t()) :: :ok | {:error, reason}
  def console(data, container), do: Ampule.System.console(data, container)

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
  destroyed. A bad `active` raises `ArgumentError`. See "Console flow control" in
  `Ampule.SystemContainer`.
  """
  @spec console_active(Ampule.SystemContainer.t() | String.t(), console_mode) ::
          :ok | {:error, reason}
  def console_active(container, active), do: Ampule.System.console_active(container, active)

  @doc "Stops a system container; its disk stays, `restart/1` boots it again."
  @spec stop(Ampule.SystemContainer.t()) :: :ok | {:error, reason}
  def stop(container), do: Ampule.System.stop(container)

  @doc "Boots a stopped system container again (its console output resumes)."
  @spec restart(Ampule.SystemContainer.t()) :: :ok | {:error, reason}
  def restart(container), do: Ampule.System.restart(container)

  @doc "The port's view of a container: state, address, init pid."
  @spec info(Ampule.Container.t() | Ampule.SystemContainer.t() | String.t()) ::
          {:ok, map} | {:error, reason}
  def info(container), do: Containers.info(container)

  @doc """
  Returns the names of the containers the port has made and not destroyed, oldest first.
  """
  @spec list() :: {:ok, [String.t()]} | {:error, reason}
  def list, do: Containers.list()

  ## Errors

  @doc """
  Explains an error reason (see "Error reasons" in `Ampule.Error`) in a sentence or two.

      iex> Ampule.format_error(:timeout)
      "no result within the timeout; the process running the call in the container was killed"
  """
  @spec format_error(reason) :: String.t()
  defdelegate format_error(reason), to: Ampule.Error
end
