defmodule Ampule.SandboxDecodeTest do
  # Ampule.Sandbox.Decode against terms a sandbox could send: every kind of term decodes
  # as binary_to_term/1 would; funs, pids, ports, references and unknown atoms are refused
  # by kind; a term that would decode past the limit is refused before it is decoded; and
  # bytes term_to_binary does not write are a broken sandbox, never a crash. No root.
  use ExUnit.Case, async: true

  alias Ampule.Sandbox.Decode

  @limit 64 * 1024 * 1024

  defp decode(term, limit \\ @limit), do: Decode.decode(:erlang.term_to_binary(term), limit)

  # A term of every kind, nested.
  defp assorted do
    [
      0,
      255,
      -1,
      2_147_483_647,
      -2_147_483_648,
      Integer.pow(2, 59),
      Integer.pow(2, 64) + 1,
      -Integer.pow(10, 300),
      3.25,
      -0.0,
      :ok,
      :ünïcode_atom,
      true,
      nil,
      {},
      {1, {2, {3}}},
      List.to_tuple(Enum.to_list(1..300)),
      [],
      [1, 2, 3],
      [1 | 2],
      ~c"a byte list",
      Enum.to_list(1..70_000),
      "",
      "binary",
      :binary.copy("x", 100_000),
      <<1::3>>,
      <<0, 1, 2, 3::5>>,
      %{},
      %{"b" => [2], {:c} => %{d: :e}, a: 1},
      Map.new(1..100, &{&1, &1 * 2}),
      [%{list: [{:tuple, "bin", 1.5}]}]
    ]
  end

  test "every kind of term decodes to what binary_to_term/1 gives" do
    for term <- assorted() do
      assert decode(term) == {:ok, term}, inspect(term, limit: 5)
      # minor_version 0 writes floats as text (FLOAT_EXT) and atoms as Latin-1.
      assert Decode.decode(:erlang.term_to_binary(term, minor_version: 0), @limit) ==
               {:ok, term}
    end

    assert decode(assorted()) == {:ok, assorted()}
  end

  test "the scan's count is an upper bound of the decoded heap" do
    for term <- [assorted() | assorted()] do
      {:ok, bytes} = Decode.scan(:erlang.term_to_binary(term), @limit)
      assert bytes >= :erts_debug.flat_size(term) * 8, inspect(term, limit: 5)
    end
  end

  test "funs, pids, ports and references are refused, wherever they hide" do
    port = hd(Port.list())
    local_fun = fn -> :os.cmd(~c"id") end
    {eval_fun, _} = Code.eval_string("fn -> :os.cmd(~c\"id\") end")

    for {kind, value} <- [
          fun: local_fun,
          fun: eval_fun,
          fun: &:os.cmd/1,
          pid: self(),
          port: port,
          reference: make_ref()
        ],
        wrap <- [
          & &1,
          &{:ok, &1},
          &[1, 2, &1],
          &[1 | &1],
          &%{key: &1},
          &%{&1 => :value},
          &Map.new(1..40, fn i -> {i, if(i == 40, do: &1, else: i)} end),
          &{:error, {&1, []}}
        ] do
      assert decode(wrap.(value)) == {:refused, kind}, "#{kind} in #{inspect(wrap.(value))}"
    end
  end

  test "an atom this node does not have is refused, and not created" do
    name = "ampule_never_seen_#{System.unique_integer([:positive])}"
    before = :erlang.system_info(:atom_count)

    for bin <- [
          <<131, 119, byte_size(name), name::binary>>,
          <<131, 118, byte_size(name)::16, name::binary>>,
          <<131, 115, byte_size(name), name::binary>>,
          <<131, 100, byte_size(name)::16, name::binary>>,
          <<131, 104, 2, 97, 1, 119, byte_size(name), name::binary>>
        ] do
      assert Decode.decode(bin, @limit) == {:refused, :atoms}
    end

    assert :erlang.system_info(:atom_count) == before
  end

  test "a term that would decode past the limit is refused before it is decoded" do
    # 1,000,000 small integers: ~5 MB encoded, 16 MB as a list.
    list = Enum.to_list(1..1_000_000)
    assert byte_size(:erlang.term_to_binary(list)) < 8 * 1024 * 1024
    assert decode(list, 8 * 1024 * 1024) == :too_large
    assert {:ok, _} = decode(list, 20 * 1024 * 1024)

    assert decode(:binary.copy("x", 2_000_000), 1_000_000) == :too_large

    # A list claiming 2^32 - 1 elements in a few bytes is a lie, not a big term.
    assert Decode.decode(<<131, 108, 0xFFFFFFFF::32, 97, 1, 106>>, @limit) ==
             {:error, :bad_term}
  end

  test "the limit holds for a term that is small encoded and large decoded" do
    # 5,000,000 empty lists: 5 MB on the wire (one byte each), 80 MB as a list.
    bin = <<131, 108, 5_000_000::32, :binary.copy(<<106>>, 5_000_000)::binary, 106>>
    memory = :erlang.memory(:total)
    assert Decode.decode(bin, 64 * 1024 * 1024) == :too_large
    assert :erlang.memory(:total) - memory < 16 * 1024 * 1024
  end

  test "bytes term_to_binary does not write are a bad term" do
    good = :erlang.term_to_binary({:ok, [1, "two", 3.0]})

    bad = [
      <<>>,
      <<131>>,
      <<130, 97, 1>>,
      good <> <<0>>,
      :erlang.term_to_binary(:binary.copy("x", 1000), compressed: 9),
      <<131, 82, 0>>,
      <<131, 68, 0>>,
      <<131, 200>>,
      <<131, 77, 0::32, 3>>,
      <<131, 77, 1::32, 0, 1>>,
      <<131, 110, 1, 2, 1>>
    ]

    for bin <- bad, do: assert(Decode.decode(bin, @limit) == {:error, :bad_term}, inspect(bin))

    # Every proper prefix of a good term.
    for n <- 0..(byte_size(good) - 1) do
      assert Decode.decode(binary_part(good, 0, n), @limit) == {:error, :bad_term}
    end
  end

  test "nesting a million deep scans in constant memory" do
    deep = Enum.reduce(1..1_000_000, [], &[&1 | [&2]])
    bin = :erlang.term_to_binary(deep)
    assert {:ok, _} = Decode.scan(bin, @limit)
    assert {:ok, ^deep} = Decode.decode(bin, @limit)
  end

  test "random corruption of good terms never crashes and never lets a refused kind through" do
    :rand.seed(:exsss, {1, 2, 3})
    terms = [assorted(), {self(), make_ref()}, %{f: &:os.cmd/1}]

    for _ <- 1..3_000 do
      bin = terms |> Enum.random() |> :erlang.term_to_binary() |> corrupt()

      case Decode.decode(bin, @limit) do
        {:ok, term} ->
          assert :erlang.binary_to_term(bin) == term
          refute has_refused?(term)

        {:refused, kind} ->
          assert kind in [:atoms, :fun, :pid, :port, :reference]

        :too_large ->
          :ok

        {:error, :bad_term} ->
          :ok
      end
    end
  end

  defp corrupt(bin) do
    case :rand.uniform(3) do
      1 ->
        # flip a byte
        at = :rand.uniform(byte_size(bin)) - 1
        <<head::binary-size(at), _, tail::binary>> = bin
        <<head::binary, :rand.uniform(256) - 1, tail::binary>>

      2 ->
        # cut
        binary_part(bin, 0, :rand.uniform(byte_size(bin)))

      3 ->
        # overwrite 4 bytes (a length, often)
        at = :rand.uniform(max(byte_size(bin) - 4, 1)) - 1
        <<head::binary-size(at), _::32, tail::binary>> = bin
        <<head::binary, :rand.uniform(0xFFFFFFFF)::32, tail::binary>>
    end
  end

  defp has_refused?(t) when is_function(t) or is_pid(t) or is_port(t) or is_reference(t),
    do: true

  defp has_refused?(t) when is_tuple(t), do: t |> Tuple.to_list() |> has_refused?()
  defp has_refused?([h | t]), do: has_refused?(h) or has_refused?(t)
  defp has_refused?(t) when is_map(t), do: t |> Map.to_list() |> has_refused?()
  defp has_refused?(_), do: false
end
