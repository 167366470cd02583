defmodule Ampule.IsolationTest do
  # What a container cannot do, each with a positive control showing the thing tested is
  # really there: the network it cannot reach, the files it cannot write, the ids and
  # privileges it does not have. See docs/security.md. Every test that is not about
  # distribution itself runs twice: from a distribution container (`a`) and from a sandbox
  # (`s`); hostile_sandbox_test.exs has what only sandboxes promise.
  use ExUnit.Case, async: true

  alias Ampule.Test.Host

  @moduletag :root
  @moduletag :lxc

  setup_all do
    %{a: Ampule.spawn(), b: Ampule.spawn(), s: Ampule.spawn(sandbox: true)}
  end

  @kinds [distribution: :a, sandbox: :s]

  defp address(%Ampule.Container{address: a}) do
    {:ok, ip} = :inet.parse_address(to_charlist(a))
    ip
  end

  # A TCP connection attempt from inside `container`: `:connected` or `{:error, reason}`
  # (a socket would not come back from a sandbox).
  defp connect_from(container, ip, port) do
    Ampule.call({Ampule.RemoteHelpers, :try_connect, [ip, port, 1_000]}, container, 5_000)
  end

  describe "network" do
    setup do
      # An "outside host": a network namespace joined to the host by a veth of its own.
      Host.outside_host("aout", 0)
    end

    for {kind, key} <- @kinds do
      test "the outside host is reachable from the host, not from a container (#{kind})",
           %{netns: netns, outside: outside} = context do
        a = context[unquote(key)]
        {:ok, listener} = :gen_tcp.listen(0, [:binary, active: false, ip: outside, netns: netns])

        {:ok, port} = :inet.port(listener)

        assert {:ok, from_host} = :gen_tcp.connect(outside, port, [], 2_000)
        assert {:ok, accepted} = :gen_tcp.accept(listener, 1_000)
        :gen_tcp.close(from_host)
        :gen_tcp.close(accepted)

        assert {:error, _} = connect_from(a, outside, port)
        assert {:error, :timeout} = :gen_tcp.accept(listener, 0)
      end

      test "a container opens no connection to the host: not EPMD, not a listener in 9100-9155 (#{kind})",
           context do
        a = context[unquote(key)]
        host = Host.host_address()
        # A host listener in the range the host node's distribution used to be allowed.
        {:ok, listener} = :gen_tcp.listen(9150, [:binary, active: false, ip: host])

        assert {:ok, from_host} = :gen_tcp.connect(host, 9150, [], 2_000)
        {:ok, accepted} = :gen_tcp.accept(listener, 1_000)
        :gen_tcp.close(from_host)
        :gen_tcp.close(accepted)
        # The host's EPMD runs (this node is distributed) and answers the host...
        assert {:ok, epmd} = :gen_tcp.connect(host, 4369, [], 2_000)
        :gen_tcp.close(epmd)

        # ...and neither it nor the listener answers a container.
        assert {:error, _} = connect_from(a, host, 4369)
        assert {:error, _} = connect_from(a, host, 9150)
        assert {:error, :timeout} = :gen_tcp.accept(listener, 0)
        :gen_tcp.close(listener)
      end

      test "a container cannot open a connection to a sibling (#{kind})", %{b: b} = context do
        a = context[unquote(key)]
        # b's node listens on its distribution port: the host reaches it...
        assert {:ok, s} = :gen_tcp.connect(address(b), 9100, [], 2_000)
        :gen_tcp.close(s)
        # ...a does not, neither there nor at b's EPMD.
        assert {:error, _} = connect_from(a, address(b), 9100)
        assert {:error, _} = connect_from(a, address(b), 4369)
      end
    end
  end

  test "one container's cookie does not open another's node", %{a: a, b: b} do
    # A probe node on the host (which may reach both) shows the cookie alone is refused,
    # firewall aside: with b's cookie it connects, with a's it does not.
    assert probe(b.nodename, b.cookie) == "true"
    assert probe(b.nodename, a.cookie) == "false"
    # And from inside a, b's node is out of reach.
    refute Ampule.call({:net_kernel, :connect_node, [b.nodename]}, a, 10_000)
  end

  test "not a guarantee: a container's node is a full distribution peer of the host's",
       %{a: a} do
    # docs/security.md says so; this shows it is true, so the docs cannot drift.
    assert Ampule.call({:erpc, :call, [node(), :erlang, :node, []]}, a) == node()
  end

  for {kind, key} <- @kinds do
    test "the host's files are read-only inside; what a container writes stays there (#{kind})",
         context do
      a = context[unquote(key)]
      mark = "ampule-probe-#{System.unique_integer([:positive])}"

      assert Ampule.call({File, :write, ["/usr/#{mark}", "x"]}, a) == {:error, :erofs}
      # The project's code, mounted from the host, is read-only too.
      ebin = :code.lib_dir(:ampule) |> Path.join("ebin") |> Path.join(mark)
      assert Ampule.call({File, :write, [ebin, "x"]}, a) == {:error, :erofs}

      assert Ampule.call({File, :write, ["/tmp/#{mark}", "x"]}, a) == :ok
      assert Ampule.call({File, :read, ["/tmp/#{mark}"]}, a) == {:ok, "x"}
      # The rootfs's top belongs to the container's root, not to the node's uid.
      assert Ampule.call({File, :write, ["/#{mark}", "x"]}, a) == {:error, :eacces}

      refute File.exists?("/tmp/#{mark}")
      refute File.exists?("/usr/#{mark}")
      refute File.exists?("/#{mark}")
      refute File.exists?(ebin)
    end

    test "the node runs as uid 1000 inside, an unprivileged uid of the subuid range outside (#{kind})",
         context do
      a = context[unquote(key)]
      assert Ampule.call({:os, :cmd, [~c"id -u"]}, a) == ~c"1000\n"

      [start | _] = subuid_start()
      # Every process of the container (a short-lived one may be gone by the time it is read).
      uids =
        for pid <- Host.container_pids(a.name),
            {:ok, status} <- [File.read("/proc/#{pid}/status")],
            [_, real, effective] = Regex.run(~r/^Uid:\s+(\d+)\s+(\d+)/m, status),
            id <- [real, effective],
            do: String.to_integer(id)

      assert length(uids) >= 4, "at least init and erl's runtime"
      assert Enum.uniq(uids) == [start + 1000]
    end

    test "no capabilities, no new privileges, no host devices (#{kind})", context do
      a = context[unquote(key)]
      {:ok, status} = Ampule.call({File, :read, ["/proc/self/status"]}, a)
      assert status =~ ~r/^CapEff:\s+0+$/m
      assert status =~ ~r/^CapPrm:\s+0+$/m
      assert status =~ ~r/^NoNewPrivs:\s+1$/m

      # Binding a port below 1024 needs CAP_NET_BIND_SERVICE.
      assert Ampule.call({:gen_tcp, :listen, [80, []]}, a) == {:error, :eacces}

      devices = Ampule.call({File, :ls!, ["/dev"]}, a)

      allowed =
        ~w(null zero full random urandom tty console pts ptmx shm mqueue fd stdin stdout stderr
         net fuse kmsg hugepages lxc initctl log core .lxc-boot-id)

      assert devices -- allowed == []
    end
  end

  defp subuid_start do
    "/etc/subuid"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value(fn line ->
      case String.split(line, ":") do
        ["root", start, _count] -> [String.to_integer(start)]
        _ -> nil
      end
    end)
  end

  # `net_kernel:connect_node/1` from a fresh host node that presents `cookie`.
  defp probe(node, cookie) do
    name = "probe#{System.unique_integer([:positive])}@#{Host.subnet_prefix()}1"

    script =
      "erlang:set_cookie('#{node}', '#{cookie}'), " <>
        "io:format(\"~p\", [net_kernel:connect_node('#{node}')]), halt()."

    {out, 0} =
      System.cmd("erl", ["-noshell", "-noinput", "-name", name, "-hidden", "-eval", script])

    out
  end
end
