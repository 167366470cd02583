defmodule Ampule.Eval.Success do
  @moduledoc """
  What `Ampule.eval_string/2` and `Ampule.eval_quoted/2` return when the source ran to a
  value.

    * `:inspected` - the value as `inspect/2` shows it, made in the sandbox (with the
      call's `:inspect` options, `limit: 50, printable_limit: 4096, pretty: true` by
      default) and at most 64 KiB: text for a person, and text only. Valid UTF-8 (bytes
      that are not are replaced by U+FFFD here)
    * `:value` - the value itself, when it may cross into this node under a sandbox's
      rules (see "What a sandbox's result may hold" in `Ampule.Sandbox`); else `nil`, and
      `:refused` says why
    * `:refused` - `nil` when `:value` is the value; otherwise the reason it is not, an
      `Ampule.Error` reason: `{:result_refused, kind}` (an atom this node lacks, a fun, a
      pid, a reference, a struct that is not plain data, ...), `{:result_too_large, max}`
      (see `Ampule.format_error/1`), `:timeout` (decoding it took the evaluation past its
      timeout) or `{:protocol, :bad_term}` (the sandbox forged it)
    * `:stdio` - everything the evaluation printed, standard output and standard error
      of every process it started, in order, as bytes (not necessarily UTF-8)

  `value: nil, refused: nil` is a source whose value is `nil`.
  """

  @enforce_keys [:inspected, :stdio]
  defstruct [:value, :inspected, :stdio, :refused]

  @type t :: %__MODULE__{
          value: term,
          inspected: String.t(),
          stdio: binary,
          refused: nil | Ampule.Error.reason()
        }
end
