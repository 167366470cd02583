defmodule Corpus.Router do
  @moduledoc "A router DSL: `get \"/users/:id\", :show` compiles each route to a pattern-matching clause."

  defmacro __using__(_opts) do
    quote do
      import Corpus.Router, only: [get: 2, post: 2, scope: 2]
      @scope []
      @before_compile Corpus.Router
    end
  end

  defmacro get(path, action), do: route("GET", path, action)
  defmacro post(path, action), do: route("POST", path, action)

  defmacro scope(prefix, do: block) do
    quote do
      previous = @scope
      @scope previous ++ String.split(unquote(prefix), "/", trim: true)
      unquote(block)
      @scope previous
    end
  end

  defp route(method, path, action) do
    {segments, params} =
      path
      |> String.split("/", trim: true)
      |> Enum.map_reduce([], fn
        ":" <> name, acc ->
          var = Macro.var(String.to_atom(name), __MODULE__)
          {var, [{name, var} | acc]}

        literal, acc ->
          {literal, acc}
      end)

    params_map = {:%{}, [], Enum.reverse(params)}

    quote do
      def match(unquote(method), @scope ++ unquote(segments)) do
        {:ok, unquote(action), unquote(params_map)}
      end
    end
  end

  defmacro __before_compile__(_env) do
    quote do
      def match(_method, _segments), do: {:error, :not_found}

      def dispatch(method, path) do
        match(method, String.split(path, "/", trim: true))
      end
    end
  end
end

defmodule Corpus.Router.App do
  use Corpus.Router

  get("/", :home)
  get("/users", :index)
  get("/users/:id", :show)
  post("/users", :create)
  get("/users/:id/posts/:post_id", :post)

  scope "/admin" do
    get("/stats", :stats)
    get("/users/:id", :admin_user)
  end

  get("/files/:name", :file)
end
