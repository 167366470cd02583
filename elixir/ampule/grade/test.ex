defmodule Ampule.Grade.Test do
  @moduledoc """
  One test of a grading (`Ampule.Grade.run/2`), as plain data.

    * `:module` - the test module's name, as a string (`"MyApp.StackTest"`): test modules
      are new atoms that your node does not have, and a sandbox's result never makes atoms
    * `:name` - the test's name as ExUnit has it, a string: `"test push and pop"`, with
      its `describe` block's name when it has one (`"test stack push"`)
    * `:file`, `:line` - where the test is: the file's name as you gave it, and the line
    * `:status` - `:passed`, `:failed`, `:skipped` (`@tag :skip`), `:excluded` (by the
      `:exclude` option), `:invalid` (its module's `setup_all` failed), or `:timeout`
      (the run's `:timeout` passed while it ran: it did not finish)
    * `:message` - for `:failed` and `:invalid`, the failure as `mix test` prints it
      (ExUnit's own formatter, made inside the sandbox: the assertion, its code, `left:`
      and `right:`, the stack trace), at most `:max_message` bytes and a line saying how
      many were cut; for `:skipped`/`:excluded`, ExUnit's reason; otherwise `nil`
    * `:output` - what the test printed, standard output and standard error in the order
      written, including what processes it started printed while it ran (see "Output" in
      `Ampule.Grade`), its first `:max_output` bytes; `:output_bytes` counts all of it
    * `:log` - what it logged (`Logger`), as ExUnit's `capture_log` gives it, its first
      `:max_output` bytes; `:log_bytes` counts all of it
    * `:time` - microseconds the test took (its setup included), as ExUnit measures it
  """

  @enforce_keys [:module, :name, :status]
  defstruct [
    :module,
    :name,
    :file,
    :line,
    :status,
    :message,
    output: "",
    output_bytes: 0,
    log: "",
    log_bytes: 0,
    time: 0
  ]

  @type status :: :passed | :failed | :skipped | :excluded | :invalid | :timeout

  @type t :: %__MODULE__{
          module: String.t(),
          name: String.t(),
          file: String.t() | nil,
          line: pos_integer | nil,
          status: status,
          message: String.t() | nil,
          output: binary,
          output_bytes: non_neg_integer,
          log: binary,
          log_bytes: non_neg_integer,
          time: non_neg_integer
        }
end
