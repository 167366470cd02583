defmodule Corpus.LogParse do
  @moduledoc "Access-log lines: Regex named captures, Map and Enum summaries."

  @line ~r/^(?<ip>\d{1,3}(?:\.\d{1,3}){3}) - (?<user>\S+) \[(?<time>[^\]]+)\] "(?<method>[A-Z]+) (?<path>\S+) HTTP\/(?<version>[\d.]+)" (?<status>\d{3}) (?<bytes>\d+|-)$/

  def parse(line) do
    case Regex.named_captures(@line, line) do
      nil ->
        {:error, :malformed}

      caps ->
        {:ok,
         %{
           ip: caps["ip"],
           user: if(caps["user"] == "-", do: nil, else: caps["user"]),
           method: caps["method"],
           path: caps["path"],
           status: String.to_integer(caps["status"]),
           bytes: if(caps["bytes"] == "-", do: 0, else: String.to_integer(caps["bytes"]))
         }}
    end
  end

  def parse_all(text) do
    text
    |> String.split("\n", trim: true)
    |> Enum.reduce({[], 0}, fn line, {ok, bad} ->
      case parse(line) do
        {:ok, entry} -> {[entry | ok], bad}
        {:error, _} -> {ok, bad + 1}
      end
    end)
    |> then(fn {ok, bad} -> {Enum.reverse(ok), bad} end)
  end

  def summary(text) do
    {entries, bad} = parse_all(text)

    %{
      requests: length(entries),
      malformed: bad,
      bytes: entries |> Enum.map(& &1.bytes) |> Enum.sum(),
      by_status: entries |> Enum.map(&div(&1.status, 100)) |> Enum.frequencies(),
      top_paths:
        entries
        |> Enum.frequencies_by(& &1.path)
        |> Enum.sort_by(&{-elem(&1, 1), elem(&1, 0)})
        |> Enum.take(2),
      users:
        entries |> Enum.map(& &1.user) |> Enum.reject(&is_nil/1) |> Enum.uniq() |> Enum.sort()
    }
  end
end
