defmodule Corpus.BuggyDates do
  @moduledoc """
  Calendar arithmetic written by hand, with a bug on purpose: the leap-year rule forgets
  the 400-year exception, so 2000 is not a leap year here (the grader must see failures).
  """

  # Bug: 2000 is a leap year.
  def leap?(year), do: rem(year, 4) == 0 and rem(year, 100) != 0

  def days_in_month(year, 2), do: if(leap?(year), do: 29, else: 28)
  def days_in_month(_year, month) when month in [4, 6, 9, 11], do: 30
  def days_in_month(_year, month) when month in 1..12, do: 31

  def day_of_year(year, month, day) do
    Enum.sum(for m <- 1..(month - 1)//1, do: days_in_month(year, m)) + day
  end

  def add_days({y, m, d}, 0), do: {y, m, d}

  def add_days({y, m, d}, n) when n > 0 do
    cond do
      d < days_in_month(y, m) -> add_days({y, m, d + 1}, n - 1)
      m < 12 -> add_days({y, m + 1, 1}, n - 1)
      true -> add_days({y + 1, 1, 1}, n - 1)
    end
  end

  def weekday({y, m, d}) do
    # Sakamoto's method, 0 = Sunday.
    t = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4}
    y = if m < 3, do: y - 1, else: y
    rem(y + div(y, 4) - div(y, 100) + div(y, 400) + elem(t, m - 1) + d, 7)
  end

  def format({y, m, d}) do
    Enum.map_join([y, m, d], "-", &(&1 |> Integer.to_string() |> String.pad_leading(2, "0")))
  end

  def days_between(a, b) do
    Date.diff(apply(Date, :new!, Tuple.to_list(b)), apply(Date, :new!, Tuple.to_list(a)))
  end
end
