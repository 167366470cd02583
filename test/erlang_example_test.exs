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

    {output, status} =
      System.cmd(
        "erl",
        ["-noshell", "-pa", dir, "-run", "ampule_port_client", "main", Ampule.Port.executable()],
        stderr_to_stdout: true
      )

    assert status == 0, output
    assert output =~ ~r/^hello: protocol 2/m
    assert [_, name] = Regex.run(~r/^spawned: (\S+) /m, output)
    assert output =~ ~r/^rpc: erlang:node\(\) in the container is '#{name}@10\.213\.57\.\d+'/m
    assert output =~ "destroyed: #{name}"
  end
end
