defmodule Ampule.Distribution do
  @moduledoc false
  # Everything about Erlang distribution on the host side: starting it when the local node
  # is not alive, per-container cookies, the code paths a container gets, and the start of
  # a distribution container (the port boots it; this node connects to it).

  require Logger

  @doc """
  Starts a distribution container: distribution here first if need be, then the port's
  spawn, then a connection to its node with the container's cookie. A container that
  cannot be reached is destroyed.
  """
  @spec start_container(pid | nil, map) :: {:ok, Ampule.Container.t()} | {:error, term}
  def start_container(owner, request) do
    with {:ok, hello} <- Ampule.Port.hello(),
         :ok <- ensure_started(hello.host_address),
         {:ok, container} <- Ampule.Port.spawn(request, owner) do
      case connect(container, request) do
        :ok ->
          {:ok, container}

        {:error, reason} ->
          Ampule.Port.destroy(container.name)
          {:error, reason}
      end
    end
  end

  # Sets the container's cookie and connects to its node. A node that announced itself
  # (see `ampule_announce`): this connection is the one handshake of its boot, and the
  # check that the node is what it said; the code Ampule runs there (Ampule.Remote) is on
  # its path (Ampule's own ebin, see Ampule.Options) and loads on the first call.
  defp connect(%Ampule.Container{nodename: node, cookie: cookie}, %{announce: true} = request) do
    set_cookie(node, cookie)
    # `:net_kernel.connect_node/1` is bounded by `net_setuptime` (7 s), not by the boot
    # timeout: a task holds it to the boot timeout.
    task = Task.async(fn -> :net_kernel.connect_node(node) end)

    case Task.yield(task, request.boot_timeout) || Task.shutdown(task, :brutal_kill) do
      {:ok, true} -> :ok
      {:ok, false} -> {:error, {:connect_failed, node, :noconnection}}
      nil -> {:error, {:connect_failed, node, :timeout}}
    end
  end

  # A node without Ampule's ebin (Ampule in an archive): the port handshaked with it;
  # make sure Ampule.Remote is loaded there, sending it if the node cannot load it.
  defp connect(%Ampule.Container{nodename: node, cookie: cookie}, request) do
    set_cookie(node, cookie)
    timeout = request.boot_timeout

    case :erpc.call(node, :code, :ensure_loaded, [Ampule.Remote], timeout) do
      {:module, _} ->
        :ok

      {:error, _} ->
        {module, binary, file} = :code.get_object_code(Ampule.Remote)

        case :erpc.call(node, :code, :load_binary, [module, file, binary], timeout) do
          {:module, _} -> :ok
          {:error, reason} -> {:error, {:connect_failed, node, {:load_binary, reason}}}
        end
    end
  catch
    :error, {:erpc, reason} -> {:error, {:connect_failed, node, reason}}
  end

  @doc """
  Makes sure the local node is alive with long names, so that it can reach the nodes in the
  containers (`name@10.213.57.2`). A node that is not alive is started as
  `ampule_host_<random>@<host address on Ampule's bridge>`.
  """
  @spec ensure_started(String.t()) :: :ok | {:error, term}
  def ensure_started(host_address) do
    cond do
      Node.alive?() -> check_longnames()
      true -> start(host_address)
    end
  end

  defp check_longnames do
    if :net_kernel.longnames() do
      :ok
    else
      {:error, {:short_names, node()}}
    end
  end

  defp start(host_address) do
    name = :"ampule_host_#{random_suffix()}@#{host_address}"

    case start_node(name) do
      :started ->
        Logger.info(
          "Ampule started distribution: this node is now #{node()} " <>
            "(it was not alive; start it with --name to choose the name)"
        )

        :ok

      :ok ->
        :ok

      {:error, {:short_names, _}} = error ->
        error

      {:error, reason} ->
        {:error, {:distribution, reason}}
    end
  end

  defp start_node(name) do
    # EPMD first: `Node.start/2` without one logs "Protocol 'inet_tcp': register/listen
    # error: econnrefused" as a notice before it fails, the first thing a user saw.
    _ = ensure_epmd()

    case Node.start(name, :longnames) do
      {:ok, _} ->
        :started

      {:error, {:already_started, _}} ->
        # Another caller started it a moment ago.
        check_longnames()

      {:error, _reason} ->
        # Most often no EPMD is running: a node started by `erl -name` starts one, one
        # started at run time does not.
        with :ok <- start_epmd() do
          case Node.start(name, :longnames) do
            {:ok, _} -> :started
            {:error, {:already_started, _}} -> check_longnames()
            {:error, reason} -> {:error, reason}
          end
        end
    end
  end

  defp ensure_epmd do
    case :erl_epmd.names() do
      {:ok, _} ->
        :ok

      {:error, _} ->
        with :ok <- start_epmd(), do: await_epmd(System.monotonic_time(:millisecond) + 5_000)
    end
  end

  # `epmd -daemon` returns before the daemon listens.
  defp await_epmd(deadline) do
    cond do
      match?({:ok, _}, :erl_epmd.names()) -> :ok
      System.monotonic_time(:millisecond) > deadline -> {:error, :epmd_not_listening}
      true -> receive(after: (10 -> await_epmd(deadline)))
    end
  end

  defp start_epmd do
    erts_epmd = Path.join([to_string(:code.root_dir()), "bin", "epmd"])

    case System.find_executable("epmd") || (File.regular?(erts_epmd) && erts_epmd) do
      false ->
        {:error, :epmd_not_found}

      epmd ->
        case System.cmd(epmd, ["-daemon"], stderr_to_stdout: true) do
          {_, 0} -> :ok
          {output, status} -> {:error, {:epmd, status, output}}
        end
    end
  end

  defp random_suffix do
    :rand.bytes(5) |> Base.encode32(case: :lower, padding: false)
  end

  @doc "Sets the container node's own cookie (and never the host's cookie in a container)."
  @spec set_cookie(node, atom) :: true
  def set_cookie(nodename, cookie), do: :erlang.set_cookie(nodename, cookie)

  @doc """
  The host's code paths a container needs: every absolute directory in `:code.get_path/0`
  that is not under `:code.root_dir/0` (the container's own Erlang/OTP is the host's `/usr`).
  That is the caller's project (`_build/ENV/lib/*/ebin`, consolidated protocols) and
  Elixir's own libraries.
  """
  @spec host_code_paths() :: [String.t()]
  def host_code_paths do
    root = :code.root_dir() |> to_string() |> Path.expand()

    :code.get_path()
    |> Enum.map(&to_string/1)
    |> Enum.filter(&(Path.type(&1) == :absolute))
    |> Enum.map(&Path.expand/1)
    |> Enum.reject(&under?(&1, root))
    |> Enum.filter(&File.dir?/1)
    |> Enum.uniq()
  end

  defp under?(path, dir), do: path == dir or String.starts_with?(path, dir <> "/")

  @doc "Explains a distribution error for a person."
  @spec explain(term) :: String.t()
  def explain({:short_names, node}) do
    """
    the local node #{node} uses short names (--sname), but containers are reached by IP
    address, which needs long names. Start iex with a long name on Ampule's bridge, e.g.
        iex --name ampule@10.213.57.1 -S mix
    or start it without --sname/--name and Ampule starts distribution itself.\
    """
  end

  def explain({:distribution, reason}) do
    "could not start Erlang distribution (#{inspect(reason)}); is epmd available? " <>
      "Start iex with a long name, e.g. iex --name ampule@10.213.57.1 -S mix"
  end
end
