defmodule Ampule.MixDependencyTest do
  # A throwaway mix project that depends on Ampule by path: its own `mix compile` compiles
  # Ampule, runs Ampule's port compiler (cargo, in Ampule's directory), and Ampule.call
  # works from it: distribution started by Ampule, a real container.
  # Not async: it makes priv/ampule_port look stale for a moment (see MixTasksTest), and
  # it starts a second port program: that port's start-up sweep can remove a container
  # another live port is creating at that instant (it reads a container directory before
  # its owner file is written, and a lease before its owner is written, as dead), so the
  # suite does not start one while its own port makes containers.
  use ExUnit.Case, async: false

  @moduletag :root
  @moduletag :lxc
  @moduletag :tmp_dir
  @moduletag timeout: 300_000

  @ampule Path.expand("..", __DIR__)

  test "a project with {:ampule, path: ...} compiles and calls into a container",
       %{tmp_dir: dir} do
    File.write!(Path.join(dir, "mix.exs"), """
    defmodule Throwaway.MixProject do
      use Mix.Project

      def project do
        [app: :throwaway, version: "0.1.0", deps: [{:ampule, path: #{inspect(@ampule)}}]]
      end

      def application, do: [extra_applications: [:logger]]
    end
    """)

    # The suite's bridge, subnet and state dir, as in Ampule's own config/config.exs.
    File.mkdir_p!(Path.join(dir, "config"))

    File.write!(Path.join(dir, "config/config.exs"), """
    import Config

    for {key, var} <- [bridge: "AMPULE_BRIDGE", subnet: "AMPULE_SUBNET", state_dir: "AMPULE_STATE_DIR"],
        value = System.get_env(var) do
      config :ampule, [{key, value}]
    end
    """)

    # A module of the caller's own project, to be called in the container.
    File.mkdir_p!(Path.join(dir, "lib"))

    File.write!(Path.join(dir, "lib/throwaway.ex"), """
    defmodule Throwaway do
      def hello(name), do: "hello \#{name} from \#{node()}"
    end
    """)

    env = [{"MIX_ENV", "dev"}, {"AMPULE_PORT_PATH", nil}]

    # Make the port look stale, so that this project's `mix compile` runs cargo in
    # Ampule's directory (incremental: the target directory is up to date) and copies it.
    port = Mix.Tasks.Compile.AmpulePort.dest()
    File.touch!(port, {{2000, 1, 1}, {0, 0, 0}})

    {output, status} = System.cmd("mix", ["compile"], cd: dir, env: env, stderr_to_stdout: true)
    assert status == 0, output
    assert output =~ "Building ampule_port (cargo build --release --locked) in #{@ampule}"
    assert File.stat!(port).mtime > {{2000, 1, 1}, {0, 0, 0}}
    assert File.regular?(Path.join(dir, "_build/dev/lib/ampule/priv/ampule_port")), output

    # A project that makes no container runs no root program: the port starts on first use.
    lazy =
      "IO.inspect(Ampule.Port.os_pid(), label: :port); IO.inspect(Ampule.Port.os_pid(), label: :still)"

    {output, 0} =
      System.cmd("mix", ["run", "-e", lazy], cd: dir, env: env, stderr_to_stdout: true)

    assert output =~ "port: nil\nstill: nil", output

    script = """
    IO.inspect(Ampule.call({:erlang, :node, []}))
    IO.puts(Ampule.call({Throwaway, :hello, ["world"]}))
    """

    {output, status} =
      System.cmd("mix", ["run", "-e", script], cd: dir, env: env, stderr_to_stdout: true)

    assert status == 0, output
    # The node was not alive: Ampule started distribution, and said so.
    assert output =~ "Ampule started distribution", output
    net = Regex.escape(Ampule.Test.Host.subnet_prefix())
    assert output =~ ~r/^:"[A-Za-z0-9_-]+@#{net}\d+"$/m, output
    assert output =~ ~r/^hello world from [A-Za-z0-9_-]+@#{net}\d+$/m, output
  end
end
