defmodule Corpus.Slugify do
  @moduledoc "URL slugs, titles and truncation: Unicode normalisation and Regex."

  def slug(text, opts \\ []) do
    sep = Keyword.get(opts, :separator, "-")

    text
    |> String.normalize(:nfd)
    |> String.replace(~r/\p{Mn}/u, "")
    |> String.downcase()
    |> String.replace(~r/[^a-z0-9]+/, sep)
    |> String.trim(sep)
    |> truncate_at(Keyword.get(opts, :max), sep)
  end

  defp truncate_at(slug, nil, _sep), do: slug

  defp truncate_at(slug, max, sep) when byte_size(slug) <= max, do: slug |> String.trim(sep)

  defp truncate_at(slug, max, sep) do
    cut = binary_part(slug, 0, max)

    case String.split(cut, sep) do
      [single] -> single
      parts -> parts |> Enum.drop(-1) |> Enum.join(sep)
    end
  end

  @small ~w(a an and at but by for in of on or the to)

  def title(text) do
    text
    |> String.split(~r/\s+/, trim: true)
    |> Enum.with_index()
    |> Enum.map_join(" ", fn
      {word, 0} -> String.capitalize(word)
      {word, _} -> if word in @small, do: word, else: String.capitalize(word)
    end)
  end

  def unique(slug, taken) do
    if slug in taken do
      Stream.iterate(2, &(&1 + 1))
      |> Stream.map(&"#{slug}-#{&1}")
      |> Enum.find(&(&1 not in taken))
    else
      slug
    end
  end
end
