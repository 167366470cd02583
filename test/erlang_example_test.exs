defmodule Ampule.ErlangExampleTest do
  # examples/ampule_port_client.erl drives the port by docs/protocol.md alone, from a
  # separate Erlang VM: compiled with erlc and run with erl.
  # Not async: it starts a second port program, whose start-up sweep must not run while
  # this suite's port is making containers (see the note in MixDependencyTest).
  use ExUnit.Case, async: false

  @moduletag :root
  @moduletag :lxc
  @moduletag :tmp_dir

  @example Path.expand("../examples/ampule_port_client.erl", __DIR__)

  test "the Erlang client spawns, calls into the node and destroys", %{tmp_dir: dir} do
    {_, 0} = System.cmd("erlc", ["-o", dir, @example], stderr_to_stdout: true)

    # The port on the suite's bridge, subnet and state dir: the example starts it bare, so
    # through a script that adds them (exec keeps the protocol's fds 3 and 4).
    settings =
      for {key, flag} <- [bridge: "--bridge", subnet: "--subnet", state_dir: "--state-dir"],
          value = Application.get_env(:ampule, key),
          do: "#{flag} '#{value}'"

    port = Path.join(dir, "ampule_port")

    File.write!(port, """
    #!/bin/sh
    exec '#{Ampule.Port.executable()}' #{Enum.join(settings, " ")} "$@"
    """)

    File.chmod!(port, 0o755)

    {output, status} =
      System.cmd("erl", ["-noshell", "-pa", dir, "-run", "ampule_port_client", "main", port],
        stderr_to_stdout: true
      )

    assert status == 0, output
    assert output =~ ~r/^hello: protocol 3/m
    assert [_, name] = Regex.run(~r/^spawned: (\S+) /m, output)
    net = Regex.escape(Ampule.Test.Host.subnet_prefix())
    assert output =~ ~r/^rpc: erlang:node\(\) in the container is '#{name}@#{net}\d+'/m
    assert output =~ "destroyed: #{name}"
  end
end
