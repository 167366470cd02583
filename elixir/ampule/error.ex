defmodule Ampule.Error do
  @moduledoc """
  Why Ampule failed: the reasons of `{:error, reason}`, and the exception raised by the
  functions of `Ampule` that return a bare result (`Ampule.call/1,2,3`, `Ampule.spawn/0,1`,
  `Ampule.create/1`) when Ampule itself fails: the container could not be made, the call
  timed out, the node went away.

  `reason` is one of the reasons below; `format_error/1` (and `Ampule.format_error/1`)
  explains each in a sentence or two, and `message/1` uses it. An exception raised by the
  code running in the container is re-raised as itself, not wrapped in this one.

  ## Error reasons

  Functions that return `{:error, reason}` (and this exception, raised by those that return
  a bare result) use these reasons; `format_error/1` explains each.

  Making a container (`start/1`, `spawn/1`, the anonymous `call/1,2`):

    * `{:boot_timeout, phase, log_tail}` - the container was not ready within
      `:boot_timeout`; `phase` is `:create`, `:start` or `:announce` (the node did not say
      it was up: a distribution container's node announces itself once its distribution
      runs, under its own name), or for a
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
    * `{:prepare_failed, why}` - a pool's `prepare:` failed in a container (see
      "Prepared containers" in `Ampule.Pool`): `why` is `{:application, app, reason}`,
      `{:module, module, reason}`, or the reason the `run:` call failed. The container
      was destroyed.
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
    * `{:short_names, node}` - the local node uses short names; see "Distribution" in
      `Ampule.Container`.
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

  Calls to a sandbox, besides (see `Ampule.Sandbox`):

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
    * `{:output_limit, max}` - the call printed more than `max` bytes (`:max_output`,
      with `output: :capture` or `{:stream, pid}`); it was killed, and the output holds
      its first `max` bytes. The sandbox goes on.
    * `{:protocol, detail}` - the sandbox broke the agent protocol and was destroyed
      before this was returned: `:bad_frame` (a frame of no known kind), `:unexpected_id`
      (a result or output for a call never made, or answered already), `:unexpected_output`
      (output for a call that did not ask for it), `:output_too_large` (output past the
      call's `:max_output`), `:output_window` (more output than the host acknowledged
      room for), `:unexpected_frame` (any byte
      while no call was waiting), `:frame_too_large` (a frame over the
      limit, refused before it was read), `:bad_term` (a result that is not a well-formed
      term), `:closed` (the agent closed the channel, maybe in the middle of a frame, while
      the sandbox ran on), `:unresponsive` (the agent answered no kill for 5 s, or read no
      frame for 10 s). Its owner gets `{:ampule_exit, container, {:protocol, detail}}`.

  Pools (`Ampule.Pool`, `call/2` with `:pool`): `:checkout_timeout` - no container of the
  pool came within its `:checkout_timeout`.

  Grading (`Ampule.Grade.run/2`), besides: `{:bad_grade, detail}` - the sandbox answered
  with something that is not a grade (its tested code can reach the grading's own
  processes): `detail` names the part that was wrong (`:shape`, `:test`, `:error`,
  `:text`, `:count`).

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

  Across hosts (see `Ampule.Cluster`):

    * `{:host_down, node}` - the container's host cannot be reached: its node is gone
      (its port destroyed its containers) or cut off. From calls, `start/1` and
      `destroy/1` with a container or `on:` there, and to owners as
      `{:ampule_exit, container, {:host_down, node}}`.
    * `:no_host` - a pool with `:hosts` has no host to boot on (none of them offers
      containers now).

  Managing containers: `:not_found` - no such container (already destroyed); `:booting` -
  `destroy/1` while its spawn has not answered yet (the spawn's owner exiting destroys it);
  `:closing` - the port is shutting down (its BEAM went away) and takes no new work;
  `:no_log` - the container keeps no node output to read (a system container has a
  console instead).

  Options the port refused (Ampule checks them first, so these are rare):
  `{:bad_option, key}`, `{:bad_option_value, key, value}`, `{:bad_config_key, key}`;
  `{:rootfs, message}`, `{:leases, message}` - the port could not write a container's
  directory or its address lease; `{:sudo_not_found, path}` - `config :ampule, sudo:
  true`, but there is no `sudo` (install it, then run `script/sudoers USER`).
  """

  alias Ampule.{Distribution, Options}

  defexception [:reason, :container]

  # The first atom of every reason the port program sends (`{error, Reason}`: an atom, or a
  # tuple headed by one). One table: test/ampule/tables_test.exs fails when the port
  # (`ampule_port --print-tables`) sends a reason not here, or no longer sends one that is,
  # and when `format_error/1` has no words of its own for one of them.
  @port_reasons [
    :closing,
    :name_in_use,
    :not_found,
    :booting,
    :no_log,
    :no_address,
    :leases,
    :bad_option_value,
    :boot_timeout,
    :boot_failed,
    :rootfs,
    :lxc,
    :template_unavailable,
    :unknown_template,
    :dhcp,
    :create_timeout,
    :create_failed,
    :console,
    :no_console,
    :not_system,
    :already_running,
    :stopped,
    :unknown_request,
    :bad_request,
    :bad_option,
    :bad_config_key
  ]

  @doc false
  @spec port_reasons() :: [atom]
  def port_reasons, do: @port_reasons

  @typedoc "See \"Error reasons\" above."
  @type reason ::
          :timeout
          | {:exception, Exception.t(), Exception.stacktrace()}
          | {:throw, term}
          | {:exit, term}
          | :noconnection
          | :oom
          | {:spawn_failed, term}
          | {:result_refused, Ampule.Sandbox.Decode.refusal()}
          | {:result_too_large, pos_integer}
          | {:result_budget, pos_integer}
          | {:output_limit, pos_integer}
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
          | {:prepare_failed, term}
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
          | {:bad_grade, atom}
          | {:template_unavailable, String.t(), String.t()}
          | {:unknown_template, String.t()}
          | {:create_failed, String.t()}
          | :create_timeout
          | {:dhcp, String.t()}
          | {:console, String.t()}
          | :no_console
          | :no_log
          | :not_system
          | :already_running
          | :stopped

  @type t :: %__MODULE__{reason: reason, container: String.t() | nil}

  @impl true
  def message(%__MODULE__{reason: reason, container: nil}), do: format_error(reason)

  def message(%__MODULE__{reason: reason, container: name}),
    do: "container #{name}: " <> format_error(reason)

  @doc """
  Explains an error reason (see "Error reasons") in a sentence or two.

      iex> Ampule.Error.format_error(:timeout)
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

  def format_error({:output_limit, max}) do
    "the call printed more than #{max} bytes (see the :max_output option); it was killed " <>
      "after its first #{max}"
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

  def format_error({:prepare_failed, {:application, app, reason}}),
    do:
      "the pool's prepare: could not start application #{inspect(app)} in the container " <>
        "(#{inspect(reason)}); the container was destroyed"

  def format_error({:prepare_failed, {:module, module, reason}}),
    do:
      "the pool's prepare: could not load module #{inspect(module)} in the container " <>
        "(#{inspect(reason)}); the container was destroyed"

  def format_error({:prepare_failed, reason}),
    do:
      "the pool's prepare: failed in the container: " <>
        format_error(reason) <> "; the container was destroyed"

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

  def format_error(:no_log),
    do: "the container keeps no node output to read: a system container has a console instead"

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

  def format_error({:bad_grade, detail}),
    do:
      "the grading's sandbox answered with something that is not a grade " <>
        "(#{inspect(detail)} was wrong); its tested code may have tampered with the grading"

  def format_error(reason), do: "unexpected reason: " <> inspect(reason)

  defp protocol_detail(:bad_frame), do: "a frame of no known kind"
  defp protocol_detail(:unexpected_id), do: "a result for a call it was not asked"
  defp protocol_detail(:unexpected_frame), do: "bytes sent while no call was waiting"
  defp protocol_detail(:unexpected_output), do: "output for a call that did not ask for it"
  defp protocol_detail(:output_too_large), do: "output past the call's :max_output"
  defp protocol_detail(:output_window), do: "more output than the host had room for"
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
end
