defmodule Corpus.StateMachineTest do
  use ExUnit.Case, async: true
  alias Corpus.StateMachine.{Door, Order}

  test "a happy order" do
    assert Order.run([:checkout, :pay, :ship, :deliver]) == {:ok, :delivered}
  end

  test "an invalid event stops the run" do
    assert Order.run([:checkout, :ship, :pay]) == {:error, {:invalid, :pending, :ship}}
  end

  test "cancel from several states" do
    for s <- [:cart, :pending, :paid], do: assert(Order.fire(s, :cancel) == {:ok, :cancelled})
    assert {:error, _} = Order.fire(:shipped, :cancel)
  end

  test "states and events" do
    assert Order.states() == [:cancelled, :cart, :delivered, :paid, :pending, :refunded, :shipped]
    assert Door.events() == [:close, :lock, :open, :unlock]
  end

  test "available events" do
    assert Order.available(:paid) == [:cancel, :refund, :ship]
    assert Door.available(:closed) == [:lock, :open]
  end

  test "machines are independent" do
    assert Door.initial() == :closed
    assert Door.run([:lock, :unlock, :open]) == {:ok, :opened}
    assert {:error, _} = Door.fire(:cart, :checkout)
  end
end
