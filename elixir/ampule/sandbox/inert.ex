defmodule Ampule.Sandbox.Inert do
  @moduledoc false
  # A decoded result of a sandbox is checked to be inert data before its caller gets it:
  # nothing in it may be a value that this node's code acts on with this node's rights,
  # or that C code here trusts (docs/security.md, "What a sandbox's result may hold").
  #
  # Elixir gives a map with `__struct__` behaviour through protocols that run in the
  # caller: a `%File.Stream{path: "/etc/shadow"}` made by a sandbox reads the file when
  # enumerated, an `%IO.Stream{device: Ampule.Port}` hangs its reader, a `1..10**12` range
  # costs the caller gigabytes under Enum.map. PCRE trusts a compiled pattern: a `%Regex{}`
  # or `{:re_pattern, ...}` changed by one byte crashes this VM under `Regex.match?/2`.
  # So:
  #
  #   - a tuple `{:re_pattern, _, _, _, _}` is refused (`:re_pattern`);
  #   - a map with a `:__struct__` key is refused (`{:struct, module}`) unless its module
  #     is one of the plain-data structs below, with exactly its fields and values of the
  #     types it documents, or a struct the user allowed (`config :ampule,
  #     result_structs: [...]`);
  #   - everything else (numbers, atoms that exist, binaries, lists, tuples, maps) is
  #     data, and is checked all the way down.
  #
  # The plain-data structs and how each is checked:
  #
  #   - Date, Time, NaiveDateTime, DateTime: `calendar: Calendar.ISO`, a valid date (year
  #     -9999..9999) and time, `microsecond: {0..999_999, 0..6}`; DateTime's `time_zone`
  #     and `zone_abbr` binaries of at most 255 bytes and offsets within a day;
  #   - URI: each field nil or a binary, `port` nil or 0..65535;
  #   - Version: `major`, `minor`, `patch` non-negative integers, `pre` a list of binaries
  #     and non-negative integers, `build` nil or a binary;
  #   - MapSet: `map` a map whose values are all `[]`, `version: 2`.
  #
  # Refused although they are "only data" in the docs: Range (its cost to the caller is
  # not bounded by its size: `1..1_000_000_000_000` is a few bytes), Regex, streams of
  # every kind, exceptions (a sandbox's raise comes as Ampule.RemoteError; return
  # `Exception.message(e)` to send the text), and any struct of the caller's own
  # application unless allowed.
  #
  # A user's own struct (`result_structs: [MyApp.Point, {MyApp.Money, &MyApp.Money.valid?/1}]`)
  # must be loaded and have exactly the struct's fields; with a function, it must also
  # return true for the map. Its values are checked as data like any other. Allow only
  # structs that are data: a struct whose protocols act (open files, send messages, call
  # C) hands the sandbox that action.
  #
  # The walk keeps its own stack of terms still to check instead of recursing, and runs in
  # the decoding process, whose heap is capped (Ampule.Sandbox.Decode).

  @type refusal :: :re_pattern | {:struct, atom} | :struct

  @plain [Date, Time, NaiveDateTime, DateTime, URI, Version, MapSet]

  @doc "The structs a result may hold without configuration."
  def plain_structs, do: @plain

  @doc "The user's structs (`config :ampule, result_structs: [...]`), as `%{module => check}`."
  @spec allowed() :: %{atom => (map -> boolean) | nil}
  def allowed do
    for entry <- Application.get_env(:ampule, :result_structs, []), into: %{} do
      case entry do
        {module, check} when is_atom(module) and is_function(check, 1) -> {module, check}
        module when is_atom(module) -> {module, nil}
      end
    end
  end

  @doc "`:ok`, or `{:refused, why}` for the first thing in `term` that is not inert data."
  @spec check(term, %{atom => (map -> boolean) | nil}) :: :ok | {:refused, refusal}
  def check(term, allowed), do: walk([term], allowed)

  defp walk([], _allowed), do: :ok

  defp walk([term | rest], allowed) when is_list(term) do
    case term do
      [head | tail] -> walk([head, tail | rest], allowed)
      [] -> walk(rest, allowed)
    end
  end

  defp walk([{:re_pattern, _, _, _, _} | _rest], _allowed), do: {:refused, :re_pattern}

  defp walk([term | rest], allowed) when is_tuple(term),
    do: walk(Tuple.to_list(term) ++ rest, allowed)

  defp walk([%{__struct__: module} = map | rest], allowed) do
    if struct_ok?(module, map, allowed),
      do: walk(Map.values(Map.delete(map, :__struct__)) ++ rest, allowed),
      else: {:refused, if(is_atom(module), do: {:struct, module}, else: :struct)}
  end

  defp walk([term | rest], allowed) when is_map(term),
    do: walk(Map.keys(term) ++ Map.values(term) ++ rest, allowed)

  defp walk([_data | rest], allowed), do: walk(rest, allowed)

  defp struct_ok?(module, map, allowed) when is_atom(module) do
    case allowed do
      %{^module => check} -> user_struct?(module, map, check)
      _ -> module in @plain and fields?(module, map) and plain?(map)
    end
  end

  defp struct_ok?(_module, _map, _allowed), do: false

  defp user_struct?(module, map, check) do
    Code.ensure_loaded?(module) and function_exported?(module, :__struct__, 0) and
      fields?(module, map) and (check == nil or check.(map) == true)
  rescue
    _ -> false
  end

  defp fields?(module, map),
    do:
      map_size(map) == map_size(module.__struct__()) and
        Enum.all?(Map.keys(module.__struct__()), &Map.has_key?(map, &1))

  defp plain?(%Date{} = d), do: date?(d)
  defp plain?(%Time{} = t), do: time?(t)
  defp plain?(%NaiveDateTime{} = t), do: date?(t) and time?(t)

  defp plain?(%DateTime{} = t) do
    date?(t) and time?(t) and short_binary?(t.time_zone) and short_binary?(t.zone_abbr) and
      offset?(t.utc_offset) and offset?(t.std_offset)
  end

  defp plain?(%URI{port: port} = uri) do
    (port == nil or (is_integer(port) and port in 0..65_535)) and
      uri
      |> Map.from_struct()
      |> Map.delete(:port)
      |> Map.values()
      |> Enum.all?(&nil_or_binary?/1)
  end

  defp plain?(%Version{} = v) do
    Enum.all?([v.major, v.minor, v.patch], &(is_integer(&1) and &1 >= 0)) and is_list(v.pre) and
      Enum.all?(v.pre, &(is_binary(&1) or (is_integer(&1) and &1 >= 0))) and
      nil_or_binary?(v.build)
  end

  defp plain?(%MapSet{map: map, version: 2}) when is_map(map) and not is_struct(map),
    do: Enum.all?(map, fn {_key, value} -> value == [] end)

  defp plain?(_other), do: false

  defp date?(%{calendar: Calendar.ISO, year: y, month: m, day: d})
       when is_integer(y) and y in -9999..9999 and is_integer(m) and is_integer(d),
       do: Calendar.ISO.valid_date?(y, m, d)

  defp date?(_other), do: false

  defp time?(%{calendar: Calendar.ISO, hour: h, minute: m, second: s, microsecond: {us, p}})
       when is_integer(h) and is_integer(m) and is_integer(s) and is_integer(us) and
              us in 0..999_999 and is_integer(p) and p in 0..6,
       do: Calendar.ISO.valid_time?(h, m, s, {us, p})

  defp time?(_other), do: false

  defp offset?(offset), do: is_integer(offset) and offset in -86_400..86_400
  defp short_binary?(value), do: is_binary(value) and byte_size(value) <= 255
  defp nil_or_binary?(value), do: value == nil or is_binary(value)
end
