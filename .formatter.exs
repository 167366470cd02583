[
  inputs: ["{mix,.formatter}.exs", "{elixir,test}/**/*.{ex,exs}"]
]
