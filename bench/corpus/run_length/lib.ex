defmodule Corpus.RunLength do
  @moduledoc "Run-length and delta encodings: binaries, chunking, Stream."

  def encode(""), do: ""

  def encode(text) do
    text
    |> String.graphemes()
    |> Enum.chunk_by(& &1)
    |> Enum.map_join(fn
      [c] -> c
      [c | _] = run -> "#{length(run)}#{c}"
    end)
  end

  def decode(text) do
    ~r/(\d*)(\D)/
    |> Regex.scan(text)
    |> Enum.map_join(fn
      [_, "", c] -> c
      [_, n, c] -> String.duplicate(c, String.to_integer(n))
    end)
  end

  def encode_list(list) do
    list
    |> Enum.chunk_by(& &1)
    |> Enum.map(&{hd(&1), length(&1)})
  end

  def decode_list(pairs), do: Enum.flat_map(pairs, fn {x, n} -> List.duplicate(x, n) end)

  def delta([]), do: []

  def delta([first | _] = list) do
    [first | list |> Enum.chunk_every(2, 1, :discard) |> Enum.map(fn [a, b] -> b - a end)]
  end

  def undelta([]), do: []
  def undelta([first | rest]), do: Enum.scan(rest, first, &+/2) |> then(&[first | &1])

  def bits(binary) do
    for <<b::1 <- binary>>, do: b
  end

  def compress_bits(binary), do: binary |> bits() |> encode_list()

  def ratio(text) do
    encoded = encode(text)
    if text == "", do: 1.0, else: byte_size(encoded) / byte_size(text)
  end

  def stream_encode(enum) do
    enum |> Stream.chunk_by(& &1) |> Stream.map(&{hd(&1), length(&1)})
  end
end
