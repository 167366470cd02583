defmodule Corpus.CaesarTest do
  use ExUnit.Case, async: true
  alias Corpus.Caesar

  test "shift by 3" do
    assert Caesar.shift("abc xyz", 3) == "def abc"
  end

  test "keeps case and punctuation" do
    assert Caesar.shift("Hello, World!", 13) == "Uryyb, Jbeyq!"
  end

  test "unshift undoes shift" do
    for key <- 0..30,
        do: assert(Caesar.unshift(Caesar.shift("Attack at dawn", key), key) == "Attack at dawn")
  end

  test "negative keys" do
    assert Caesar.shift("a", -1) == "z"
  end

  test "vigenere" do
    assert Caesar.vigenere("attackatdawn", "lemon") == "lxfopvefrnhr"
    assert Caesar.vigenere("lxfopvefrnhr", "lemon", -1) == "attackatdawn"
  end

  test "crack finds the key" do
    plain = "the quick brown fox jumps over the lazy dog and then sleeps in the sun"
    assert {7, ^plain} = Caesar.crack(Caesar.shift(plain, 7))
  end

  test "score favours english" do
    assert Caesar.score("the tea") > Caesar.score("qzx jkv")
  end
end
