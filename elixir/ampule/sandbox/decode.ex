defmodule Ampule.Sandbox.Decode do
  @moduledoc false
  # Decodes a term a sandbox sent, trusting none of its bytes.
  #
  # `binary_to_term(bin, [:safe])` alone is not enough (docs/DESIGN "Hardening facts"): it
  # decodes funs of modules the host has (an erl_eval closure runs the sender's code once
  # called), pids, ports and references (a pid made for `nonode@nohost` names a process
  # of a host that is not distributed), and it allocates the whole term before any heap
  # limit can act. So the bytes are first scanned, without decoding anything:
  #
  #   - tags term_to_binary never writes uncompressed (compressed, atom cache, distribution
  #     header, unknown) and truncated or trailing bytes: `{:error, :bad_term}`, a broken
  #     sandbox;
  #   - funs (local and external), pids, ports, references: `{:refused, kind}`;
  #   - an atom this node does not have: `{:refused, :atoms}`;
  #   - a term whose decoded size (heap words, and the bytes of large binaries) would pass
  #     the limit: `:too_large`;
  #   - an integer of more than `max_integer_bits` bits: `{:refused, :integer}` (printing
  #     a 300 KB bignum costs its reader ~17 s of CPU: `inspect` is quadratic).
  #
  # The scan keeps a count of the terms still to read instead of recursing, so its own
  # memory is constant however deep the term nests. Only then is the term decoded, with
  # [:safe], in a throwaway process whose heap is capped (`max_heap_size`, killed on
  # excess) a little above what the scan computed: a second wall, should the estimate be
  # wrong. The decoded term is then checked to be inert data (Ampule.Sandbox.Inert), still
  # in that process; and the caller waits for all of it no longer than its call's
  # deadline, after which the process is killed: decoding counts inside the timeout.

  @typedoc "What a result may not hold (`{:result_refused, refusal}` to the caller)."
  @type refusal ::
          :atoms | :fun | :pid | :port | :reference | :integer | Ampule.Sandbox.Inert.refusal()

  @type outcome ::
          {:ok, term}
          | {:refused, refusal}
          | :too_large
          | :timeout
          | {:error, :bad_term}

  @word 8

  # The largest integer a result may hold by default: 8 KiB of digits, which `inspect`
  # prints in ~10 ms (a 300 KB one takes ~17 s).
  @max_integer_bits 65_536

  @doc "The default of `config :ampule, max_integer_bits: n`."
  def max_integer_bits, do: @max_integer_bits

  @doc """
  Decodes `bin` in a throwaway process with a capped heap; the caller gets the term (a
  copy of it) or why not. `limit` is in bytes; `deadline` a monotonic time in ms (or
  `:infinity`) by which it is over, `:timeout` if not.
  """
  @spec decode(binary, pos_integer, integer | :infinity) :: outcome
  def decode(bin, limit, deadline \\ :infinity) do
    caller = self()
    ref = make_ref()
    rules = {max_bits(), Ampule.Sandbox.Inert.allowed()}

    # The scan runs in the throwaway process too: whatever it costs stays out of the caller.
    {pid, mref} =
      :erlang.spawn_opt(
        fn -> send(caller, {ref, scan_and_decode(bin, limit, rules)}) end,
        [:monitor, max_heap_size: max_heap(limit)]
      )

    receive do
      {^ref, result} ->
        Process.demonitor(mref, [:flush])
        result

      {:DOWN, ^mref, :process, ^pid, :killed} ->
        :too_large

      {:DOWN, ^mref, :process, ^pid, _reason} ->
        {:error, :bad_term}
    after
      remaining(deadline) ->
        Process.exit(pid, :kill)
        Process.demonitor(mref, [:flush])

        receive do
          {^ref, _result} -> :ok
        after
          0 -> :ok
        end

        :timeout
    end
  end

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)

  defp max_bits do
    case Application.get_env(:ampule, :max_integer_bits, @max_integer_bits) do
      :infinity -> :infinity
      bits when is_integer(bits) and bits > 0 -> bits
    end
  end

  defp scan_and_decode(bin, limit, {max_bits, allowed}) do
    case scan_for_structs(bin, limit, max_bits) do
      {:ok, bytes, structs?} ->
        # Decoding needs at most what the scan counted, but a collection copies the live
        # term into a new heap (rounded up to the next heap size) while the old copy still
        # counts: a 4 M-word list needs 12 to 16 M words here. Allow four times that (and
        # a little) before the runtime kills this process.
        Process.flag(:max_heap_size, max_heap(bytes))

        try do
          :erlang.binary_to_term(bin, [:safe])
        rescue
          ArgumentError -> {:error, :bad_term}
        else
          term when structs? ->
            # The walk allocates as it goes, and a collection copies the live term.
            Process.flag(:max_heap_size, max_heap(2 * bytes))

            case Ampule.Sandbox.Inert.check(term, allowed) do
              :ok -> {:ok, term}
              refused -> refused
            end

          term ->
            {:ok, term}
        end

      other ->
        other
    end
  end

  defp max_heap(bytes) do
    %{size: 4 * div(bytes, @word) + 262_144, kill: true, error_logger: false}
  end

  @doc """
  Scans an encoded term without decoding it. `{:ok, bytes}` is an upper bound of what
  decoding it takes (heap and large binaries).
  """
  @spec scan(binary, non_neg_integer, pos_integer | :infinity) ::
          {:ok, non_neg_integer} | {:refused, atom} | :too_large | {:error, :bad_term}
  def scan(bin, limit, max_bits \\ @max_integer_bits)

  def scan(bin, limit, max_bits) do
    case scan_for_structs(bin, limit, max_bits) do
      {:ok, cost, _structs?} -> {:ok, cost}
      other -> other
    end
  end

  # As scan/3, and whether the term names the atom `__struct__` (only then can it hold a
  # struct, and only then is the decoded term walked: the walk's garbage makes the
  # decoding process collect, which a large term without structs need not pay).
  defp scan_for_structs(<<131, rest::binary>>, limit, max_bits),
    do: walk(rest, 1, 0, {limit, max_bits, false})

  defp scan_for_structs(_bin, _limit, _max_bits), do: {:error, :bad_term}

  # walk(rest, terms still to read, bytes so far, {limit, max_integer_bits, structs?})
  defp walk(_rest, _n, cost, {limit, _, _}) when cost > limit, do: :too_large
  defp walk(<<>>, 0, cost, {_, _, structs?}), do: {:ok, cost, structs?}
  defp walk(_rest, 0, _cost, _limit), do: {:error, :bad_term}

  # Immediates: small integers, atoms, [].
  defp walk(<<97, _, rest::binary>>, n, c, l), do: walk(rest, n - 1, c, l)
  defp walk(<<98, _::32, rest::binary>>, n, c, l), do: walk(rest, n - 1, c, l)
  defp walk(<<106, rest::binary>>, n, c, l), do: walk(rest, n - 1, c, l)

  defp walk(<<tag, len, name::binary-size(len), rest::binary>>, n, c, l)
       when tag in [115, 119],
       do: atom(name, tag, rest, n, c, l)

  defp walk(<<tag, len::16, name::binary-size(len), rest::binary>>, n, c, l)
       when tag in [100, 118],
       do: atom(name, tag, rest, n, c, l)

  # Floats: a boxed double, 2 words.
  defp walk(<<70, _::64, rest::binary>>, n, c, l), do: walk(rest, n - 1, c + 2 * @word, l)

  defp walk(<<99, _::binary-size(31), rest::binary>>, n, c, l),
    do: walk(rest, n - 1, c + 2 * @word, l)

  # A compiled pattern, `{re_pattern, _, _, _, _}`: PCRE trusts its bytes.
  defp walk(<<104, 5, tag, 10, "re_pattern", _::binary>>, _n, _c, _l) when tag in [115, 119],
    do: {:refused, :re_pattern}

  defp walk(<<104, 5, tag, 10::16, "re_pattern", _::binary>>, _n, _c, _l)
       when tag in [100, 118],
       do: {:refused, :re_pattern}

  # Containers: their elements follow, counted into n.
  defp walk(<<104, arity, rest::binary>>, n, c, l),
    do: container(rest, n - 1 + arity, c + (1 + arity) * @word, l)

  defp walk(<<105, arity::32, rest::binary>>, n, c, l),
    do: container(rest, n - 1 + arity, c + (1 + arity) * @word, l)

  defp walk(<<108, len::32, rest::binary>>, n, c, l),
    do: container(rest, n + len, c + 2 * len * @word, l)

  defp walk(<<116, arity::32, rest::binary>>, n, c, l),
    do: container(rest, n - 1 + 2 * arity, c + map_words(arity) * @word, l)

  # A list of bytes: one cons cell each.
  defp walk(<<107, len::16, _::binary-size(len), rest::binary>>, n, c, l),
    do: walk(rest, n - 1, c + 2 * len * @word, l)

  defp walk(<<109, len::32, _::binary-size(len), rest::binary>>, n, c, l),
    do: walk(rest, n - 1, c + binary_bytes(len), l)

  defp walk(<<77, len::32, bits, _::binary-size(len), rest::binary>>, n, c, l)
       when bits in 1..8 and len > 0,
       do: walk(rest, n - 1, c + binary_bytes(len) + 5 * @word, l)

  defp walk(<<110, len, sign, digits::binary-size(len), rest::binary>>, n, c, l)
       when sign in 0..1,
       do: big(digits, rest, n, c, l)

  defp walk(<<111, len::32, sign, digits::binary-size(len), rest::binary>>, n, c, l)
       when sign in 0..1,
       do: big(digits, rest, n, c, l)

  # What a sandbox's result must not hold. NEW_FUN, FUN, EXPORT; NEW_PID, PID; NEW_PORT,
  # PORT, V4_PORT; NEWER_REFERENCE, REFERENCE, NEW_REFERENCE.
  defp walk(<<tag, _::binary>>, _n, _c, _l) when tag in [112, 113, 117], do: {:refused, :fun}
  defp walk(<<tag, _::binary>>, _n, _c, _l) when tag in [88, 103], do: {:refused, :pid}
  defp walk(<<tag, _::binary>>, _n, _c, _l) when tag in [89, 102, 120], do: {:refused, :port}

  defp walk(<<tag, _::binary>>, _n, _c, _l) when tag in [90, 101, 114],
    do: {:refused, :reference}

  # Compressed (80), atom cache (82), distribution headers (68, 69), unknown tags, and
  # anything cut short.
  defp walk(_rest, _n, _c, _l), do: {:error, :bad_term}

  # Each term still to read takes at least one byte: a count beyond the bytes left is a
  # lie, found before it is walked.
  defp container(rest, n, _c, _l) when n > byte_size(rest), do: {:error, :bad_term}
  defp container(rest, n, c, l), do: walk(rest, n, c, l)

  # Digits are little-endian: the bits are those of the whole bytes below the last, and of
  # the last (a zero last byte is a bad term's, and counts as one that needs no bits).
  defp big(<<>>, rest, n, c, l), do: walk(rest, n - 1, c, l)

  defp big(digits, rest, n, c, {_limit, max_bits, _} = l) do
    len = byte_size(digits)

    if max_bits != :infinity and (len - 1) * 8 + bit_length(:binary.last(digits)) > max_bits,
      do: {:refused, :integer},
      else: walk(rest, n - 1, c + big_bytes(len), l)
  end

  defp bit_length(0), do: 0
  defp bit_length(byte), do: 1 + bit_length(Bitwise.bsr(byte, 1))

  defp atom(name, tag, rest, n, c, l) do
    encoding = if tag in [100, 115], do: :latin1, else: :utf8
    _ = :erlang.binary_to_existing_atom(name, encoding)
    walk(rest, n - 1, c, if(name == "__struct__", do: put_elem(l, 2, true), else: l))
  catch
    :error, _ -> {:refused, :atoms}
  end

  # Up to 64 bytes a binary lives on the heap (2 words and its bytes); beyond, a ProcBin
  # of 6 words and the bytes off the heap.
  defp binary_bytes(len) when len <= 64, do: 2 * @word + len + @word
  defp binary_bytes(len), do: 6 * @word + len

  # A bignum of fewer than 8 bytes fits a small integer (60 bits).
  defp big_bytes(len) when len < 8, do: 0
  defp big_bytes(len), do: (2 + div(len, @word)) * @word

  # A flatmap (up to 32 keys): header, size, keys tuple, values. A larger one is a HAMT:
  # a leaf cons per pair plus nodes, bounded here by 5 words a pair.
  defp map_words(arity) when arity <= 32, do: 4 + 2 * arity
  defp map_words(arity), do: 10 + 5 * arity
end
