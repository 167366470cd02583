defmodule Ampule.Call.Sandbox do
  @moduledoc false
  # Calls to a sandbox, from the caller's side. The path of a call:
  #
  #   caller --{:ampule_call, ...}--> channel --frame--> agent (in the sandbox)
  #   caller <--{ref, answer}-------- channel <--frame-- agent
  #
  # and no other process: the caller encodes its request, monitors the channel with an
  # alias (`ref`: late answers to an abandoned call are dropped by the runtime), and
  # decodes the answer in a throwaway process with a capped heap
  # (Ampule.Sandbox.Decode). When the channel stops, the monitor says why: the sandbox
  # exited (`:noconnection`, `:oom`) or broke the protocol (`{:protocol, detail}`).
  #
  # A channel on another host (see `Ampule.Cluster` in Ampule) costs a monitor signal each way
  # over distribution, and a demonitor each way, besides the call and its answer: on the
  # machine of docs/scaling.md they took a remote call from ~96 to ~160 µs. So there the
  # caller answers to a plain alias and monitors the channel only once the call has
  # taken `@watch_after` ms (the channel does the same with the caller): a call that
  # answers sooner sends no monitor at all, and a lost host or a dead channel is still
  # seen within that much of its loss (a monitor set on a channel already gone fires at
  # once).

  alias Ampule.{Call, Container}
  alias Ampule.Sandbox.{Budget, Decode, Frame}

  # After a timeout, how long the agent's answer to the kill is awaited (a round trip to
  # a live agent). A call returns within its timeout and this; the channel keeps waiting
  # for the answer and destroys a sandbox whose agent does not give it within 5 s.
  @confirm 50
  # How long a protocol violation waits for the channel to have destroyed the sandbox.
  @violation_wait 10_000
  # See above: how long a call to a channel on another host waits before it monitors it.
  @watch_after 2

  @spec async(Container.t(), Call.callable(), Call.output() | nil) :: Call.t()
  def async(%Container{channel: channel, max_result: max, name: name}, what, output \\ nil) do
    id = :erlang.unique_integer([:positive])
    term = :erlang.term_to_binary(what)
    # Here, the alias of a monitor (`mon` = `ref`); on another host, an alias alone.
    {ref, mon} =
      if node(channel) == node() do
        ref = :erlang.monitor(:process, channel, alias: :demonitor)
        {ref, ref}
      else
        {:erlang.alias(), nil}
      end

    call = %Call{
      transport: __MODULE__,
      ref: ref,
      mon: mon,
      owner: self(),
      target: channel,
      id: id,
      max: max,
      name: name,
      output: output
    }

    case output do
      nil ->
        send(channel, {:ampule_call, ref, id, self(), Frame.call(id, max, term)})

      %{max: max_output} ->
        # The handle in stream messages is the call as async_call/3 returned it.
        watch = Map.put(output, :handle, call)
        frame = Frame.call_output(id, max, max_output, term)
        send(channel, {:ampule_call, ref, id, self(), frame, watch})
    end

    call
  end

  @doc """
  Awaits a call made with captured output: `{result, output}`, `output` everything the
  call printed until its answer (or its end: a timeout, the sandbox gone).
  """
  @spec await_output(Call.t(), integer | :infinity) :: {Call.result(), binary}
  def await_output(%Call{ref: ref} = call, deadline) do
    Process.put({__MODULE__, ref}, [])

    try do
      result = await(call, deadline)
      {result, IO.iodata_to_binary(late_output(ref, Process.get({__MODULE__, ref})))}
    after
      Process.delete({__MODULE__, ref})
    end
  end

  # Captured output arrives on the call's alias before its answer (the channel sends
  # both, in order); it is gathered here while the answer is awaited.
  defp captured(call, ref, data) do
    key = {__MODULE__, ref}
    Process.put(key, [Process.get(key, []) | data])
    call
  end

  # Output that came after a timeout stopped waiting, before the alias went: the output
  # so far, and not left in the mailbox.
  defp late_output(ref, acc) do
    receive do
      {^ref, {:output, data}} -> late_output(ref, [acc | data])
    after
      0 -> acc
    end
  end

  @spec cast(Container.t(), Call.callable(), timeout) :: :ok
  def cast(%Container{channel: channel}, what, timeout) do
    send(channel, {:ampule_cast, Frame.cast(cast_timeout(timeout), :erlang.term_to_binary(what))})
    :ok
  end

  # 0 on the wire means never; the largest is 2^32 - 1 ms (49 days).
  defp cast_timeout(:infinity), do: 0
  defp cast_timeout(ms), do: ms |> max(1) |> min(0xFFFFFFFF)

  @doc false
  @spec await(Call.t(), integer | :infinity) :: Call.result()
  def await(%Call{ref: ref, mon: nil} = call, deadline) do
    receive do
      {^ref, {:output, data}} -> await(captured(call, ref, data), deadline)
      {^ref, answer} -> answer(call, answer, deadline)
    after
      min(@watch_after, Call.remaining(deadline)) -> await(watch(call), deadline)
    end
  end

  def await(%Call{ref: ref, mon: mon} = call, deadline) do
    receive do
      {^ref, {:output, data}} -> await(captured(call, ref, data), deadline)
      {^ref, answer} -> answer(call, answer, deadline)
      {:DOWN, ^mon, :process, _, reason} -> gone(call, {:error, down_reason(call.target, reason)})
    after
      Call.remaining(deadline) -> kill(call)
    end
  end

  defp watch(%Call{mon: nil, target: channel} = call),
    do: %{call | mon: Process.monitor(channel)}

  defp watch(call), do: call

  # The agent kills the call and answers it (as exited with `killed`, or with the result
  # that beat the kill): within a moment, the work is over when this returns.
  defp kill(%Call{target: channel, id: id} = call) do
    call = watch(call)
    send(channel, {:ampule_kill, id})
    killed(call, System.monotonic_time(:millisecond) + @confirm)
  end

  defp killed(%Call{ref: ref, mon: mon} = call, confirm) do
    receive do
      {^ref, {:output, data}} ->
        killed(captured(call, ref, data), confirm)

      {^ref, answer} ->
        case answer(call, answer, System.monotonic_time(:millisecond) + @confirm) do
          {:error, {:exit, :killed}} -> {:error, :timeout}
          other -> other
        end

      {:DOWN, ^mon, :process, _, _} ->
        gone(call, {:error, :timeout})
    after
      Call.remaining(confirm) -> done(call, {:error, :timeout})
    end
  end

  # Decoding counts inside the call's deadline (a term that is slow to decode, sent just
  # before it, would otherwise take the call past its timeout), and a large result is
  # decoded only once its bytes fit the host's result budget (Ampule.Sandbox.Budget).
  defp answer(%Call{max: max} = call, {:result, outcome, term}, deadline) do
    decoded =
      if byte_size(term) > Frame.eager() do
        case Budget.acquire(byte_size(term), deadline) do
          {:ok, held} ->
            try do
              Decode.decode(term, max, deadline)
            after
              Budget.release(held)
            end

          :timeout ->
            :timeout
        end
      else
        Decode.decode(term, max, deadline)
      end

    case decoded do
      {:ok, value} ->
        case outcome(outcome, value, call) do
          {:error, :bad_term} -> violation(call, :bad_term)
          result -> done(call, result)
        end

      {:refused, kind} ->
        done(call, {:error, {:result_refused, kind}})

      :too_large ->
        done(call, {:error, {:result_too_large, max}})

      :timeout ->
        done(call, {:error, :timeout})

      {:error, :bad_term} ->
        violation(call, :bad_term)
    end
  end

  defp answer(%Call{max: max} = call, {:too_large, _size}, _deadline),
    do: done(call, {:error, {:result_too_large, max}})

  defp answer(call, {:budget_refused, size}, _deadline),
    do: done(call, {:error, {:result_budget, size}})

  defp answer(call, {:output_limit, max}, _deadline),
    do: done(call, {:error, {:output_limit, max}})

  # The call is over: no answer may arrive after this (the alias goes), nor a :DOWN.
  defp done(%Call{mon: mon} = call, result) do
    if mon, do: Process.demonitor(mon, [:flush])
    gone(call, result)
  end

  # Over, its monitor fired or removed: only the alias is left to go (with a monitor's
  # alias, it went with the monitor).
  defp gone(%Call{ref: ref, mon: mon}, result) do
    if ref != mon, do: :erlang.unalias(ref)
    result
  end

  # A result the agent could not have made: the channel destroys the sandbox; this call
  # returns once it has (the channel's monitor fires).
  defp violation(%Call{target: channel} = call, detail) do
    %Call{mon: mon} = call = watch(call)
    send(channel, {:ampule_violation, detail})

    receive do
      {:DOWN, ^mon, :process, _, _} -> gone(call, {:error, {:protocol, detail}})
    after
      @violation_wait -> done(call, {:error, {:protocol, detail}})
    end
  end

  # A channel on another host whose connection was lost: the host is gone (or cut off).
  defp down_reason(channel, :noconnection) when node(channel) != node(),
    do: {:host_down, node(channel)}

  defp down_reason(_channel, {:shutdown, reason}), do: reason
  defp down_reason(_channel, _reason), do: :noconnection

  # What the agent says about a call that did not return, with shapes checked here, since
  # they come from the sandbox. A raise is described by the agent as `{Module, Message,
  # Stacktrace}` (binaries: see Ampule.RemoteError); a throw and an exit are
  # `{Value, Stacktrace}`, and their values were checked as data like any result.
  defp outcome(0, value, _call), do: {:ok, value}

  defp outcome(1, {module, message, stacktrace}, call)
       when is_binary(module) and is_binary(message) do
    stacktrace = stacktrace(stacktrace, [])

    error = %Ampule.RemoteError{
      module: text(module, 255),
      message: text(message, 16_387),
      stacktrace: stacktrace,
      container: call.name
    }

    {:error, {:exception, error, stacktrace}}
  end

  defp outcome(2, {value, _stacktrace}, _call), do: {:error, {:throw, value}}
  defp outcome(3, {reason, _stacktrace}, _call), do: {:error, {:exit, reason}}
  defp outcome(_outcome, _term, _call), do: {:error, :bad_term}

  # Text from the sandbox, as valid UTF-8 of at most `max` bytes: a cut character at the
  # end is dropped, and bytes that are not UTF-8 are shown escaped.
  defp text(bytes, max) do
    bytes = if byte_size(bytes) > max, do: binary_part(bytes, 0, max), else: bytes

    case :unicode.characters_to_binary(bytes) do
      valid when is_binary(valid) -> valid
      {:incomplete, valid, _rest} -> valid
      {:error, _valid, _rest} -> inspect(bytes, binaries: :as_binaries, limit: :infinity)
    end
  end

  # A stack trace keeps only frames of the shape `{module, function, arity, location}`
  # (the agent sends the names as binaries), with names that are atoms here already (a
  # frame of a module only the sandbox has is dropped: its atoms are not made), and
  # locations `file` and `line`. Above all it drops `error_info`, which names a module and
  # function that Exception.normalize/3 and formatting would call here, with arguments
  # the sandbox chose.
  defp stacktrace([{m, f, arity, location} | rest], acc)
       when is_binary(m) and is_binary(f) and is_integer(arity) and arity >= 0 and
              is_list(location) do
    case {existing_atom(m), existing_atom(f)} do
      {{:ok, m}, {:ok, f}} -> stacktrace(rest, [{m, f, arity, location(location, [])} | acc])
      _ -> stacktrace(rest, acc)
    end
  end

  defp stacktrace([_other | rest], acc), do: stacktrace(rest, acc)
  defp stacktrace(_end, acc), do: Enum.reverse(acc)

  defp existing_atom(name) do
    {:ok, String.to_existing_atom(name)}
  rescue
    ArgumentError -> :error
  end

  defp location([{:file, file} | rest], acc) when is_list(file) do
    if :io_lib.printable_unicode_list(file),
      do: location(rest, [{:file, file} | acc]),
      else: location(rest, acc)
  end

  defp location([{:line, line} = entry | rest], acc) when is_integer(line) and line >= 0,
    do: location(rest, [entry | acc])

  defp location([_other | rest], acc), do: location(rest, acc)
  defp location(_end, acc), do: Enum.reverse(acc)
end
