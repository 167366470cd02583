defmodule Corpus.Caesar do
  @moduledoc "Caesar and Vigenère ciphers, and breaking a Caesar cipher by letter frequency."

  @english ~c"etaoinshrdlcumwfgypbvkjxqz"

  def shift(text, key) do
    text |> String.to_charlist() |> Enum.map(&rotate(&1, key)) |> List.to_string()
  end

  def unshift(text, key), do: shift(text, -key)

  defp rotate(c, key) when c in ?a..?z, do: ?a + Integer.mod(c - ?a + key, 26)
  defp rotate(c, key) when c in ?A..?Z, do: ?A + Integer.mod(c - ?A + key, 26)
  defp rotate(c, _key), do: c

  def vigenere(text, key, direction \\ 1) do
    keys = key |> String.downcase() |> String.to_charlist() |> Enum.map(&((&1 - ?a) * direction))

    {out, _} =
      text
      |> String.to_charlist()
      |> Enum.map_reduce(Stream.cycle(keys) |> Enum.take(String.length(text)), fn
        c, [k | ks] when c in ?a..?z or c in ?A..?Z -> {rotate(c, k), ks}
        c, ks -> {c, ks}
      end)

    List.to_string(out)
  end

  def score(text) do
    freq = text |> String.downcase() |> String.to_charlist() |> Enum.frequencies()

    @english
    |> Enum.with_index()
    |> Enum.reduce(0, fn {c, i}, acc -> acc + Map.get(freq, c, 0) * (26 - i) end)
  end

  def crack(ciphertext) do
    0..25
    |> Enum.map(fn key -> {key, unshift(ciphertext, key)} end)
    |> Enum.max_by(fn {_key, plain} -> score(plain) end)
  end
end
