defmodule Ampule.Port.Console do
  @moduledoc false
  # Console flow control of one system container: the owner's `:active` mode and the
  # chunks that wait for it (see "Console flow control" in Ampule's docs). The same flow
  # paces a sandbox call's streamed output (Ampule.Sandbox.Channel, "Output" in
  # Ampule.Sandbox), whose window is the agent's instead of the port's.
  #
  # Pure: every function returns what the owner is to get now, in order, as a list of
  # `{:data, bytes}` and `:passive`, and the new flow. Ampule.Port sends them with
  # `send_to/2` and acknowledges to the port program only the bytes sent, so a passive
  # owner stops the port after its window (256 KiB): what waits here is bounded by that
  # window, and the owner's mailbox by its count.
  #
  # `active` is `true`, `false`, `:once`, or a positive count of chunks still to send; a
  # count that reaches 0 becomes `false` and tells the owner (`:passive`), as `{:active, n}`
  # sockets do. `:once` ends without a word, as for sockets.

  # The most console bytes the port sends in one event (one read).
  @chunk 16 * 1024

  defstruct active: false, buffer: :queue.new()

  @type mode :: boolean | :once | integer
  @type out :: {:data, binary} | :passive
  @type t :: %__MODULE__{active: boolean | :once | pos_integer, buffer: :queue.queue(binary)}

  @spec new(mode) :: t
  def new(active), do: %__MODULE__{active: active}

  @doc "Sets the mode as `:inet.setopts/2` sets `:active`; an integer is added to the count."
  @spec set_active(t, mode) :: {[out], t}
  def set_active(flow, active) when is_boolean(active) or active == :once,
    do: deliver(%{flow | active: active})

  def set_active(flow, n) when is_integer(n) do
    count = if is_integer(flow.active), do: flow.active, else: 0

    if count + n > 0,
      do: deliver(%{flow | active: count + n}),
      else: {[:passive], %{flow | active: false}}
  end

  @doc "A chunk from the port: it waits behind any already waiting, then goes if it may."
  @spec push(t, binary) :: {[out], t}
  def push(flow, data), do: deliver(%{flow | buffer: enqueue(flow.buffer, data)})

  @doc "The bytes among `outs`: what to acknowledge to the port."
  @spec bytes([out]) :: non_neg_integer
  def bytes(outs), do: Enum.sum(for {:data, data} <- outs, do: byte_size(data))

  @doc "Chunks and bytes waiting for the owner."
  @spec waiting(t) :: {non_neg_integer, non_neg_integer}
  def waiting(flow) do
    chunks = :queue.to_list(flow.buffer)
    {length(chunks), Enum.sum(Enum.map(chunks, &byte_size/1))}
  end

  @doc "Sends `outs` to the owner of `container` (none without an owner); returns their bytes."
  @spec send_to([out], struct) :: non_neg_integer
  def send_to(outs, %{owner: owner} = container) do
    if is_pid(owner) do
      for out <- outs, do: send(owner, message(out, container))
    end

    bytes(outs)
  end

  defp message({:data, data}, container), do: {:ampule_console, container, data}
  defp message(:passive, container), do: {:ampule_console_passive, container}

  # A waiting chunk takes the next one in while both fit in one read of the port (16 KiB):
  # under load the port reads a few bytes at a time, and its window of such crumbs would
  # cost tens of thousands of terms here and as many messages later.
  defp enqueue(buffer, data) do
    case :queue.peek_r(buffer) do
      {:value, last} when byte_size(last) + byte_size(data) <= @chunk ->
        :queue.in(last <> data, :queue.drop_r(buffer))

      _ ->
        :queue.in(data, buffer)
    end
  end

  # Takes waiting chunks while the mode lets them go.
  defp deliver(flow, outs \\ [])
  defp deliver(%{active: false} = flow, outs), do: {Enum.reverse(outs), flow}

  defp deliver(flow, outs) do
    case :queue.out(flow.buffer) do
      {:empty, _} ->
        {Enum.reverse(outs), flow}

      {{:value, data}, rest} ->
        {more, active} = spend(flow.active)
        deliver(%{flow | buffer: rest, active: active}, more ++ [{:data, data} | outs])
    end
  end

  # One chunk sent: what the mode becomes, and whether the owner hears it went passive.
  defp spend(true), do: {[], true}
  defp spend(:once), do: {[], false}
  defp spend(1), do: {[:passive], false}
  defp spend(n), do: {[], n - 1}
end
