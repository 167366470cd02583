defmodule Ampule.Port.ConsoleTest do
  # The console credit window alone, without a container: what an owner gets under each
  # `:active` mode, and what waits (the containers behind it: hostile_console_test.exs).
  use ExUnit.Case, async: true

  alias Ampule.Port.Console

  defp push_all(flow, chunks) do
    Enum.reduce(chunks, {[], flow}, fn chunk, {outs, flow} ->
      {more, flow} = Console.push(flow, chunk)
      {outs ++ more, flow}
    end)
  end

  # Chunks far apart enough not to be joined (each more than half a read).
  defp big(char), do: String.duplicate(char, 9 * 1024)

  test "a count lets that many chunks go, then says passive once and keeps the rest" do
    {outs, flow} = push_all(Console.new(2), [big("a"), big("b"), big("c")])

    assert outs == [{:data, big("a")}, {:data, big("b")}, :passive]
    assert flow.active == false
    assert Console.waiting(flow) == {1, 9 * 1024}
    assert Console.bytes(outs) == 2 * 9 * 1024
  end

  test "re-arming sends what waited first, in order" do
    {[], flow} = push_all(Console.new(false), [big("a"), big("b")])
    {outs, flow} = Console.set_active(flow, 5)

    assert outs == [{:data, big("a")}, {:data, big("b")}]
    assert flow.active == 3
    assert Console.waiting(flow) == {0, 0}
  end

  test "an integer adds to the count, as for sockets" do
    {[], flow} = Console.set_active(Console.new(3), 4)
    assert flow.active == 7

    {[], flow} = Console.set_active(flow, -2)
    assert flow.active == 5
  end

  test "a count brought to 0 or below by set_active goes passive and says so" do
    assert Console.set_active(Console.new(2), -2) == {[:passive], Console.new(false)}
    assert Console.set_active(Console.new(false), 0) == {[:passive], Console.new(false)}
  end

  test "an integer after true, false or :once counts from 0" do
    for mode <- [true, false, :once] do
      {[], flow} = Console.set_active(Console.new(mode), 2)
      assert flow.active == 2
    end
  end

  test ":once lets one chunk go and goes passive without a word" do
    {outs, flow} = push_all(Console.new(:once), [big("a"), big("b")])

    assert outs == [{:data, big("a")}]
    assert flow.active == false
    assert Console.waiting(flow) == {1, 9 * 1024}
  end

  test "true lets everything go; false keeps everything" do
    {outs, flow} = push_all(Console.new(true), [big("a"), big("b")])
    assert outs == [{:data, big("a")}, {:data, big("b")}]
    assert flow.active == true

    {outs, flow} = push_all(Console.new(false), [big("a"), big("b")])
    assert outs == []
    assert Console.waiting(flow) == {2, 2 * 9 * 1024}
  end

  test "small waiting chunks are joined up to one read (16 KiB), never beyond" do
    crumbs = for i <- 1..100, do: "line #{i}\n"
    {[], flow} = push_all(Console.new(false), crumbs)
    assert Console.waiting(flow) == {1, IO.iodata_length(crumbs)}

    {[], flow} = push_all(Console.new(false), [big("a"), big("b")])
    assert Console.waiting(flow) == {2, 2 * 9 * 1024}

    {[], flow} = push_all(Console.new(false), ["x", String.duplicate("y", 16 * 1024 - 1)])
    assert Console.waiting(flow) == {1, 16 * 1024}
  end

  test "joined chunks keep every byte, in order" do
    crumbs = for i <- 1..3000, do: "#{i}\n"
    {[], flow} = push_all(Console.new(false), crumbs)
    {outs, _flow} = Console.set_active(flow, true)

    assert IO.iodata_to_binary(for {:data, d} <- outs, do: d) == IO.iodata_to_binary(crumbs)
    assert Enum.all?(outs, fn {:data, d} -> byte_size(d) <= 16 * 1024 end)
  end

  test "send_to gives the owner the messages of a socket and returns the bytes sent" do
    container = %Ampule.SystemContainer{name: "c1", owner: self()}
    sent = Console.send_to([{:data, "hi"}, :passive], container)

    assert sent == 2
    assert_received {:ampule_console, ^container, "hi"}
    assert_received {:ampule_console_passive, ^container}
  end

  test "send_to without an owner sends nothing" do
    container = %Ampule.SystemContainer{name: "c1", owner: nil}
    assert Console.send_to([:passive], container) == 0
    refute_received _
  end
end
