defmodule Ampule.Run do
  @moduledoc false
  # The expansion of the `Ampule.run/1,2,3` macros: the block travels quoted, with the
  # values of the caller's variables it uses, to `Ampule.Remote.Eval` in the container,
  # by the expansion calling what `Ampule.call/2,3` calls.

  @doc false
  @spec quoted_with(Macro.t(), keyword, Macro.Env.t()) :: Macro.t()
  def quoted_with(target, opts, caller) do
    {block, opts} = Keyword.pop(opts, :do)

    case Keyword.pop(opts, :timeout) do
      {nil, []} -> quoted(target, block, caller)
      {timeout, []} -> quoted({:__with_timeout__, target, timeout}, block, caller)
      {_, other} -> raise ArgumentError, "Ampule.run/2: unknown options #{inspect(other)}"
    end
  end

  @doc false
  @spec quoted(Macro.t(), Macro.t(), Macro.Env.t()) :: Macro.t()
  def quoted(_target, nil, _caller), do: raise(ArgumentError, "Ampule.run needs a do block")

  def quoted(target, block, caller) do
    bound = caller |> Macro.Env.vars() |> MapSet.new()

    used =
      block
      |> Macro.prewalk(MapSet.new(), fn
        {name, _meta, context} = var, acc when is_atom(name) and is_atom(context) ->
          if MapSet.member?(bound, {name, context}),
            do: {var, MapSet.put(acc, {name, context})},
            else: {var, acc}

        other, acc ->
          {other, acc}
      end)
      |> elem(1)
      |> Enum.filter(fn {_name, context} -> context == nil end)

    binding = for {name, nil} <- used, do: {name, Macro.var(name, nil)}

    mfa = quote do: {Ampule.Remote.Eval, :eval, [unquote(Macro.escape(block)), unquote(binding)]}

    case target do
      {:__with_timeout__, container, timeout} ->
        quote do: Ampule.Call.call!(unquote(mfa), unquote(container), unquote(timeout))

      target ->
        quote do: Ampule.Call.call!(unquote(mfa), unquote(target))
    end
  end
end
