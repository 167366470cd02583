defmodule Ampule.Closure do
  @moduledoc false
  # Which functions can run in a container. A closure is its module's code plus what it
  # captured: the container loads that module from the code paths Ampule mounts, so the
  # module must be on disk there. Closures made by iex or `Code.eval_string/1` carry their
  # own code (they are `:erl_eval`'s) and external functions (`&String.upcase/1`) name a
  # module the container has, or not, like an MFA. What is compiled only into this node's
  # memory (a script's top level, an ExUnit test module, `Code.compile_string/1`) cannot
  # travel: it is refused here, before anything is sent, instead of failing inside with
  # `UndefinedFunctionError`.

  @doc "Raises `ArgumentError` naming the module if `fun` (or a closure it captured) cannot run in a container."
  @spec check!(function) :: function
  def check!(fun) when is_function(fun) do
    case stuck_in_memory(fun) do
      nil ->
        fun

      module ->
        raise ArgumentError,
              "the function #{inspect(fun)} was compiled into #{inspect(module)}, which " <>
                "exists only in this node's memory (a script's top level or a test file), " <>
                "so a container cannot load its code. What runs in a container: a function " <>
                "of a module compiled to disk (lib/, on the mounted code path), " <>
                "{module, function, args}, a closure made in iex or by Code.eval_string/1, " <>
                "or Ampule.run/2, which sends the code itself"
    end
  end

  # The first module a closure (or what it captured) needs that is not on disk, or nil.
  defp stuck_in_memory(fun) do
    case :erlang.fun_info(fun, :type) do
      {:type, :external} ->
        nil

      {:type, :local} ->
        {:module, module} = :erlang.fun_info(fun, :module)
        {:env, env} = :erlang.fun_info(fun, :env)

        cond do
          module == :erl_eval -> Enum.find_value(env, &captured/1)
          not on_disk?(module) -> module
          true -> Enum.find_value(env, &captured/1)
        end
    end
  end

  defp captured(f) when is_function(f), do: stuck_in_memory(f)
  defp captured(l) when is_list(l), do: Enum.find_value(l, &captured/1)
  defp captured(t) when is_tuple(t), do: t |> Tuple.to_list() |> captured()
  defp captured(%{} = m), do: m |> Map.to_list() |> captured()
  defp captured(_), do: nil

  defp on_disk?(module) do
    case :code.which(module) do
      path when is_list(path) and path != [] -> File.regular?(path)
      _ -> false
    end
  end
end
