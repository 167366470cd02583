defmodule Ampule.PoolPrepareTest do
  # `prepare:` (Ampule.Pool, "Prepared containers"): what a prepared container holds, that
  # a pooled call then loads none of what was prepared, and that a bad `prepare:` fails the
  # pool's start with nothing left. Not async: the last test counts every container.
  use ExUnit.Case, async: false

  import Ampule.Test.Host, only: [wait_until: 2]

  alias Ampule.SandboxHelpers

  @moduletag :root
  @moduletag :lxc

  @work [String, Enum, Regex, Map]

  defp unique, do: :"prepare_pool_#{System.unique_integer([:positive])}"

  # No container but those listed before (which may be going: an earlier test's pool).
  defp no_new_container?(before) do
    {:ok, now} = Ampule.list()
    now -- before == []
  end

  defp with_one(pool, what), do: Ampule.Pool.with_container(pool, &Ampule.call(what, &1))

  test "a prepared container has the applications started, the modules loaded, run: done, and no caller's code" do
    pool = unique()

    start_supervised!(
      {Ampule.Pool,
       name: pool,
       size: 1,
       sandbox: true,
       prepare: [
         applications: [:ex_unit],
         modules: @work,
         run: {SandboxHelpers, :mark_prepared, []}
       ]}
    )

    apps = with_one(pool, {:application, :which_applications, []})
    assert Enum.any?(apps, &match?({:ex_unit, _, _}, &1))
    assert Enum.any?(apps, &match?({:elixir, _, _}, &1))

    loaded = with_one(pool, {:code, :all_loaded, []}) |> Enum.map(&elem(&1, 0))
    assert @work -- loaded == []
    # Only prepare: ran: a module that only callers use here is not loaded.
    refute Ampule.RemoteHelpers in loaded

    assert with_one(pool, {SandboxHelpers, :prepared?, []}) == true
  end

  test "a prepared pooled call loads none of the modules prepare: named; an unprepared one does" do
    prepared = unique()
    plain = unique()

    start_supervised!(
      {Ampule.Pool, name: prepared, size: 1, sandbox: true, prepare: [modules: @work]},
      id: prepared
    )

    start_supervised!({Ampule.Pool, name: plain, size: 1, sandbox: true}, id: plain)

    loaded_by_call = with_one(prepared, {SandboxHelpers, :newly_loaded_by_work, []})
    assert Enum.filter(loaded_by_call, &(&1 in @work)) == []

    # The control: the same call in a pristine container loads all four.
    assert @work -- with_one(plain, {SandboxHelpers, :newly_loaded_by_work, []}) == []
  end

  test "start/1 and a cold call take prepare: too; a bad one destroys the container" do
    c = Ampule.spawn(sandbox: true, prepare: [modules: @work])
    loaded_by_call = Ampule.call({SandboxHelpers, :newly_loaded_by_work, []}, c)
    assert Enum.filter(loaded_by_call, &(&1 in @work)) == []
    :ok = Ampule.destroy(c)

    assert Ampule.call({SandboxHelpers, :prepared?, []},
             sandbox: true,
             prepare: [run: {SandboxHelpers, :mark_prepared, []}]
           ) == true

    {:ok, before} = Ampule.list()

    assert {:error, {:prepare_failed, {:module, No.Such.Module, _}}} =
             Ampule.start(sandbox: true, prepare: [modules: [No.Such.Module]])

    assert wait_until(fn -> no_new_container?(before) end, 10_000)
  end

  test "a bad prepare: fails the pool's start, says why, and leaves no container" do
    Process.flag(:trap_exit, true)
    {:ok, before} = Ampule.list()

    for {prepare, why} <- [
          {[applications: [:no_such_application]], {:application, :no_such_application}},
          {[modules: [No.Such.Module]], {:module, No.Such.Module}},
          {[run: {SandboxHelpers, :raise_in_prepare, []}], :exception}
        ] do
      result = Ampule.Pool.start_link(name: unique(), size: 1, sandbox: true, prepare: prepare)
      assert {:error, {:prepare_failed, reason}} = result

      case why do
        :exception ->
          assert {:exception, %Ampule.RemoteError{message: "prepare went wrong"}, _} = reason

        {kind, name} ->
          assert {^kind, ^name, _} = reason
      end

      assert Ampule.Error.format_error({:prepare_failed, reason}) =~ "destroyed"
    end

    assert wait_until(fn -> no_new_container?(before) end, 10_000)

    assert_raise ArgumentError, ~r/:prepare/, fn ->
      Ampule.Pool.start_link(name: unique(), prepare: [applications: "ex_unit"])
    end
  end
end
