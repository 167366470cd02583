defmodule Ampule.HostileNetworkTest do
  # Floods of the host from a container. Each rule of the firewall is proven one by one
  # in the port's own suite (native/ampule_port/tests/firewall.rs, in network namespaces
  # with and without bridge filtering); these are the attacks as a user meets them, on
  # this host, with its real EPMD.
  use ExUnit.Case, async: true

  alias Ampule.Test.Host

  @moduletag :root
  @moduletag :lxc
  @moduletag :hostile

  defp epmd_names do
    epmd = System.find_executable("epmd") || Path.join([:code.root_dir(), "bin", "epmd"])
    System.cmd(epmd, ["-names"], stderr_to_stdout: true)
  end

  test "1,100 connections to the host's EPMD from a container: none opens, EPMD serves the host" do
    c = Ampule.spawn()
    host = Host.host_address()
    # Inside: 1,100 processes each try to connect to the host's EPMD and hold the socket.
    flood = {Ampule.RemoteHelpers, :connect_many, [host, 4369, 1100, 3_000, 5_000]}
    flooding = Task.async(fn -> Ampule.call(flood, c, 20_000) end)
    # Meanwhile the host's EPMD answers, and lists this node.
    {names, 0} = epmd_names()
    assert names =~ "epmd: up and running"
    results = Task.await(flooding, 25_000)
    assert length(results) == 1100
    assert Enum.all?(results, &match?({:error, _}, &1)), inspect(Enum.uniq(results))
    {_, 0} = epmd_names()
  end

  test "a container cannot ask the host's EPMD for the host's nodes" do
    c = Ampule.spawn()
    ask = {Ampule.RemoteHelpers, :epmd_names, [Host.host_address(), 2_000]}
    # The host can: the answer names this node.
    [alive, _] = node() |> Atom.to_string() |> String.split("@")
    assert {:ok, names} = apply(Ampule.RemoteHelpers, :epmd_names, elem(ask, 2))
    assert names =~ "name #{alive} at port"
    assert {:error, _} = Ampule.call(ask, c, 10_000)
  end
end
