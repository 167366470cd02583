[
  inputs: ["{mix,.formatter}.exs", "{elixir,test,bench,examples}/**/*.{ex,exs}"]
]
