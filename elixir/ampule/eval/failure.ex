defmodule Ampule.Eval.Failure do
  @moduledoc """
  What `Ampule.eval_string/2` and `Ampule.eval_quoted/2` return when the source did not
  run to a value.

    * `:type` - what happened (below)
    * `:message` - as a person reads it: for the source's own failures, as iex shows
      them (`** (ArithmeticError) bad argument in arithmetic expression` and the stack
      trace of the source's frames), made in the sandbox; for a limit, a sentence naming
      it. At most 16 KiB, valid UTF-8
    * `:stdio` - what the evaluation printed until then (see `Ampule.Eval.Success`)

  ## Types

  The source's own failures:

    * `:parsing` - the source is not valid Elixir (or Erlang, `language: :erlang`)
    * `:compile_error` - it parses but does not compile (an undefined function or
      variable, a bad `defmodule`)
    * `:exception` - it raised
    * `:throw` - it threw a value that nothing caught
    * `:exit` - it exited (`exit/1`), or its process was killed by its own code

  A limit passed (each its own type; the evaluation is stopped):

    * `:timeout` - `:timeout` milliseconds went by
    * `:memory` - the evaluating process passed `:max_heap_size`, or the whole sandbox
      passed its memory limit (`:memory` of `Ampule.start/1`) and the kernel killed it:
      the message says which (in the second case the sandbox is gone)
    * `:reductions` - the evaluating process passed `:max_reductions`
    * `:output_limit` - it printed more than `:max_output` bytes

  The sandbox itself:

    * `:sandbox_down` - the sandbox ended during the evaluation other than by its memory
      limit: the source halted its node (`System.halt/0`), something destroyed it, or
      its host left the cluster. A held sandbox (a session) is gone
    * `:protocol` - the sandbox answered what Ampule never sends (code in it wrote to
      its agent's channel) or an answer this node refused; a sandbox that broke the
      agent's protocol is destroyed (see "Error reasons" in `Ampule.Error`)
  """

  @enforce_keys [:type, :message, :stdio]
  defstruct [:type, :message, :stdio]

  @type type ::
          :parsing
          | :compile_error
          | :exception
          | :throw
          | :exit
          | :timeout
          | :memory
          | :reductions
          | :output_limit
          | :sandbox_down
          | :protocol

  @type t :: %__MODULE__{type: type, message: String.t(), stdio: binary}
end
