defmodule Corpus.Anagram do
  @moduledoc "Anagrams, palindromes and letter puzzles: Enum.group_by, sort, MapSet."

  def key(word), do: word |> String.downcase() |> String.graphemes() |> Enum.sort() |> Enum.join()

  def anagram?(a, b), do: String.downcase(a) != String.downcase(b) and key(a) == key(b)

  def find(word, candidates), do: Enum.filter(candidates, &anagram?(word, &1))

  def groups(words) do
    words
    |> Enum.group_by(&key/1)
    |> Map.values()
    |> Enum.filter(&(length(&1) > 1))
    |> Enum.map(&Enum.sort/1)
    |> Enum.sort()
  end

  def palindrome?(text) do
    clean = text |> String.downcase() |> String.replace(~r/[^a-z0-9]/, "")
    clean == String.reverse(clean)
  end

  def can_make?(word, letters) do
    need = word |> String.graphemes() |> Enum.frequencies()
    have = letters |> String.graphemes() |> Enum.frequencies()
    Enum.all?(need, fn {l, n} -> Map.get(have, l, 0) >= n end)
  end

  def words_from(letters, dictionary) do
    dictionary
    |> Enum.filter(&can_make?(&1, letters))
    |> Enum.sort_by(&{-String.length(&1), &1})
  end

  def pangram?(text) do
    letters =
      text
      |> String.downcase()
      |> String.graphemes()
      |> Enum.filter(&(&1 =~ ~r/^[a-z]$/))
      |> MapSet.new()

    MapSet.size(letters) == 26
  end

  def isogram?(word) do
    letters = word |> String.downcase() |> String.replace(~r/[\s-]/, "") |> String.graphemes()
    length(letters) == length(Enum.uniq(letters))
  end
end
