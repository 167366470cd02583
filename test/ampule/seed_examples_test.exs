defmodule Ampule.SeedExamplesTest do
  # The examples of the original README (shared/seed/ampule-seed-README.md), as written
  # there, against real containers. Two spellings changed with Elixir since: `self()` for
  # `self`, and `List.to_atom/1` for the old `list_to_atom`.
  use ExUnit.Case, async: true

  @moduletag :root
  @moduletag :lxc

  test "run a pipeline via anonymous containers: the result is the node name as a charlist" do
    result =
      {:erlang, :node, []}
      |> Ampule.call()
      |> Ampule.mfa(:erlang, :atom_to_list)
      |> Ampule.call()

    assert is_list(result)
    net = Regex.escape(Ampule.Test.Host.subnet_prefix())
    assert List.to_string(result) =~ ~r/\A[A-Za-z0-9_-]+@#{net}\d+\z/
    refute List.to_atom(result) == node()
  end

  test "run a pipeline via named containers: back to the container's node name" do
    container = Ampule.spawn()

    result =
      {:erlang, :node, []}
      |> Ampule.call(container)
      |> Ampule.mfa(:erlang, :atom_to_list)
      |> Ampule.call(container)
      |> List.to_atom()

    assert result == container.nodename
    assert :ok = Ampule.destroy(container)
  end

  test "spawn a process in a container (a function compiled in a module)" do
    container = Ampule.spawn()
    pid = self()
    Node.spawn(container.nodename, Ampule.RemoteHelpers.ls_fun(pid))

    assert_receive ls, 5_000
    assert_ls(ls)
  end

  test "spawn a process in a container (a function made by Code.eval_string, as in iex)" do
    container = Ampule.spawn()
    pid = self()

    {fun, _binding} =
      Code.eval_string("fn -> ls = :os.cmd('ls -al'); send(pid, ls) end", pid: pid)

    Node.spawn(container.nodename, fun)

    assert_receive ls, 5_000
    assert_ls(ls)
  end

  # `ls -al` in the container's home: a listing, as a charlist, made inside the container.
  defp assert_ls(ls) do
    assert is_list(ls)
    text = List.to_string(ls)
    assert text =~ "total"
    assert text =~ ~r/^d.* \.\.?$/m
  end
end
