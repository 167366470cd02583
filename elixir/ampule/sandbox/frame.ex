defmodule Ampule.Sandbox.Frame do
  @moduledoc false
  # The frames of the agent channel (docs/protocol.md, "The agent channel (sandboxes)"),
  # framing apart from meaning: what the host writes, and a pure parse of what it reads.
  # Parsing looks at fixed fields with binary patterns only; a result's term is left as
  # bytes, for Ampule.Sandbox.Decode in the caller's own throwaway process.

  @version 3

  # Results up to this many bytes (a whole frame) come at once; a larger one is announced
  # (6) and sent when the host says so (4), once it fits the host's result budget
  # (Ampule.Sandbox.Budget).
  @eager 65_536

  # A call's output: the most bytes the agent sends ahead of the host's acknowledgements
  # (6). More unacknowledged than this is a violation, so this bounds what the host holds.
  @window 65_536

  # The largest header the host writes or reads before a term: <<1, Id:64, Max:64>>.
  @header 17

  @doc "Bytes a frame may take beyond its term (the socket's `packet_size` is max + this)."
  def header_size, do: @header

  @doc "The hello the agent must send first."
  def hello, do: <<0, @version::16>>

  @doc "The largest frame the agent sends without announcing it first."
  def eager, do: @eager

  @spec call(non_neg_integer, pos_integer, binary) :: iodata
  def call(id, max, term), do: [<<1, id::64, max::64>> | term]

  @doc "A call whose output comes to the host (7), at most `max_output` bytes of it."
  @spec call_output(non_neg_integer, pos_integer, pos_integer, binary) :: iodata
  def call_output(id, max, max_output, term),
    do: [<<5, id::64, max::64, max_output::64>> | term]

  @doc "Tells the agent the host took `bytes` more of call `id`'s output."
  @spec ack(non_neg_integer, non_neg_integer) :: binary
  def ack(id, bytes), do: <<6, id::64, bytes::32>>

  @doc "Output bytes the agent sends before the host acknowledges them."
  def window, do: @window

  @doc "A cast; `timeout` in ms, 0 for never."
  @spec cast(non_neg_integer, binary) :: iodata
  def cast(timeout, term), do: [<<2, timeout::32>> | term]

  @spec kill(non_neg_integer) :: binary
  def kill(id), do: <<3, id::64>>

  @doc "Lets the agent send the result it announced for `id`."
  @spec go(non_neg_integer) :: binary
  def go(id), do: <<4, id::64>>

  @type parsed ::
          {:result, non_neg_integer, 0..3, binary}
          | {:too_large, non_neg_integer, non_neg_integer}
          | {:ready, non_neg_integer, non_neg_integer}
          | {:output, non_neg_integer, binary}
          | {:output_limit, non_neg_integer}
          | {:error, :bad_frame}

  @doc """
  Parses a frame from the agent after its hello: a result, a too-large notice, the
  announcement of a large result, output of a call (its bytes left as they are) or a
  call's output limit. Anything
  else (an unknown type, a short body, an unknown outcome, a second hello) is
  `{:error, :bad_frame}`.
  """
  @spec parse(binary) :: parsed
  def parse(<<4, id::64, outcome, term::binary>>) when outcome in 0..3,
    do: {:result, id, outcome, term}

  def parse(<<5, id::64, size::64>>), do: {:too_large, id, size}
  def parse(<<6, id::64, size::64>>), do: {:ready, id, size}
  def parse(<<7, id::64, data::binary>>), do: {:output, id, data}
  def parse(<<8, id::64>>), do: {:output_limit, id}
  def parse(_frame), do: {:error, :bad_frame}
end
