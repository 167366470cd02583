defmodule Corpus.BuggyDatesTest do
  use ExUnit.Case, async: true
  alias Corpus.BuggyDates, as: D

  test "ordinary leap years" do
    assert D.leap?(2024)
    refute D.leap?(2023)
    refute D.leap?(1900)
  end

  test "2000 was a leap year (fails)" do
    assert D.leap?(2000)
  end

  test "days in february 2000 (fails)" do
    assert D.days_in_month(2000, 2) == 29
  end

  test "day of year" do
    assert D.day_of_year(2023, 3, 1) == 60
    assert D.day_of_year(2024, 12, 31) == 366
  end

  test "adding days crosses months and years" do
    assert D.add_days({2023, 12, 30}, 3) == {2024, 1, 2}
    assert D.add_days({2024, 2, 28}, 1) == {2024, 2, 29}
  end

  test "agrees with Date over 2000 (fails)" do
    assert D.add_days({2000, 2, 28}, 1) == {2000, 2, 29}
  end

  test "weekday" do
    assert D.weekday({2024, 1, 1}) == 1
  end

  test "format" do
    assert D.format({2024, 3, 5}) == "2024-03-05"
  end

  test "days between" do
    assert D.days_between({2024, 1, 1}, {2024, 3, 1}) == 60
  end
end
