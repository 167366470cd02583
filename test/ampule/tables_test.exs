defmodule Ampule.TablesTest do
  # One table per language, checked both ways: what the port program says it sends and
  # takes (`ampule_port --print-tables`, native/ampule_port/src/tables.rs), what this
  # library knows (Ampule.Error's reasons, Ampule.Protocol's atoms, Ampule.Options' option
  # keys, bounds and name rule) and docs/protocol.md's "Every atom the port sends" must
  # agree. Needs the built port, not root: the flag prints and exits.
  use ExUnit.Case, async: true

  alias Ampule.{Error, Options, Protocol}

  @protocol_md Path.expand("../../docs/protocol.md", __DIR__)

  setup_all do
    port = Ampule.Port.executable()

    unless File.exists?(port) do
      flunk("no port program at #{port}: run `mix compile` (it builds it with cargo)")
    end

    {text, 0} = System.cmd(port, ["--print-tables"], stderr_to_stdout: true)
    %{port: parse(text)}
  end

  defp parse(text) do
    text
    |> String.split("\n", trim: true)
    |> Enum.reduce(%{reasons: [], options: %{spawn: %{}, create: %{}}, names: []}, fn
      "reason " <> term, acc ->
        %{acc | reasons: acc.reasons ++ [erlang_term(term)]}

      "option " <> rest, acc ->
        [kind, key, min, max] = String.split(rest, " ")
        bounds = if min == "-", do: nil, else: {String.to_integer(min), String.to_integer(max)}

        put_in(acc, [:options, String.to_atom(kind), String.to_atom(key)], bounds)

      "name " <> rest, acc ->
        [verdict, name] = String.split(rest, " ", parts: 2)
        %{acc | names: acc.names ++ [{name, verdict == "ok"}]}
    end)
  end

  defp erlang_term(text) do
    {:ok, tokens, _} = :erl_scan.string(String.to_charlist(text <> "."))
    {:ok, term} = :erl_parse.parse_term(tokens)
    term
  end

  defp head(reason) when is_atom(reason), do: reason
  defp head(reason) when is_tuple(reason), do: elem(reason, 0)

  defp atoms_in(term) when is_atom(term), do: [term]
  defp atoms_in(term) when is_tuple(term), do: term |> Tuple.to_list() |> atoms_in()
  defp atoms_in(term) when is_list(term), do: Enum.flat_map(term, &atoms_in/1)
  defp atoms_in(_term), do: []

  # The atoms of docs/protocol.md's "Every atom the port sends": the paragraph after the
  # one that introduces it.
  defp documented_atoms do
    [_, section] = @protocol_md |> File.read!() |> String.split("## Every atom the port sends")
    [_intro, list | _] = String.split(section, "\n\n", trim: true)

    for [_, code] <- Regex.scan(~r/`([^`]*)`/, list),
        word <- String.split(code),
        word =~ ~r/\A[a-z][a-z0-9_]*\z/,
        uniq: true,
        do: String.to_atom(word)
  end

  test "the port's reasons are Ampule.Error's, and each has words of its own", %{port: port} do
    sent = port.reasons |> Enum.map(&head/1) |> Enum.uniq() |> Enum.sort()
    assert sent == Enum.sort(Error.port_reasons())

    for reason <- port.reasons do
      refute Error.format_error(reason) =~ "unexpected reason",
             "Ampule.Error.format_error/1 has no clause for the port's #{inspect(reason)}"
    end
  end

  test "every atom of the port's reasons is in Ampule.Protocol and docs/protocol.md", %{
    port: port
  } do
    atoms = port.reasons |> atoms_in() |> Enum.uniq()
    assert atoms -- Protocol.atoms() == []
    assert atoms -- documented_atoms() == []
  end

  test "Ampule.Protocol names exactly docs/protocol.md's atoms, each once" do
    assert Protocol.atoms() -- Enum.uniq(Protocol.atoms()) == []
    assert Enum.sort(Protocol.atoms()) == Enum.sort(documented_atoms())
  end

  test "the option keys and bounds are the port's", %{port: port} do
    for kind <- [:spawn, :create] do
      ours = Options.port_options()[kind]
      assert Enum.sort(Map.keys(ours)) == Enum.sort(Map.keys(port.options[kind])), "#{kind}"

      for {key, bounds} <- port.options[kind] do
        case ours[key] do
          {_min, _max} = ours -> assert ours == bounds, "#{kind} #{key}"
          other -> assert other in [:checked, :unused] and bounds == nil, "#{kind} #{key}"
        end
      end
    end

    for key <- [:memory, :pids, :cpu_shares] do
      {min, _max} = port.options.spawn[key]
      assert Options.limit_min(key) == min
    end
  end

  test "a name is refused here exactly when the port refuses it", %{port: port} do
    assert port.names != []

    for {name, port_ok?} <- port.names do
      ours =
        try do
          Options.spawn!(name: name, owner: false)
          true
        rescue
          ArgumentError -> false
        end

      assert ours == port_ok?, "#{inspect(name)}: the port says #{port_ok?}, Options #{ours}"
    end
  end
end
