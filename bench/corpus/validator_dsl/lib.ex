defmodule Corpus.Validator do
  @moduledoc "A validation DSL: `use Corpus.Validator`, then `field` and `rule` declarations."

  defmacro __using__(_opts) do
    quote do
      import Corpus.Validator, only: [field: 2, field: 3, rule: 2]
      Module.register_attribute(__MODULE__, :fields, accumulate: true)
      Module.register_attribute(__MODULE__, :rules, accumulate: true)
      @before_compile Corpus.Validator
    end
  end

  defmacro field(name, type, opts \\ []) do
    quote do
      @fields {unquote(name), unquote(type), unquote(opts)}
    end
  end

  defmacro rule(message, do: body) do
    fun_name = :"rule_#{:erlang.phash2(message)}"

    quote do
      @rules {unquote(message), unquote(fun_name)}
      def unquote(fun_name)(var!(data)), do: unquote(body)
    end
  end

  defmacro __before_compile__(env) do
    fields = env.module |> Module.get_attribute(:fields) |> Enum.reverse()
    rules = env.module |> Module.get_attribute(:rules) |> Enum.reverse()

    checks =
      for {name, type, opts} <- fields do
        quote do
          Corpus.Validator.check(data, unquote(name), unquote(type), unquote(opts))
        end
      end

    quote do
      def fields, do: unquote(Enum.map(fields, &elem(&1, 0)))

      def validate(data) when is_map(data) do
        field_errors = Enum.reject([unquote_splicing(checks)], &is_nil/1)

        rule_errors =
          for {msg, fun} <- unquote(rules), not apply(__MODULE__, fun, [data]), do: msg

        case field_errors ++ rule_errors do
          [] -> {:ok, data}
          errors -> {:error, errors}
        end
      end
    end
  end

  @doc false
  def check(data, name, type, opts) do
    value = Map.get(data, name)

    cond do
      is_nil(value) and Keyword.get(opts, :required, false) -> {name, :required}
      is_nil(value) -> nil
      not type_ok?(type, value) -> {name, {:type, type}}
      (min = opts[:min]) && size(value) < min -> {name, {:min, min}}
      (max = opts[:max]) && size(value) > max -> {name, {:max, max}}
      true -> nil
    end
  end

  defp type_ok?(:string, v), do: is_binary(v)
  defp type_ok?(:integer, v), do: is_integer(v)
  defp type_ok?(:list, v), do: is_list(v)
  defp type_ok?(:boolean, v), do: is_boolean(v)

  defp size(v) when is_binary(v), do: String.length(v)
  defp size(v) when is_list(v), do: length(v)
  defp size(v), do: v
end

defmodule Corpus.Validator.User do
  use Corpus.Validator

  field(:name, :string, required: true, min: 2, max: 20)
  field(:age, :integer, min: 0, max: 150)
  field(:tags, :list, max: 3)
  field(:admin, :boolean)

  rule "admins are adults" do
    not Map.get(data, :admin, false) or Map.get(data, :age, 0) >= 18
  end
end
