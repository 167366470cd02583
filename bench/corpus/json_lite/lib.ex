defmodule Corpus.JsonLite do
  @moduledoc "A JSON encoder and a small decoder: iodata, binaries, recursion."

  def encode(value), do: value |> enc() |> IO.iodata_to_binary()

  defp enc(nil), do: "null"
  defp enc(true), do: "true"
  defp enc(false), do: "false"
  defp enc(n) when is_integer(n), do: Integer.to_string(n)
  defp enc(f) when is_float(f), do: Float.to_string(f)
  defp enc(a) when is_atom(a), do: a |> Atom.to_string() |> enc()
  defp enc(s) when is_binary(s), do: [?", escape(s), ?"]
  defp enc(l) when is_list(l), do: [?[, l |> Enum.map(&enc/1) |> Enum.intersperse(?,), ?]]

  defp enc(%{} = m) do
    pairs = m |> Enum.sort() |> Enum.map(fn {k, v} -> [enc(to_string(k)), ?:, enc(v)] end)
    [?{, Enum.intersperse(pairs, ?,), ?}]
  end

  defp escape(s) do
    for <<c::utf8 <- s>>, into: "" do
      case c do
        ?" -> ~S(\")
        ?\\ -> ~S(\\)
        ?\n -> ~S(\n)
        ?\t -> ~S(\t)
        c when c < 0x20 -> "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
        c -> <<c::utf8>>
      end
    end
  end

  def decode(text) do
    case value(String.trim_leading(text)) do
      {v, rest} -> if String.trim(rest) == "", do: {:ok, v}, else: {:error, :trailing}
      :error -> {:error, :invalid}
    end
  end

  defp value("null" <> r), do: {nil, r}
  defp value("true" <> r), do: {true, r}
  defp value("false" <> r), do: {false, r}
  defp value("\"" <> r), do: string(r, "")
  defp value("[" <> r), do: list(String.trim_leading(r), [])

  defp value(r) do
    case Regex.run(~r/^-?\d+(\.\d+)?/, r) do
      [n] -> {number(n), binary_part(r, byte_size(n), byte_size(r) - byte_size(n))}
      [n, _] -> {number(n), binary_part(r, byte_size(n), byte_size(r) - byte_size(n))}
      nil -> :error
    end
  end

  defp number(n),
    do: if(String.contains?(n, "."), do: String.to_float(n), else: String.to_integer(n))

  defp string("\"" <> r, acc), do: {acc, r}
  defp string("\\n" <> r, acc), do: string(r, acc <> "\n")
  defp string("\\\"" <> r, acc), do: string(r, acc <> "\"")
  defp string(<<c::utf8, r::binary>>, acc), do: string(r, acc <> <<c::utf8>>)
  defp string("", _acc), do: :error

  defp list("]" <> r, acc), do: {Enum.reverse(acc), r}

  defp list(r, acc) do
    with {v, rest} <- value(r) do
      case String.trim_leading(rest) do
        "," <> more -> list(String.trim_leading(more), [v | acc])
        "]" <> more -> {Enum.reverse([v | acc]), more}
        _ -> :error
      end
    end
  end
end
