alias Ampule.Test.Host

# Tests tagged :root or :lxc make real containers: they need root (the port program runs
# as root) and a host that `mix ampule.check` passes. As root they run; otherwise they are
# excluded, and this says how to run them.
exclude =
  if Host.root?() do
    []
  else
    IO.puts("""
    Excluding tests tagged :root and :lxc: they make real containers, which needs root.
    Run them as root (`sudo mix test`, or as root: `mix test`); `mix ampule.check` lists
    what else the host needs.
    """)

    [:root, :lxc]
  end

if Host.root?() do
  # After the whole suite: nothing of Ampule may be left on the machine.
  ExUnit.after_suite(fn _result ->
    left = Host.leftovers()
    count = left |> Map.values() |> Enum.map(&length/1) |> Enum.sum()

    IO.puts(
      "\nLeftover check: #{length(left.containers)} container(s) in the port, " <>
        "#{length(left.dirs)} container dir(s) under #{Host.state_dir()}/{lxc,apps}, " <>
        "#{length(left.veths)} veth(s) on #{Host.bridge()}, #{length(left.cgroups)} lxc cgroup(s), " <>
        "#{length(left.leases)} address lease(s), #{length(left.sockets)} agent socket(s), " <>
        "#{length(left.channels)} sandbox channel(s)"
    )

    if count > 0 do
      IO.puts(:stderr, "LEFTOVERS after the suite: #{inspect(left)}")
      System.at_exit(fn _ -> exit({:shutdown, 1}) end)
    end
  end)
end

# The hostile tests make raw system calls by their x86_64 numbers.
exclude =
  if :erlang.system_info(:system_architecture) |> to_string() |> String.starts_with?("x86_64"),
    do: exclude,
    else: [:x86_64 | exclude]

ExUnit.start(exclude: exclude, capture_log: true)
