defmodule Ampule.DistributionTest do
  # A node started with short names cannot reach containers (they are reached by IP
  # address): Ampule refuses it and says how to start iex. Runs in a separate VM.
  # Not async: that VM starts a port program of its own (see MixDependencyTest).
  use ExUnit.Case, async: false

  @moduletag :root
  @moduletag :lxc

  test "a node with short names gets an error that says how to start iex" do
    script = """
    {:error, reason} = Ampule.start()
    IO.inspect(reason, label: "reason")
    IO.puts(Ampule.format_error(reason))
    """

    {output, 0} =
      System.cmd(
        "elixir",
        [
          "--sname",
          "shorty",
          "-S",
          "mix",
          "run",
          "--no-compile",
          "--no-deps-check",
          "-e",
          script
        ],
        env: [{"MIX_ENV", "test"}],
        stderr_to_stdout: true
      )

    assert output =~ ~r/reason: \{:short_names, :"?shorty@/, output
    assert output =~ "iex --name ampule@10.213.57.1 -S mix", output
  end
end
