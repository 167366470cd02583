defmodule Ampule.Grade.Text do
  @moduledoc false
  # Bounding the texts of a grading, on both sides: inside the sandbox as they are made,
  # and again here, since what a sandbox sends is the sandbox's to choose.

  # The longest "\n[... N more bytes]" line: 6 + 20 digits + 12 bytes.
  @marker 38

  @doc """
  `text` cut to at most `max` bytes in all, ending with a line that says how many bytes
  were cut (the cut falls on a character's boundary when the text is UTF-8); `nil` stays
  `nil`. A text cut once is not cut again.
  """
  @spec cut(binary | nil, non_neg_integer) :: binary | nil
  def cut(nil, _max), do: nil
  def cut(text, max) when byte_size(text) <= max, do: text
  # No room for the line: the bytes alone.
  def cut(text, max) when max < @marker, do: head(text, max)

  def cut(text, max) do
    n = boundary(text, max - @marker)
    binary_part(text, 0, n) <> "\n[... #{byte_size(text) - n} more bytes]"
  end

  @doc "The first `max` bytes of `bytes` (output is bytes, cut where the limit falls)."
  @spec head(binary, non_neg_integer) :: binary
  def head(bytes, max) when byte_size(bytes) <= max, do: bytes
  def head(bytes, max), do: binary_part(bytes, 0, max)

  defp boundary(text, max) do
    Enum.find(max..max(max - 3, 0)//-1, max, &String.valid?(binary_part(text, 0, &1)))
  end
end
