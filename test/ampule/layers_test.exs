defmodule Ampule.LayersTest do
  # The Elixir half's layering, checked as the port's is (native/ampule_port/tests/layers.rs):
  # `Ampule` is the front, and hands off to the modules under elixir/ampule/; none of them
  # calls back into it. A module below that needs what the front offers calls the part that
  # does it (`Ampule.Call`, `Ampule.Containers`, `Ampule.Error`, ...). Read from the
  # compiled modules' import tables, so that an alias, a pipe or a capture cannot hide a
  # call; `Ampule`'s macros (`run/1,2,3`) are expanded before they get there.
  use ExUnit.Case, async: true

  @source_dir Path.expand("../../elixir/ampule", __DIR__)

  defp modules_below_the_front do
    {:ok, modules} = :application.get_key(:ampule, :modules)

    for module <- modules,
        source = module.module_info(:compile)[:source],
        source != nil,
        String.starts_with?(Path.expand(to_string(source)), @source_dir <> "/"),
        do: module
  end

  defp calls_into(module, target) do
    {:ok, {^module, [imports: imports]}} = module |> :code.which() |> :beam_lib.chunks([:imports])

    for {^target, function, arity} <- imports, do: {function, arity}
  end

  test "the modules under elixir/ampule/ are the ones checked" do
    modules = modules_below_the_front()
    assert Ampule.Pool in modules
    assert Ampule.Map in modules
    assert Ampule.Error in modules
    refute Ampule in modules
  end

  test "no module under elixir/ampule/ calls a function of the front module Ampule" do
    offenders =
      for module <- modules_below_the_front(),
          calls = calls_into(module, Ampule),
          calls != [],
          do:
            "#{inspect(module)} calls " <>
              Enum.map_join(calls, ", ", fn {f, a} -> "Ampule.#{f}/#{a}" end)

    assert offenders == [],
           "modules below the front call back into it (call the part instead):\n" <>
             Enum.join(offenders, "\n")
  end
end
