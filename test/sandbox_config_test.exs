defmodule Ampule.SandboxConfigTest do
  # `config :ampule, sandbox: true` makes sandboxes the default. Not async: it changes the
  # application environment, which every other test's spawns read.
  use ExUnit.Case, async: false

  alias Ampule.Options

  setup do
    previous = Application.fetch_env(:ampule, :sandbox)

    on_exit(fn ->
      case previous do
        {:ok, value} -> Application.put_env(:ampule, :sandbox, value)
        :error -> Application.delete_env(:ampule, :sandbox)
      end
    end)
  end

  test "without configuration a container is a distribution container" do
    Application.delete_env(:ampule, :sandbox)
    assert {_, _, :distribution} = Options.spawn!([])
  end

  test "config :ampule, sandbox: true makes spawns sandboxes; sandbox: false still wins" do
    Application.put_env(:ampule, :sandbox, true)
    assert {_, _, {:sandbox, _}} = Options.spawn!([])
    assert {_, _, :distribution} = Options.spawn!(sandbox: false)
    assert {_, _} = Options.call!([], 5_000)
  end

  test "a bad configured value is refused by name" do
    Application.put_env(:ampule, :sandbox, :maybe)
    assert_raise ArgumentError, ~r/:sandbox/, fn -> Options.spawn!([]) end
  end

  @tag :root
  @tag :lxc
  test "with the configuration, an anonymous call runs in a sandbox" do
    Application.put_env(:ampule, :sandbox, true)
    assert Ampule.call({:erlang, :node, []}) == :nonode@nohost
  end
end
