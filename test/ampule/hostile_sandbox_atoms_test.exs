defmodule Ampule.HostileSandboxAtomsTest do
  # 200,000 new atoms in a sandbox's result: refused, and the host's atom count does not
  # move by one. Not async, so that no other test loads a module (and adds atoms) while
  # the count is compared.
  use ExUnit.Case, async: false

  alias Ampule.SandboxHelpers

  @moduletag :hostile
  @moduletag :root
  @moduletag :lxc

  test "200,000 new atoms in a result are refused; the host's atom count does not move" do
    c = Ampule.spawn(sandbox: true)
    call = {SandboxHelpers, :new_atoms, ["alone", 200_000]}
    # Everything this test needs is loaded before the count is taken.
    {:error, {:result_refused, :atoms}} = Ampule.yield(Ampule.async_call(call, c), 60_000)

    atoms = :erlang.system_info(:atom_count)
    assert Ampule.yield(Ampule.async_call(call, c), 60_000) == {:error, {:result_refused, :atoms}}
    assert :erlang.system_info(:atom_count) == atoms
    :ok = Ampule.destroy(c)
  end
end
