# The seed README's examples, as written there, against real containers; each result is
# printed. Run by `script/demo` (as root: the port program makes containers).

IO.puts("== a pipeline via anonymous containers")

result =
  {:erlang, :node, []}
  |> Ampule.call()
  |> Ampule.mfa(:erlang, :atom_to_list)
  |> Ampule.call()

IO.inspect(result, label: "node name of the first container, as a charlist")

IO.puts("\n== a pipeline via a named container")
container = Ampule.spawn()

result =
  {:erlang, :node, []}
  |> Ampule.call(container)
  |> Ampule.mfa(:erlang, :atom_to_list)
  |> Ampule.call(container)
  |> List.to_atom()

IO.inspect(result, label: "back to the container's node name")

IO.puts("\n== spawn a process in a container")
# Typed at the iex prompt, as in the seed. (A closure compiled in this .exs file would live
# only in this node's memory; one made by the shell's evaluator, like iex's, runs anywhere.)
{_, binding} =
  Code.eval_string(
    """
    pid = self()
    Node.spawn(container.nodename, fn -> ls = :os.cmd('ls -al'); send(pid, ls) end)
    """,
    container: container
  )

pid = binding[:pid]
^pid = self()

receive do
  ls -> IO.puts("ls -al inside #{container.nodename}:\n#{ls}")
after
  10_000 -> raise "no answer from #{container.nodename}"
end

:ok = Ampule.destroy(container)

IO.puts("== boot a system container and use its console (busybox; login ubuntu/ubuntu)")
system = Ampule.create()

await = fn await, text, acc ->
  if String.contains?(acc, text) do
    acc
  else
    receive do
      {:ampule_console, ^system, bytes} ->
        await.(await, text, acc <> bytes)

      # After 100 messages the console goes passive until re-armed (flow control).
      {:ampule_console_passive, ^system} ->
        :ok = Ampule.console_active(system, 100)
        await.(await, text, acc)
    after
      30_000 -> raise "no #{inspect(text)} on the console: #{inspect(acc)}"
    end
  end
end

await.(await, "login:", "")
# default username
"ubuntu\n" |> Ampule.console(system)
await.(await, "Password:", "")
# default password
"ubuntu\n" |> Ampule.console(system)
await.(await, "$ ", "")
# run a command
"ls -al\n" |> Ampule.console(system)
IO.write(await.(await, "..\r\n", ""))
:ok = Ampule.destroy(system)
IO.puts("\nall containers destroyed")
