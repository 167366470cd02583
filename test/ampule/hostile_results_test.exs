defmodule Ampule.HostileResultsTest do
  # What a sandbox's result means once the caller holds it (docs/security.md, "What a
  # sandbox's result may hold"), in real sandboxes: the structs that are plain data come
  # back, the rest (streams, compiled patterns, ranges, exceptions, forged dates) are
  # refused by `refused_results` in hostile_sandbox_test.exs; raises come as text made in
  # the sandbox; decoding counts inside the timeout; and a sandbox that writes with no call
  # pending is destroyed before the host holds what it wrote.
  use ExUnit.Case, async: true

  import Ampule.Test.Host, only: [wait_until: 2]

  alias Ampule.SandboxHelpers

  @moduletag :hostile
  @moduletag :root
  @moduletag :lxc

  setup_all do
    %{sandbox: Ampule.spawn(sandbox: true)}
  end

  test "plain data comes back as it was made: dates, times, URIs, versions, sets, big integers",
       %{sandbox: c} do
    # Made here first: the atoms it names exist here only once the module is loaded.
    expected = SandboxHelpers.plain_data()
    assert Ampule.call({SandboxHelpers, :plain_data, []}, c) == expected
  end

  test "a raise of a module only the sandbox has comes as text; no atom is made here",
       %{sandbox: c} do
    tag = "T#{System.unique_integer([:positive])}"
    error = catch_error(Ampule.call({SandboxHelpers, :raise_own_exception, [tag]}, c))

    assert %Ampule.RemoteError{module: module, message: "made in the sandbox"} = error
    assert module == "Sandbox.Only.#{tag}Error"
    assert Exception.message(error) =~ "(Sandbox.Only.#{tag}Error) made in the sandbox"
    # The frames of the sandbox's own module are dropped; this node's are kept.
    assert [{SandboxHelpers, :raise_own_exception, 1, _} | _] = error.stacktrace

    assert_raise ArgumentError, fn ->
      String.to_existing_atom("Elixir.Sandbox.Only.#{tag}Error")
    end
  end

  test "an exception whose message raises still comes with a message", %{sandbox: c} do
    error = catch_error(Ampule.call({SandboxHelpers, :raise_bad_message, []}, c))
    assert %Ampule.RemoteError{module: "Sandbox.BadMessage" <> _, message: message} = error
    assert message =~ "no message for you"
  end

  test "decoding counts inside the timeout: a result slow to decode, sent just before the deadline, is a timeout",
       %{sandbox: c} do
    # 4 M nested lists (32 MB encoded) take the host over a second to scan and decode;
    # the sandbox returns them 100 ms before the call's deadline. Without the deadline on
    # decoding, the call returns the term, late.
    what = {SandboxHelpers, :slow_to_decode, [4_000_000, 1_400]}
    assert Ampule.async_call(what, c) |> Ampule.yield(1_500) == {:error, :timeout}
    # The sandbox goes on.
    assert Ampule.call({:erlang, :+, [1, 2]}, c) == 3
  end

  test "a frame with no call pending ends the sandbox before the host holds it" do
    c = Ampule.spawn(sandbox: true)
    ref = Process.monitor(c.channel)
    memory = :erlang.memory(:total)

    # 64 MiB announced and all but a byte of it written; while no call waits the host
    # reads raw, so its first bytes end the sandbox.
    :ok = Ampule.cast({SandboxHelpers, :hold_a_frame, []}, c)

    assert_receive {:DOWN, ^ref, :process, _, {:shutdown, {:protocol, :unexpected_frame}}},
                   10_000

    assert_receive {:ampule_exit, ^c, {:protocol, :unexpected_frame}}, 5_000
    assert :erlang.memory(:total) - memory < 32 * 1024 * 1024

    assert wait_until(
             fn -> Ampule.Port.request({:info, c.name}) == {:error, :not_found} end,
             5_000
           )
  end
end

defmodule Ampule.HostileResultsConfigTest do
  # The settings of what a result may hold are the application's (global), so these run
  # alone: a user's own struct, allowed with a check; the result budget shared by every
  # sandbox.
  use ExUnit.Case, async: false

  alias Ampule.Sandbox.Budget
  alias Ampule.SandboxHelpers

  @moduletag :hostile
  @moduletag :root
  @moduletag :lxc

  setup_all do
    %{sandbox: Ampule.spawn(sandbox: true)}
  end

  test "a user's struct comes back once allowed, and only while its check passes",
       %{sandbox: c} do
    point = %Ampule.Test.Point{x: 1, y: 2}
    error = catch_error(Ampule.call({SandboxHelpers, :a_point, []}, c))
    assert error.reason == {:result_refused, {:struct, Ampule.Test.Point}}

    Application.put_env(:ampule, :result_structs, [Ampule.Test.Point])
    on_exit(fn -> Application.delete_env(:ampule, :result_structs) end)
    assert Ampule.call({SandboxHelpers, :a_point, []}, c) == point

    check = fn %{x: x, y: y} -> is_integer(x) and is_integer(y) and x > 1 end
    Application.put_env(:ampule, :result_structs, [{Ampule.Test.Point, check}])
    error = catch_error(Ampule.call({SandboxHelpers, :a_point, []}, c))
    assert error.reason == {:result_refused, {:struct, Ampule.Test.Point}}
  end

  describe "the result budget" do
    @describetag timeout: 20_000
    setup do
      restart_budget(3 * 1024 * 1024)
      on_exit(fn -> restart_budget(nil) end)
    end

    test "results in flight wait for their turn; one larger than the whole budget is refused",
         %{sandbox: c} do
      others = for _ <- 1..3, do: Ampule.spawn(sandbox: true)

      # Four results of 2 MiB at once in a 3 MiB budget: one at a time, all of them.
      results =
        [c | others]
        |> Enum.map(&Ampule.async_call({SandboxHelpers, :bytes, [2 * 1024 * 1024]}, &1))
        |> Enum.map(&Ampule.yield(&1, 30_000))

      assert Enum.all?(results, &match?({:ok, <<1, _::binary>>}, &1))
      assert %{used: 0, waiting: 0} = Budget.info()

      assert {:error, {:result_budget, size}} =
               Ampule.async_call({SandboxHelpers, :bytes, [4 * 1024 * 1024]}, c)
               |> Ampule.yield(10_000)

      assert size > 4 * 1024 * 1024
      # The sandbox goes on, and so does the budget.
      assert Ampule.call({:erlang, :+, [1, 2]}, c) == 3
      assert %{used: 0, waiting: 0} = Budget.info()
      Enum.each(others, &Ampule.destroy/1)
    end
  end

  defp restart_budget(total) do
    if total,
      do: Application.put_env(:ampule, :result_budget, total),
      else: Application.delete_env(:ampule, :result_budget)

    :ok = Supervisor.terminate_child(Ampule.Supervisor, Budget)
    {:ok, _} = Supervisor.restart_child(Ampule.Supervisor, Budget)
  end
end
