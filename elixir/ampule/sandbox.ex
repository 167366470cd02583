defmodule Ampule.Sandbox do
  @moduledoc """
  Sandboxes: containers for code you do not trust.


  A container's node is a full Erlang distribution peer of yours: code in it can
  `:erpc.call(your_node, :os, :cmd, [...])` as your BEAM's user (see "Distribution" in `Ampule.Container` and
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
    * The host reaches it through a small agent (`ampule_agent`, 21 KB of Erlang, on the
      sandbox's code path whatever `:host_code_paths` says) over a Unix socket: one frame
      per call, no process of Ampule's in between. `call/1,2,3`, `cast/3`, `async_call/2,3`,
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

  ## Output

  By default the sandbox's standard output and error (`IO.puts/1`, `:io.format/2`, crash
  reports) go to its node's output, `~/boot.log` inside the sandbox, which counts against
  its memory limit and goes with it; a boot that fails carries its last lines. They never
  reach your console. (A distribution container's calls print to the caller's group
  leader, as remote processes do.)

  A call can have what it prints instead, with `output:` (`Ampule.call/3` with options,
  `Ampule.async_call/3`, the anonymous `Ampule.call/2`, `Ampule.Call.capture/3`):

      Ampule.call(fn -> IO.puts("hi"); IO.puts(:stderr, "oops"); 42 end, sandbox, output: :capture)
      #=> {42, "hi\noops\n"}

      call = Ampule.async_call({MyApp.Job, :run, []}, sandbox, output: {:stream, self()})
      # {:ampule_output, ^call, bytes} messages while it runs, then:
      Ampule.yield(call, 60_000)

    * `:log` (the default) - as above; nothing changes.
    * `:capture` - `Ampule.call/3` returns `{value, output}` (as `System.cmd/3` returns
      its output beside the status, and `ExUnit.CaptureIO.with_io/1` beside the result),
      `Ampule.yield/2` `{result, output}`, the output so far even when the call failed,
      timed out or its sandbox died (`{:error, :oom}`); `Ampule.Call.capture/3` is the
      same in one call.
    * `{:stream, pid}`, `{:stream, pid, active}` - `pid` gets `{:ampule_output, call,
      bytes}` while the code runs (`call` is what `Ampule.async_call/3` returned), with
      the console's flow control: `active` is `true`, `false`, `:once` or a count of
      chunks (default 100), `{:ampule_output_passive, call}` says a count is spent, and
      `Ampule.output_active/2` re-arms. A receiver that does not take its chunks stops
      the printing processes (their writes wait for their io reply, as at a terminal that
      is not read), not your node's memory: a sandbox sends at most 64 KiB of a call's
      output ahead of what the receiver took. When the call answers, what its receiver
      has not taken yet (at most those 64 KiB) is sent first, then the answer. A receiver
      that exits drops the rest of that call's output; the call runs on.

  What is captured: every io request of the call's process and of every process it
  starts (they inherit its group leader, one the agent makes for the call), standard
  output and standard error (`IO.puts(:stderr, ...)`, `:io.format(:standard_error,
  ...)`: the agent routes each standard error request by its sender's group leader), in
  the order the requests came. Output is bytes: what the code wrote, exactly (a binary
  passes unchanged, even when it is not UTF-8; a list of characters goes as UTF-8); never
  decoded here. Reading standard input gives `eof`.

  `:max_output` bounds it: bytes per call, 1 MiB by default. Past it the call is killed
  and answers `{:error, {:output_limit, max}}`, with its first `max` bytes delivered; the
  sandbox goes on. Processes the call started that go on printing after its answer print
  into nothing: their requests are answered and the bytes dropped, never reaching a later
  call, the caller's mailbox or the log. A distribution container refuses `output:` with
  `ArgumentError` (its calls print to your group leader already).

  Which to choose: a distribution container when you trust the code and want a real node
  (`Node.spawn/2`, registered names, links and monitors across nodes); a sandbox when you
  do not trust the code, or need no more than calls. A sandbox boots no slower (no EPMD,
  no handshake) and a small call is no slower either (`docs/benchmarks.md`).
  `docs/security.md` sets the two threat models side by side.
  """

  # Booting a sandbox (docs/protocol.md, "`{spawn, #{sandbox => ...}}`"):
  #
  #   1. a channel (Ampule.Sandbox.Channel) listens on a fresh socket in the port's
  #      `agents_dir`;
  #   2. the port spawns the container with `sandbox => #{socket => Path}`, which it
  #      bind-mounts at /run/ampule/agent.sock; it answers once the init runs;
  #   3. the agent connects and says hello, within what is left of the boot timeout.
  #
  # Distribution is never started for a sandbox: the host needs none.

  alias Ampule.{Container, Port}
  alias Ampule.Sandbox.Channel

  @doc false
  # Boots a sandbox; `request` is the port's spawn map (see Ampule.Options).
  @spec start(pid | nil, map, pos_integer) ::
          {:ok, Container.t()} | {:error, Ampule.Error.reason()}
  def start(owner, request, max) do
    started = System.monotonic_time(:millisecond)

    with {:ok, hello} <- Port.hello(),
         {:ok, dir} <- agents_dir(hello),
         path = Path.join(dir, "#{System.unique_integer([:positive])}.sock"),
         {:ok, channel} <-
           Channel.start(
             path: path,
             max: max,
             boot_timeout: request.boot_timeout,
             uid: node_uid(hello),
             starter: self()
           ) do
      request = Map.put(request, :sandbox, %{socket: path})

      case Port.spawn_sandbox(request, owner, %{channel: channel, max_result: max}) do
        {:ok, container} ->
          left = request.boot_timeout - (System.monotonic_time(:millisecond) - started)
          # The channel's acceptor keeps the boot deadline; the margin only guards the call.
          ready(container, Channel.await_ready(channel, container.name, max(left, 0) + 5_000))

        {:error, reason} ->
          Channel.stop(channel)
          {:error, reason}
      end
    else
      {:error, {:listen, reason}} -> {:error, {:agent_socket, reason}}
      {:error, reason} -> {:error, reason}
    end
  end

  defp ready(container, :ok), do: {:ok, container}

  defp ready(%Container{name: name, channel: channel}, {:error, reason}) do
    reason =
      case reason do
        :timeout -> {:boot_timeout, :agent, log_tail(name, %{})}
        {:exited, status, info} -> {:boot_failed, status, log_tail(name, info)}
        {:protocol, _} = reason -> reason
      end

    _ = Port.destroy(name)
    Channel.stop(channel)
    {:error, reason}
  end

  # What the node printed: the exit event may carry it (the sandbox is gone by then),
  # else the port reads it from the container, which must not be destroyed yet.
  defp log_tail(_name, %{log_tail: tail}) when is_binary(tail), do: tail

  defp log_tail(name, _info) do
    case Port.request({:log_tail, name}) do
      {:ok, tail} when is_binary(tail) -> tail
      _ -> ""
    end
  end

  defp agents_dir(%{agents_dir: dir}) when is_binary(dir), do: {:ok, dir}
  defp agents_dir(_hello), do: {:error, :sandbox_unsupported}

  # The uid the agent's connection must come from: the node's uid 1000 inside, mapped
  # from the start of root's range in /etc/subuid (the port maps that range). The port
  # may say so itself (`node_uid` in its hello); nil skips the check.
  @doc false
  def node_uid(%{node_uid: uid}) when is_integer(uid), do: uid

  def node_uid(_hello) do
    with {:ok, text} <- File.read("/etc/subuid"),
         [start | _] <-
           for(
             line <- String.split(text, "\n"),
             [user, start, _count] <- [String.split(line, ":")],
             user in ["root", "0"],
             {start, ""} <- [Integer.parse(start)],
             do: start
           ) do
      start + 1000
    else
      _ -> nil
    end
  end
end
