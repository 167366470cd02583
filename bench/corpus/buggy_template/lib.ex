defmodule Corpus.Template do
  @moduledoc """
  A compile-time template engine: `deftemplate name, "Hello {{who}}"` compiles the template
  to a function with string concatenation. One bug on purpose: filters are applied in
  reverse order, so a test that chains two filters fails.
  """

  defmacro deftemplate(name, source) do
    parts = Regex.split(~r/\{\{\s*(.*?)\s*\}\}/, source, include_captures: true)

    body =
      Enum.map(parts, fn part ->
        case Regex.run(~r/^\{\{\s*(.*?)\s*\}\}$/, part) do
          [_, expr] -> compile_expr(expr)
          nil -> part
        end
      end)

    quote do
      def unquote(name)(var!(assigns)) do
        IO.iodata_to_binary(unquote(body))
      end
    end
  end

  defp compile_expr(expr) do
    [key | filters] = String.split(expr, "|") |> Enum.map(&String.trim/1)
    value = quote do: to_string(Map.fetch!(var!(assigns), unquote(String.to_atom(key))))

    # Bug: should be Enum.reduce(filters, ...) (left to right).
    filters
    |> Enum.reverse()
    |> Enum.reduce(value, fn filter, acc ->
      quote(do: Corpus.Template.filter(unquote(filter), unquote(acc)))
    end)
  end

  def filter("upcase", s), do: String.upcase(s)
  def filter("downcase", s), do: String.downcase(s)
  def filter("trim", s), do: String.trim(s)
  def filter("first", s), do: String.first(s)
  def filter("reverse", s), do: String.reverse(s)
end

defmodule Corpus.Template.Mail do
  import Corpus.Template

  deftemplate(:greeting, "Hello {{name}}!")
  deftemplate(:shout, "{{ name | upcase }}!!")
  deftemplate(:initial, "{{name|first|upcase}}.")
  deftemplate(:two, "{{a}} and {{b | trim}}")
  deftemplate(:odd, "{{ name | reverse | first }}")
end
