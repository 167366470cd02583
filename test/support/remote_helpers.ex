defmodule Ampule.RemoteHelpers do
  @moduledoc false
  # Compiled test code, on disk under _build/test, so containers can load it from the code
  # path Ampule mounts: functions to call there and anonymous functions to send there.

  @doc "The seed README's third example, as a function compiled in a module."
  def ls_fun(pid),
    do: fn ->
      ls = :os.cmd(~c"ls -al")
      send(pid, ls)
    end

  @doc "Registers the calling (remote) process under `name`, then sleeps."
  def register_and_sleep(name, ms) do
    Process.register(self(), name)
    Process.sleep(ms)
    :woke_up
  end

  def raise_error(message), do: raise(ArgumentError, message)
  def throw_value(value), do: throw(value)
  def exit_with(reason), do: exit(reason)

  @doc "Keeps one scheduler busy for `ms` of wall time; returns the wall time spun."
  def spin(ms) do
    start = System.monotonic_time(:millisecond)
    spin_until(start + ms)
    System.monotonic_time(:millisecond) - start
  end

  defp spin_until(deadline) do
    if System.monotonic_time(:millisecond) < deadline, do: spin_until(deadline)
  end

  @doc "Elixir's standard library, used inside the container."
  def elixir_inside(words), do: words |> Enum.map(&String.upcase/1) |> Enum.join(" ")
end
