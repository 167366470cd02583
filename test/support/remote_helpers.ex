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

  @doc """
  Opens `n` TCP connections to `ip:port` at once, each from its own process, which holds
  its socket for `hold` ms; returns every `gen_tcp.connect` result.
  """
  def connect_many(ip, port, n, timeout, hold) do
    caller = self()

    for _ <- 1..n do
      spawn(fn ->
        send(caller, {:connected, :gen_tcp.connect(ip, port, [], timeout)})
        Process.sleep(hold)
      end)
    end

    for _ <- 1..n, do: receive(do: ({:connected, r} -> r))
  end

  @doc """
  Sends EPMD's NAMES request (what `net_adm:names/1` sends) to `ip`, waiting at most
  `timeout` ms for a connection: `{:ok, text}` lists the nodes registered there.
  """
  def epmd_names(ip, timeout) do
    with {:ok, s} <- :gen_tcp.connect(ip, 4369, [:binary, active: false], timeout),
         :ok <- :gen_tcp.send(s, <<1::16, ?n>>),
         {:ok, <<_epmd_port::32, text::binary>>} <- read_all(s, "") do
      {:ok, text}
    end
  end

  defp read_all(s, acc) do
    case :gen_tcp.recv(s, 0, 5_000) do
      {:ok, data} -> read_all(s, acc <> data)
      {:error, :closed} -> {:ok, acc}
      error -> error
    end
  end

  @doc "A TCP connection attempt: `:connected` (the socket closed again) or `{:error, reason}`."
  def try_connect(ip, port, timeout) do
    case :gen_tcp.connect(ip, port, [], timeout) do
      {:ok, socket} ->
        :gen_tcp.close(socket)
        :connected

      {:error, reason} ->
        {:error, reason}
    end
  end

  @doc "Sleeps `ms`, then returns `ms` (a function of one argument, compiled to disk)."
  def sleep_then(ms) do
    Process.sleep(ms)
    ms
  end

  @doc "The name of the host (container) it runs on, whatever its argument."
  def hostname(_ignored), do: :net_adm.localhost()

  @doc "Fails the way its argument says: for Ampule.map's error cases."
  def behave({:sleep, ms}), do: Process.sleep(ms)
  def behave({:raise, message}), do: raise(ArgumentError, message)
  def behave({:throw, value}), do: throw(value)
  def behave({:exit, reason}), do: exit(reason)
  def behave({:ok, value}), do: value

  @doc "Elixir's standard library, used inside the container."
  def elixir_inside(words), do: words |> Enum.map(&String.upcase/1) |> Enum.join(" ")
end
