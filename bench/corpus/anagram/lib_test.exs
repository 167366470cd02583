defmodule Corpus.AnagramTest do
  use ExUnit.Case, async: true
  alias Corpus.Anagram

  test "anagrams" do
    assert Anagram.find("listen", ~w(enlists google inlets banana silent Listen)) ==
             ~w(inlets silent)
  end

  test "a word is not its own anagram" do
    refute Anagram.anagram?("Stop", "stop")
  end

  test "groups" do
    assert Anagram.groups(~w(tea eat ate tan nat bat)) == [~w(ate eat tea), ~w(nat tan)]
  end

  test "palindromes" do
    assert Anagram.palindrome?("A man, a plan, a canal: Panama")
    refute Anagram.palindrome?("hello")
  end

  test "words from letters" do
    assert Anagram.words_from("tacos", ~w(cat coats taco cost zoo act)) ==
             ~w(coats cost taco act cat)
  end

  test "pangram" do
    assert Anagram.pangram?("The quick brown fox jumps over the lazy dog")
    refute Anagram.pangram?("abc")
  end

  test "isogram" do
    assert Anagram.isogram?("six-year-old")
    refute Anagram.isogram?("isograms")
  end
end
