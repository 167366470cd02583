defmodule Corpus.WordFreq do
  @moduledoc "Word frequencies of a text: String, Regex and Enum."

  @stop ~w(a an and the of to in is it)

  def words(text) do
    text
    |> String.downcase()
    |> then(&Regex.scan(~r/[\p{L}']+/u, &1))
    |> List.flatten()
    |> Enum.map(&String.trim(&1, "'"))
    |> Enum.reject(&(&1 == ""))
  end

  def count(text), do: text |> words() |> Enum.frequencies()

  def top(text, n, opts \\ []) do
    stop = if Keyword.get(opts, :stop_words, false), do: @stop, else: []

    text
    |> count()
    |> Map.drop(stop)
    |> Enum.sort_by(fn {word, k} -> {-k, word} end)
    |> Enum.take(n)
  end

  def longest(text) do
    text |> words() |> Enum.max_by(&String.length/1, fn -> nil end)
  end

  def vocabulary(text), do: text |> words() |> MapSet.new() |> MapSet.size()

  def histogram(text) do
    text
    |> count()
    |> Enum.sort()
    |> Enum.map_join("\n", fn {w, k} -> String.pad_trailing(w, 10) <> String.duplicate("*", k) end)
  end
end
