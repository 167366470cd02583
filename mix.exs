# The Mix compiler that builds the Rust port is part of the build, like this file: it is
# loaded from here, before any of the project is compiled, so that `mix compile` can run it
# on a fresh checkout and in an application that depends on Ampule by `path:` or `git:`.
# It is therefore left out of `elixirc_paths` (compiling it a second time into ebin would
# redefine the module that is running the build).
Code.require_file("elixir/mix/tasks/compile.ampule_port.ex", __DIR__)

defmodule Ampule.MixProject do
  use Mix.Project

  @version "0.1.0"
  @build_tool "elixir/mix/tasks/compile.ampule_port.ex"

  def project do
    [
      app: :ampule,
      version: @version,
      elixir: "~> 1.14",
      elixirc_paths: elixirc_paths(Mix.env()),
      compilers: [:ampule_port] ++ Mix.compilers(),
      start_permanent: Mix.env() == :prod,
      deps: [],
      description: description(),
      package: package(),
      docs: [
        main: "Ampule",
        extras: ["README.md", "docs/host.md", "docs/protocol.md", "docs/scaling.md"]
      ],
      name: "Ampule"
    ]
  end

  def application do
    [
      extra_applications: [:logger],
      mod: {Ampule.Application, []}
    ]
  end

  defp elixirc_paths(:test), do: sources() ++ ["test/support"]
  defp elixirc_paths(_), do: sources()

  # Every .ex file under elixir/ except the build tool (see the top of this file).
  defp sources do
    File.cd!(__DIR__, fn -> Path.wildcard("elixir/**/*.ex") end) -- [@build_tool]
  end

  defp description do
    "Linux containers as closures in a pipeline: each container runs a real Erlang node, " <>
      "reached over Erlang distribution, driven by a small Rust port program over liblxc."
  end

  defp package do
    [
      licenses: ["MIT"],
      links: %{
        "Original ampule (Elixir + erlxc)" => "https://github.com/msantos/ampule",
        "liblxc" => "https://linuxcontainers.org/lxc/"
      },
      files: ~w(
        mix.exs README.md LICENSE CHANGELOG.md
        elixir native Cargo.toml Cargo.lock
        docs/protocol.md docs/host.md examples priv/.gitignore
      )
    ]
  end
end
