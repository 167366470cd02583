defmodule Corpus.SlugifyTest do
  use ExUnit.Case, async: true
  alias Corpus.Slugify

  test "simple" do
    assert Slugify.slug("Hello World") == "hello-world"
  end

  test "accents are dropped" do
    assert Slugify.slug("Crème Brûlée à la carte") == "creme-brulee-a-la-carte"
  end

  test "punctuation collapses" do
    assert Slugify.slug("  What?! -- Yes... ") == "what-yes"
  end

  test "separator" do
    assert Slugify.slug("a b c", separator: "_") == "a_b_c"
  end

  test "truncation at a word boundary" do
    assert Slugify.slug("the quick brown fox", max: 12) == "the-quick"
    assert Slugify.slug("abcdefghijkl", max: 5) == "abcde"
  end

  test "title case" do
    assert Slugify.title("the lord of the rings") == "The Lord of the Rings"
  end

  test "unique" do
    assert Slugify.unique("post", []) == "post"
    assert Slugify.unique("post", ["post", "post-2"]) == "post-3"
  end
end
