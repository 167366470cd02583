defmodule Ampule.ProtocolTest do
  use ExUnit.Case, async: true

  alias Ampule.Protocol

  test "requests are encoded with UTF-8 atoms (minor_version 2)" do
    binary = Protocol.encode(7, {:spawn, %{name: "é"}})
    # 119 = SMALL_ATOM_UTF8_EXT; 100 (ATOM_EXT, Latin-1) must not appear for atoms.
    assert <<131, 104, 2, 97, 7, 104, 2, 119, 5, "spawn", _::binary>> = binary
    assert {7, {:spawn, %{name: "é"}}} == :erlang.binary_to_term(binary)

    assert <<131, 119, 2, "é"::utf8>> = Protocol.encode(:é)
  end

  test "decodes known terms with [:safe]" do
    frame = :erlang.term_to_binary({:event, :hello, %{protocol: 1}})
    assert {:ok, {:event, :hello, %{protocol: 1}}} = Protocol.decode(frame)
  end

  test "an atom this VM has never seen is refused ([:safe])" do
    fresh = "ampule-fresh-#{System.unique_integer([:positive])}"
    frame = <<131, 104, 2, 97, 1, 119, byte_size(fresh)::8, fresh::binary>>
    assert {:error, :bad_term} = Protocol.decode(frame)
  end

  test "garbage is refused" do
    assert {:error, :bad_term} = Protocol.decode(<<131, 255, 1, 2>>)
    assert {:error, :bad_term} = Protocol.decode("not a term")
  end

  test "the protocol's fixed atoms exist" do
    for atom <- Protocol.atoms(), do: assert(is_atom(atom))
  end
end
