defmodule Ampule.RemoteError do
  @moduledoc """
  What a sandbox's raise becomes in your node: the code in the sandbox raised, and this
  says what, as text computed inside the sandbox.

      try do
        Ampule.call({String, :to_integer, ["x"]}, sandbox: true)
      rescue
        e in Ampule.RemoteError ->
          e.module   #=> "ArgumentError"
          e.message  #=> "errors were found at the given arguments: ..."
      end

  Fields:

    * `:module` - the name of the exception's module in the sandbox, as Elixir writes it
      (`"ArgumentError"`, `"MyApp.Invalid"`, `"ErlangError"`): a string, never an atom
      or a module of your node, whatever the sandbox defined
    * `:message` - the exception's message, computed in the sandbox
      (`Exception.message/1` there) and cut at 16 KiB: text the sandbox chose, to show or
      log, never to evaluate
    * `:stacktrace` - the sandbox's stack trace: only `{module, function, arity,
      [file: ..., line: ...]}` frames, and only those whose module and function names
      exist as atoms in your node (the others are dropped, not created)
    * `:container` - the sandbox's name, or `nil`

  Why not the exception itself: a sandbox chooses every field of what it raises, and an
  exception struct of one of your node's modules would run that module's code on those
  fields here (a forged `%Ampule.Error{reason: :oom, container: "another"}` would be
  rescued as a real failure of another container). Only distribution containers, whose
  code you trust, re-raise their exceptions as themselves. See "What a sandbox's result
  may hold" in docs/security.md.
  """

  defexception [:module, :message, :container, stacktrace: []]

  @type t :: %__MODULE__{
          module: String.t(),
          message: String.t(),
          stacktrace: Exception.stacktrace(),
          container: String.t() | nil
        }

  @impl true
  def message(%__MODULE__{module: module, message: message, container: nil}),
    do: "(#{module}) #{message}"

  def message(%__MODULE__{module: module, message: message, container: name}),
    do: "sandbox #{name} raised (#{module}) #{message}"
end
