defmodule Corpus.StateMachine do
  @moduledoc "A state-machine DSL: `transition :event, from: ..., to: ...` generates function clauses."

  defmacro __using__(opts) do
    initial = Keyword.fetch!(opts, :initial)

    quote do
      import Corpus.StateMachine, only: [transition: 2]
      Module.register_attribute(__MODULE__, :transitions, accumulate: true)
      @before_compile Corpus.StateMachine
      def initial, do: unquote(initial)
    end
  end

  defmacro transition(event, opts) do
    from = opts |> Keyword.fetch!(:from) |> List.wrap()
    to = Keyword.fetch!(opts, :to)

    clauses =
      for state <- from do
        quote do
          def fire(unquote(state), unquote(event)), do: {:ok, unquote(to)}
        end
      end

    quote do
      unquote_splicing(clauses)
      @transitions {unquote(event), unquote(from), unquote(to)}
    end
  end

  defmacro __before_compile__(env) do
    transitions = Module.get_attribute(env.module, :transitions)

    states =
      transitions
      |> Enum.flat_map(fn {_e, from, to} -> [to | from] end)
      |> Enum.uniq()
      |> Enum.sort()

    events = transitions |> Enum.map(&elem(&1, 0)) |> Enum.uniq() |> Enum.sort()

    quote do
      def fire(state, event), do: {:error, {:invalid, state, event}}
      def states, do: unquote(states)
      def events, do: unquote(events)

      def run(events),
        do:
          Enum.reduce_while(
            events,
            {:ok, initial()},
            &Corpus.StateMachine.step(__MODULE__, &1, &2)
          )

      def available(state), do: Enum.filter(events(), &match?({:ok, _}, fire(state, &1)))
    end
  end

  @doc false
  def step(module, event, {:ok, state}) do
    case module.fire(state, event) do
      {:ok, next} -> {:cont, {:ok, next}}
      error -> {:halt, error}
    end
  end
end

defmodule Corpus.StateMachine.Order do
  use Corpus.StateMachine, initial: :cart

  transition(:checkout, from: :cart, to: :pending)
  transition(:pay, from: :pending, to: :paid)
  transition(:ship, from: :paid, to: :shipped)
  transition(:deliver, from: :shipped, to: :delivered)
  transition(:cancel, from: [:cart, :pending, :paid], to: :cancelled)
  transition(:refund, from: [:paid, :delivered], to: :refunded)
end

defmodule Corpus.StateMachine.Door do
  use Corpus.StateMachine, initial: :closed

  transition(:open, from: :closed, to: :opened)
  transition(:close, from: :opened, to: :closed)
  transition(:lock, from: :closed, to: :locked)
  transition(:unlock, from: :locked, to: :closed)
end
