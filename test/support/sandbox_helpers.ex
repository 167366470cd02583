defmodule Ampule.Test.Point do
  @moduledoc false
  # A struct of the caller's own application, for `config :ampule, result_structs`.
  defstruct [:x, :y]
end

defmodule Ampule.SandboxHelpers do
  @moduledoc false
  # Code that runs inside sandboxes in the tests (compiled to disk under _build/test, so
  # a sandbox loads it from the code path Ampule mounts), among it the attacks: code
  # beside the agent can find the agent's socket and write to it as it likes.

  @doc "The agent's socket: the Unix socket connected to /run/ampule/agent.sock (or `path`)."
  def agent_socket do
    Enum.find(:erlang.ports(), fn port ->
      :erlang.port_info(port, :name) == {:name, ~c"tcp_inet"} and
        match?({:ok, {:local, _}}, :inet.peername(port))
    end)
  end

  @doc "The agent's process."
  def agent_pid do
    {:connected, pid} = :erlang.port_info(agent_socket(), :connected)
    pid
  end

  @doc "The agent process's memory, in bytes."
  def agent_memory do
    {:memory, bytes} = Process.info(agent_pid(), :memory)
    bytes
  end

  @doc "Writes a whole frame of garbage (an unknown type)."
  def write_garbage do
    :ok = :gen_tcp.send(agent_socket(), <<99, "garbage">>)
    Process.sleep(:infinity)
  end

  @doc "Writes a result for a call the host never made."
  def forge_result do
    frame = [<<4, 0xFFFFFFFFFFFFFFFF::64, 0>> | :erlang.term_to_binary(:forged)]
    :ok = :gen_tcp.send(agent_socket(), frame)
    Process.sleep(:infinity)
  end

  @doc "Writes a frame header announcing `size` bytes, and some of them."
  def write_oversized(size) do
    socket = agent_socket()
    :ok = :inet.setopts(socket, packet: :raw)
    :ok = :gen_tcp.send(socket, <<size::32, 4, 0::64, 0>>)
    Process.sleep(:infinity)
  end

  @doc """
  Writes the start of a frame (a header for 100 bytes, then 2), then kills the agent, so
  the connection closes in the middle of the frame while the node runs on.
  """
  def write_truncated do
    socket = agent_socket()
    agent = agent_pid()
    :ok = :inet.setopts(socket, packet: :raw)
    :ok = :gen_tcp.send(socket, <<100::32, 4, 0>>)
    Process.exit(agent, :kill)
    Process.sleep(:infinity)
  end

  @doc "Stops the agent from reading or answering: the sandbox falls silent."
  def silence do
    :erlang.suspend_process(agent_pid())
    Process.sleep(:infinity)
  end

  @doc "Writes a result for the call `id` that is not a term."
  def write_bad_term(id) do
    :ok = :gen_tcp.send(agent_socket(), <<4, id::64, 0, 131, 200, 1, 2, 3>>)
    :ok
  end

  @doc """
  Tries to reach the host's node from a sandbox: as it is (not alive), then after starting
  distribution itself (EPMD on its own loopback) with the host's cookie.
  """
  def reach_host(host, cookie) do
    alive = :erlang.is_alive()
    ping = :net_adm.ping(host)
    _ = :os.cmd(~c"epmd -daemon")

    started =
      case :net_kernel.start([:"sandbox_probe@127.0.0.1", :longnames]) do
        {:ok, _} -> :ok
        _ -> :error
      end

    if started == :ok, do: :erlang.set_cookie(host, cookie)
    %{alive: alive, ping: ping, started: started, ping_after: :net_adm.ping(host)}
  end

  @doc "An :erpc call to `node`: `{:ok, result}` or `{:error, description}`."
  def try_erpc(node) do
    {:ok, :erpc.call(node, :erlang, :node, [], 2_000)}
  catch
    kind, reason -> {:error, inspect({kind, reason})}
  end

  @doc "Sends a UDP datagram: `:sent` or `{:error, reason}`."
  def try_udp(ip, port) do
    {:ok, socket} = :gen_udp.open(0)

    try do
      case :gen_udp.send(socket, ip, port, "ampule") do
        :ok -> :sent
        {:error, reason} -> {:error, reason}
      end
    after
      :gen_udp.close(socket)
    end
  end

  @doc "Whether a process is registered as `name` (a pid would not come back from a sandbox)."
  def registered?(name), do: Process.whereis(name) != nil

  @doc "A closure compiled in a module: the sandbox loads the module from its code path."
  def sum_fun(list), do: fn -> Enum.sum(list) end

  @doc "A list of `n` atoms the host has never seen, named after `tag` (a string)."
  def new_atoms(tag, n), do: for(i <- 1..n, do: String.to_atom("sandbox_atom_#{tag}_#{i}"))

  @doc "The helpers below whose results a sandbox must refuse, with the kind refused."
  def refused_results,
    do: [
      evil_fun: :fun,
      remote_fun: :fun,
      a_pid: :pid,
      a_ref: :reference,
      a_port: :port,
      forged_regex: :re_pattern,
      raw_re_pattern: :re_pattern,
      shadow_stream: {:struct, File.Stream},
      stderr_stream: {:struct, IO.Stream},
      port_stream: {:struct, IO.Stream},
      logger_stream: {:struct, GenEvent.Stream},
      huge_range: {:struct, Range},
      # A stream holds funs: refused as such before its struct is looked at.
      lazy_stream: :fun,
      forged_ampule_error: {:struct, Ampule.Error},
      exception_value: {:struct, File.Error},
      month_13: {:struct, Date},
      date_with_extra_field: {:struct, Date},
      date_in_other_calendar: {:struct, Date},
      uri_with_bad_port: {:struct, URI},
      mapset_with_values: {:struct, MapSet},
      struct_key_not_a_module: :struct,
      unallowed_user_struct: {:struct, Ampule.Test.Point},
      huge_integer: :integer,
      nested_in_data: {:struct, File.Stream}
    ]

  @doc "Plain data a sandbox may return, structs among it, as made in the sandbox."
  def plain_data do
    [
      ~D[2026-12-07],
      ~T[23:59:59.123456],
      ~N[2026-12-07 10:00:00],
      DateTime.from_unix!(1_800_000_000),
      URI.parse("https://user@example.org:8443/a/b?c=d#e"),
      Version.parse!("1.2.3-rc.1+build"),
      MapSet.new([1, :two, "three"]),
      Integer.pow(2, 65_535),
      -Integer.pow(2, 65_535),
      %{__struct__?: false, keyword: [__struct__: :just_a_key]}
    ]
  end

  # A compiled pattern with one byte changed: PCRE would read past it (or crash the host
  # VM) under Regex.match?/2.
  def forged_regex do
    regex = ~r/hello (world)/
    {:re_pattern, n, u, c, bin} = regex.re_pattern
    <<head::binary-size(40), byte, rest::binary>> = bin

    %{
      regex
      | re_pattern:
          {:re_pattern, n, u, c, <<head::binary, Bitwise.bxor(byte, 0xFF), rest::binary>>}
    }
  end

  def raw_re_pattern, do: [ok: elem(:re.compile("x"), 1)]

  # Streams: reading /etc/shadow as the host's root, writing the sandbox's text to the
  # host's stderr, hanging the caller on a process that never answers, the logger.
  def shadow_stream, do: File.stream!("/etc/shadow")
  def stderr_stream, do: IO.stream(:standard_error, :line)
  def port_stream, do: %IO.Stream{device: Ampule.Port, raw: false, line_or_bytes: :line}
  def logger_stream, do: %{__struct__: GenEvent.Stream, manager: :logger, timeout: :infinity}
  def huge_range, do: 1..1_000_000_000_000
  def lazy_stream, do: Stream.map([1, 2], & &1)

  def forged_ampule_error, do: %Ampule.Error{reason: :oom, container: "another-one"}
  def exception_value, do: {:error, %File.Error{reason: :enoent, path: "x", action: "read"}}

  def month_13, do: %{__struct__: Date, year: 2026, month: 13, day: 1, calendar: Calendar.ISO}
  def date_with_extra_field, do: Map.put(~D[2026-12-07], :extra, 1)
  def date_in_other_calendar, do: %{~D[2026-12-07] | calendar: Ampule.Test.Point}
  def uri_with_bad_port, do: %{URI.parse("http://x") | port: 70_000}
  def mapset_with_values, do: %{MapSet.new([1]) | map: %{1 => :not_empty}}
  def struct_key_not_a_module, do: %{__struct__: "File.Stream", path: "/etc/shadow"}
  def unallowed_user_struct, do: %Ampule.Test.Point{x: 1, y: 2}
  def huge_integer, do: Integer.pow(2, 65_536)
  def nested_in_data, do: %{ok: [{:a, %{b: File.stream!("/etc/shadow")}}]}

  @doc "A user's own struct, allowed by `result_structs` when a test says so."
  def a_point, do: %Ampule.Test.Point{x: 1, y: 2}

  @doc "A term that takes the host a while to decode (a list `depth` deep), returned `ms` after the call began."
  def slow_to_decode(depth, ms) do
    began = System.monotonic_time(:millisecond)
    term = Enum.reduce(1..depth, [], fn _, acc -> [acc] end)
    Process.sleep(max(ms - (System.monotonic_time(:millisecond) - began), 0))
    term
  end

  @doc """
  With no call pending (run it by a cast), writes a frame header for 64 MiB and all but
  the last byte of it, and holds the connection.
  """
  def hold_a_frame do
    socket = agent_socket()
    size = 64 * 1024 * 1024
    :ok = :inet.setopts(socket, packet: :raw)
    :ok = :gen_tcp.send(socket, <<size::32>>)
    chunk = :binary.copy(<<0>>, 1024 * 1024)
    for _ <- 1..63, do: :gen_tcp.send(socket, chunk)
    Process.sleep(:infinity)
  end

  @doc "A result of `n` bytes (a binary), for the result budget."
  def bytes(n), do: :binary.copy(<<1>>, n)

  @doc "Raises an exception of a module only this sandbox has, whose name the host lacks."
  def raise_own_exception(tag) do
    {:ok, _} = Application.ensure_all_started(:elixir)

    [{module, _}] =
      Code.compile_string("""
      defmodule Sandbox.Only.#{tag}Error do
        defexception [:message]
      end
      """)

    raise module, message: "made in the sandbox"
  end

  @doc "Raises an exception whose message/1 raises."
  def raise_bad_message do
    {:ok, _} = Application.ensure_all_started(:elixir)

    [{module, _}] =
      Code.compile_string("""
      defmodule Sandbox.BadMessage#{System.unique_integer([:positive])} do
        defexception [:x]
        def message(_), do: raise "no message for you"
      end
      """)

    raise module, x: 1
  end

  @doc "A closure made in the sandbox, which would run `id` wherever it is called."
  def evil_fun, do: fn -> :os.cmd(~c"id") end

  def remote_fun, do: &:os.cmd/1
  def a_pid, do: self()
  def a_ref, do: make_ref()
  def a_port, do: hd(:erlang.ports())

  @doc "A binary of `n` bytes."
  def big(n), do: :binary.copy(<<7>>, n)

  @doc "`n` empty lists in a list: n bytes on the wire, 16 n on the heap."
  def wide(n), do: List.duplicate([], n)

  @doc "Prints to standard output and standard error."
  def print(text) do
    IO.puts(text)
    IO.puts(:stderr, text)
    :ok
  end

  @doc "Tells the channel test it was called (it must never be)."
  def record(reason, stacktrace) do
    send(:sandbox_channel_test_recorder, {:recorded, reason, stacktrace})
    %{}
  end

  @doc """
  Does a little stdlib work and returns the modules it made the node load (this module
  is loaded before the count starts).
  """
  def newly_loaded_by_work do
    before = MapSet.new(:code.all_loaded(), &elem(&1, 0))
    _ = {String.upcase("x"), Enum.sum([1, 2]), Regex.run(~r/a+/, "baa"), Map.new([{1, 2}])}
    MapSet.new(:code.all_loaded(), &elem(&1, 0)) |> MapSet.difference(before) |> MapSet.to_list()
  end

  @doc "For a pool's `prepare: [run: ...]`: leaves a mark a test can see."
  def mark_prepared, do: :persistent_term.put(:ampule_test_prepared, true)

  def prepared?, do: :persistent_term.get(:ampule_test_prepared, false)

  def raise_in_prepare, do: raise(ArgumentError, "prepare went wrong")
end
