# Untrusted source (issue 22, item 6): `Ampule.eval_string/2` of `1 + 1` and of a 50-line
# module with a few calls, in a cold sandbox, a pooled one and a prepared pooled one
# (`prepare: Ampule.Eval.prepare()`), against `Code.eval_string/1` in this node as the
# floor. Run with `script/bench eval` (as root, on a quiet machine). Prints a Markdown
# report and writes it to bench/eval_results.md.
#
# Each sample is one `eval_string` as a caller sees it: for the cold side, the sandbox's
# boot, the evaluation and its destruction; for the pooled sides, taking the sandbox from
# a full pool, the evaluation, and giving it back (the pool boots the next behind, and
# the harness waits for the pool to be full again, untimed, before the next sample).
#
# Sizes (environment): BENCH_EVAL_REPS (samples of each side and source, 20).
# AMPULE_BRIDGE, AMPULE_SUBNET and AMPULE_STATE_DIR as for the suite.

Code.require_file("support.exs", __DIR__)
Bench.Env.apply()

defmodule Bench.Eval do
  alias Ampule.Eval.Success

  @pool :bench_eval_pool
  @prepared_pool :bench_eval_pool_prepared

  def pools, do: [@pool, @prepared_pool]

  # A 50-line module (a small inventory with validation and a report) and a few calls.
  def module_source do
    """
    defmodule BenchEval.Inventory do
      @moduledoc "A small inventory: items with a name, a count and a price in cents."

      defstruct items: %{}

      def new, do: %__MODULE__{}

      def add(%__MODULE__{items: items} = inv, name, count, price)
          when is_binary(name) and is_integer(count) and count > 0 and is_integer(price) do
        item = Map.get(items, name, %{count: 0, price: price})
        %{inv | items: Map.put(items, name, %{item | count: item.count + count, price: price})}
      end

      def remove(%__MODULE__{items: items} = inv, name, count) do
        case Map.fetch(items, name) do
          {:ok, %{count: have}} when have > count ->
            {:ok, %{inv | items: Map.update!(items, name, &%{&1 | count: have - count})}}

          {:ok, %{count: ^count}} ->
            {:ok, %{inv | items: Map.delete(items, name)}}

          {:ok, _} ->
            {:error, :not_enough}

          :error ->
            {:error, :unknown}
        end
      end

      def total(%__MODULE__{items: items}) do
        Enum.reduce(items, 0, fn {_name, %{count: c, price: p}}, acc -> acc + c * p end)
      end

      def report(%__MODULE__{items: items} = inv) do
        lines =
          items
          |> Enum.sort_by(fn {name, _} -> name end)
          |> Enum.map(fn {name, %{count: c, price: p}} ->
            String.pad_trailing(name, 10) <> " x" <> Integer.to_string(c) <> " " <> cents(c * p)
          end)

        Enum.join(lines ++ ["total " <> cents(total(inv))], "\\n")
      end

      defp cents(n), do: "\#{div(n, 100)}.\#{n |> rem(100) |> Integer.to_string() |> String.pad_leading(2, "0")}"
    end

    inv =
      BenchEval.Inventory.new()
      |> BenchEval.Inventory.add("apple", 3, 50)
      |> BenchEval.Inventory.add("pear", 2, 75)
      |> BenchEval.Inventory.add("apple", 1, 50)

    {:ok, inv} = BenchEval.Inventory.remove(inv, "pear", 1)
    {BenchEval.Inventory.total(inv), BenchEval.Inventory.report(inv)}
    """
  end

  def sources, do: [{"`1 + 1`", "1 + 1"}, {"a 50-line module and 4 calls", module_source()}]

  def start_pools do
    {:ok, _} = Ampule.Pool.start_link(name: @pool, size: 2, sandbox: true)

    {:ok, _} =
      Ampule.Pool.start_link(
        name: @prepared_pool,
        size: 2,
        sandbox: true,
        prepare: Ampule.Eval.prepare()
      )

    :ok
  end

  # Until every pool holds its 2 idle sandboxes and nothing else is being released.
  def quiet do
    full = Enum.all?(pools(), &match?(%{idle: 2, booting: 0}, Ampule.Pool.stats(&1)))

    released =
      case File.ls(Path.join(Bench.Env.state_dir(), "apps")) do
        {:ok, l} -> length(Enum.reject(l, &String.starts_with?(&1, "."))) <= 2 * length(pools())
        _ -> true
      end

    unless full and released do
      Process.sleep(2)
      quiet()
    end
  end

  # The floor: this node's own `Code.eval_string/1` (a module redefined on each sample).
  def local(source) do
    Bench.Stats.time(fn -> {_value, _binding} = Code.eval_string(source) end)
  end

  def eval(source, opts) do
    {us, result} = :timer.tc(fn -> Ampule.eval_string(source, opts) end)
    %Success{} = result
    us
  end
end

alias Bench.{Eval, Stats}

reps = String.to_integer(System.get_env("BENCH_EVAL_REPS", "20"))
load_start = Bench.Env.load()
Code.compiler_options(ignore_module_conflict: true)

# The same answers everywhere: the local floor's value is each side's.
expected = Map.new(Eval.sources(), fn {name, src} -> {name, elem(Code.eval_string(src), 0)} end)

# Warm up: a cold sandbox (the port, the page cache), then the pools.
%Ampule.Eval.Success{} = Ampule.eval_string("1 + 1")
:ok = Eval.start_pools()

# How each side evaluates: in this node (nil) or with these options of eval_string/2.
sides = [
  local: nil,
  cold: [],
  pooled: [pool: :bench_eval_pool],
  prepared: [pool: :bench_eval_pool_prepared]
]

run = fn
  nil, src -> Eval.local(src)
  opts, src -> Eval.eval(src, opts)
end

for {name, src} <- Eval.sources(), {side, opts} <- sides, opts != nil do
  %Ampule.Eval.Success{value: value} = Ampule.eval_string(src, opts)
  value == expected[name] || raise "#{side} evaluated #{name} to #{inspect(value)}"
end

samples =
  for i <- 1..reps, {src_name, src} <- Eval.sources(), {side, opts} <- Stats.rotate(sides, i) do
    Eval.quiet()
    {side, src_name, run.(opts, src)}
  end

Enum.each(Eval.pools(), &GenServer.stop/1)
load_end = Bench.Env.load()

label = %{
  local: "`Code.eval_string/1` in this node (the floor)",
  cold: "cold sandbox (boot, evaluation, destroy)",
  pooled: "pooled sandbox (pool of 2, no preparation)",
  prepared: "prepared pooled sandbox (`prepare: Ampule.Eval.prepare()`)"
}

rows =
  for {side, _} <- sides do
    cells =
      Enum.map_join(Eval.sources(), " | ", fn {src_name, _} ->
        us = Stats.median(for {^side, ^src_name, us} <- samples, do: us)
        floor = Stats.median(for {:local, ^src_name, us} <- samples, do: us)
        "#{Stats.ms2(us)} ms (#{Stats.ratio(us, floor)})"
      end)

    "| #{label[side]} | #{cells} |"
  end
  |> Enum.join("\n")

report = """
Machine: #{Bench.Env.machine()}. Load (1, 5, 15 min) at the start: #{load_start}; at the end: #{load_end}.

### `Ampule.eval_string/2`, one at a time

Median of #{reps} sample(s) of each, wall time as the caller sees it (÷ the floor). Every side gave the floor's value.

| side | #{Enum.map_join(Eval.sources(), " | ", &elem(&1, 0))} |
|---|---|---|
#{rows}
"""

IO.puts(report)
File.write!(Path.join(__DIR__, "eval_results.md"), report)
