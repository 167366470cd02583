defmodule Corpus.CsvLite do
  @moduledoc "A small CSV reader: quoted fields, escaped quotes, headers, typed columns."

  @field ~r/\G(?:"((?:[^"]|"")*)"|([^,"]*))(,|$)/

  def parse_line(line) do
    parse_fields(line, 0, [])
  end

  defp parse_fields(line, offset, acc) do
    case Regex.run(@field, line, offset: offset, return: :index) do
      [{start, len} | groups] ->
        field = field(line, groups)
        stop = start + len

        cond do
          stop >= byte_size(line) and len > 0 and :binary.last(line) == ?, ->
            Enum.reverse(["", field | acc])

          stop >= byte_size(line) ->
            Enum.reverse([field | acc])

          true ->
            parse_fields(line, stop, [field | acc])
        end

      nil ->
        {:error, {:bad_line, line}}
    end
  end

  defp field(line, [{qs, ql} | _]) when qs >= 0,
    do: line |> binary_part(qs, ql) |> String.replace(~s(""), ~s("))

  defp field(line, [_, {s, l} | _]), do: binary_part(line, s, l)

  def parse(text) do
    text |> String.split(~r/\r?\n/, trim: true) |> Enum.map(&parse_line/1)
  end

  def to_maps(text, types \\ %{}) do
    [header | rows] = parse(text)

    Enum.map(rows, fn row ->
      header |> Enum.zip(row) |> Map.new(fn {k, v} -> {k, cast(v, Map.get(types, k))} end)
    end)
  end

  defp cast(v, :integer), do: String.to_integer(v)
  defp cast(v, :float), do: v |> Float.parse() |> elem(0)
  defp cast(v, :boolean), do: v in ["true", "yes", "1"]
  defp cast(v, nil), do: v

  def sum_column(text, column) do
    text |> to_maps(%{column => :integer}) |> Enum.map(& &1[column]) |> Enum.sum()
  end
end
