defmodule Corpus.WordFreqTest do
  use ExUnit.Case, async: true
  alias Corpus.WordFreq

  @text "The cat and the hat. The cat's hat is red; the HAT is big!"

  test "words are lowercased and split on punctuation" do
    assert WordFreq.words("Hello, World!") == ["hello", "world"]
  end

  test "apostrophes inside words stay" do
    assert "cat's" in WordFreq.words(@text)
  end

  test "counts" do
    assert WordFreq.count(@text)["the"] == 4
    assert WordFreq.count(@text)["hat"] == 3
  end

  test "top n, ties by word" do
    assert WordFreq.top(@text, 2) == [{"the", 4}, {"hat", 3}]
  end

  test "top n without stop words" do
    assert WordFreq.top(@text, 1, stop_words: true) == [{"hat", 3}]
  end

  test "longest word" do
    assert WordFreq.longest("a bb ccc dd") == "ccc"
    assert WordFreq.longest("") == nil
  end

  test "vocabulary" do
    assert WordFreq.vocabulary("a b a c") == 3
  end

  test "unicode letters" do
    assert WordFreq.words("Ça va, élève?") == ["ça", "va", "élève"]
  end

  test "histogram" do
    assert WordFreq.histogram("b a b") ==
             String.pad_trailing("a", 10) <> "*\n" <> String.pad_trailing("b", 10) <> "**"
  end
end
