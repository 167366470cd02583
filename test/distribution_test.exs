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

  test "Ampule starts EPMD before distribution: no register/listen error first" do
    # A network namespace of the test's own has no EPMD listening (port 4369 is per
    # namespace): as on a host where nothing started one.
    ns = "ampule-epmd-#{System.unique_integer([:positive])}"
    {_, 0} = System.cmd("ip", ["netns", "add", ns])

    try do
      {_, 0} = System.cmd("ip", ["-n", ns, "link", "set", "lo", "up"])

      script = """
      IO.inspect(Ampule.Distribution.ensure_started("127.0.0.1"), label: "started")
      IO.inspect(node(), label: "node")
      """

      {output, 0} =
        System.cmd(
          "ip",
          ~w(netns exec #{ns} elixir -S mix run --no-compile --no-deps-check --no-start -e) ++
            [script],
          env: [{"MIX_ENV", "test"}],
          stderr_to_stdout: true
        )

      assert output =~ "started: :ok", output
      assert output =~ ~r/node: :"ampule_host_\w+@127\.0\.0\.1"/, output
      refute output =~ "register/listen error", output
    after
      # The EPMD it started lives in the namespace: kill it before removing it.
      {pids, _} = System.cmd("ip", ["netns", "pids", ns])
      for pid <- String.split(pids), do: System.cmd("kill", ["-9", pid])
      System.cmd("ip", ["netns", "del", ns])
    end
  end
end
