defmodule Ampule.HostileOutputTest do
  # Hostile code and the output channel (docs/security.md, "Output"): code beside the agent
  # finds its socket and writes output frames (7) and output-limit answers (8) of its own.
  # Output is bytes the host does not trust: it is counted against the window the host
  # acknowledged and the call's :max_output, and accepted only for a call that asked for
  # it; anything else ends the sandbox with the channel's protocol error, as any other
  # unexpected frame does.
  use ExUnit.Case, async: true

  import Ampule.Test.Host, only: [wait_until: 1, wait_until: 2]

  alias Ampule.OutputHelpers, as: Out
  alias Ampule.Sandbox.Frame

  @moduletag :hostile
  @moduletag :root
  @moduletag :lxc

  @never 0xFFFF_FFFF_FFFF_FFFF

  setup_all do
    %{bystander: Ampule.spawn(sandbox: true)}
  end

  defp info(name), do: Ampule.Port.request({:info, name})
  defp name, do: :"hostile_output_#{System.unique_integer([:positive])}"

  # A sandbox of its own for one attack: destroyed for it, its owner told, the bystander
  # unharmed.
  defp broken!(c, reason, bystander) do
    assert wait_until(fn -> info(c.name) == {:error, :not_found} end, 5_000)
    assert_receive {:ampule_exit, ^c, {:protocol, ^reason}}, 5_000
    assert Ampule.call({:erlang, :+, [1, 1]}, bystander) == 2
  end

  # A call `waiting` in `c` (its process registered as `waiter`) for the forger to aim at.
  defp waiting_call(c, opts) do
    waiter = name()
    call = Ampule.async_call({Out, :print_and_wait, [waiter]}, c, opts)
    assert wait_until(fn -> Ampule.call({Out, :alive?, [waiter]}, c) end)
    call
  end

  test "output for a call that does not exist", %{bystander: b} do
    c = Ampule.spawn(sandbox: true)

    assert Ampule.Call.capture(c, {Out, :forge_output, [@never, "forged"]}, []) ==
             {{:error, {:protocol, :unexpected_id}}, ""}

    broken!(c, :unexpected_id, b)
  end

  test "output for a call that did not ask for it (its output goes to the log)",
       %{bystander: b} do
    c = Ampule.spawn(sandbox: true)
    victim = waiting_call(c, [])
    forger = Ampule.async_call({Out, :forge_output, [victim.id, "forged"]}, c)
    assert Ampule.yield(forger) == {:error, {:protocol, :unexpected_output}}
    assert Ampule.yield(victim) == {:error, {:protocol, :unexpected_output}}
    broken!(c, :unexpected_output, b)
  end

  test "an output-limit answer for a call that did not ask for output", %{bystander: b} do
    c = Ampule.spawn(sandbox: true)
    victim = waiting_call(c, [])
    Ampule.cast({Out, :forge_output_limit, [victim.id]}, c)
    assert Ampule.yield(victim) == {:error, {:protocol, :unexpected_id}}
    broken!(c, :unexpected_id, b)
  end

  test "output past the window the host acknowledged (a passive receiver)", %{bystander: b} do
    c = Ampule.spawn(sandbox: true)
    victim = waiting_call(c, output: {:stream, self(), false})
    chunk = :binary.copy("f", 16_384)
    count = div(Frame.window(), 16_384) + 1
    Ampule.cast({Out, :forge_output, [victim.id, chunk, count]}, c)
    assert Ampule.yield(victim) == {:error, {:protocol, :output_window}}
    broken!(c, :output_window, b)
    # The receiver was passive: nothing of it came.
    refute_received {:ampule_output, _, _}
  end

  test "output past the call's :max_output", %{bystander: b} do
    c = Ampule.spawn(sandbox: true)
    victim = waiting_call(c, output: :capture, max_output: 10)
    Ampule.cast({Out, :forge_output, [victim.id, "0123456789"]}, c)
    # "first\n" (6 bytes) came from the call itself, then 10 forged: over 10.
    assert Ampule.yield(victim) == {{:error, {:protocol, :output_too_large}}, "first\n"}
    broken!(c, :output_too_large, b)
  end

  test "output while no call waits", %{bystander: b} do
    c = Ampule.spawn(sandbox: true)
    Ampule.cast({Out, :forge_output, [1, "forged"]}, c)
    broken!(c, :unexpected_frame, b)
  end

  test "an io request that never finishes holds up neither the answer nor the agent",
       %{bystander: _} do
    c = Ampule.spawn(sandbox: true)

    assert Ampule.Call.capture(c, {Out, :stuck_put_chars, []}, timeout: 200) ==
             {{:error, :timeout}, ""}

    assert Ampule.Call.capture(c, {IO, :puts, ["after"]}, []) == {{:ok, :ok}, "after\n"}
    Ampule.destroy(c)
  end
end
