defmodule Corpus.TemplateTest do
  use ExUnit.Case, async: true
  alias Corpus.Template.Mail

  test "plain substitution" do
    assert Mail.greeting(%{name: "ann"}) == "Hello ann!"
  end

  test "a filter" do
    assert Mail.shout(%{name: "ann"}) == "ANN!!"
  end

  test "chained filters that commute" do
    assert Mail.initial(%{name: "ann"}) == "A."
  end

  test "two variables" do
    assert Mail.two(%{a: 1, b: "  x "}) == "1 and x"
  end

  test "chained filters in order (fails: applied in reverse)" do
    assert Mail.odd(%{name: "abc"}) == "c"
  end

  test "a missing assign raises" do
    assert_raise KeyError, fn -> Mail.greeting(%{}) end
  end
end
