defmodule Ampule.HostileSandboxTest do
  # Hostile code in real sandboxes (docs/security.md, `Ampule.Sandbox`): no distribution, no
  # network, and nothing it sends trusted. The attacks come from inside: code beside the
  # agent finds its socket (`:erlang.ports()`) and writes to it what it likes
  # (Ampule.SandboxHelpers). Each attack ends with the sandbox gone, the caller holding a
  # typed reason, and the host as it was.
  use ExUnit.Case, async: true

  import Ampule.Test.Host, only: [wait_until: 2]

  alias Ampule.SandboxHelpers
  alias Ampule.Test.Host

  @moduletag :hostile
  @moduletag :root
  @moduletag :lxc

  @mib 1024 * 1024

  setup_all do
    # The distribution container makes this node distributed, so that there is a host
    # node to try to reach.
    %{sandbox: Ampule.spawn(sandbox: true), dist: Ampule.spawn()}
  end

  defp info(name), do: Ampule.Port.request({:info, name})

  defp call_reason(what, c, timeout \\ 10_000) do
    Ampule.call(what, c, timeout)
    flunk("the call returned")
  rescue
    error in Ampule.Error -> error.reason
  end

  # An attack on a sandbox of its own: the reason the caller gets; the sandbox is gone, its
  # owner was told, and another sandbox still answers.
  defp attack(what, bystander, timeout \\ 10_000) do
    c = Ampule.spawn(sandbox: true)
    port = Process.whereis(Ampule.Port)
    reason = call_reason(what, c, timeout)
    assert wait_until(fn -> info(c.name) == {:error, :not_found} end, 5_000)
    assert_receive {:ampule_exit, ^c, ^reason}, 5_000
    assert Process.whereis(Ampule.Port) == port
    assert Ampule.call({:erlang, :+, [1, 1]}, bystander) == 2
    reason
  end

  describe "no distribution" do
    test "the node is not alive, and cannot reach the host's node even when it starts one",
         %{sandbox: c, dist: _} do
      host = node()
      assert Node.alive?()
      assert Ampule.call({:erlang, :node, []}, c) == :nonode@nohost

      assert %{alive: false, ping: :pang, started: started, ping_after: :pang} =
               Ampule.call({SandboxHelpers, :reach_host, [host, Node.get_cookie()]}, c, 30_000)

      # Whether it can start distribution at all depends on its loopback (the port leaves
      # it down today, so EPMD cannot be reached); either way it reaches nobody.
      assert started in [:ok, :error]
      refute Enum.any?(Node.list([:hidden, :visible]), &(&1 |> to_string() =~ "sandbox_probe"))
    end

    test "a call from the sandbox to the host node fails", %{sandbox: c} do
      assert {:error, _} = Ampule.call({SandboxHelpers, :try_erpc, [node()]}, c)
    end
  end

  describe "no network" do
    setup do
      # An "outside host", as in isolation_test.exs, in the /30 after its.
      Host.outside_host("asbx", 1)
    end

    test "only loopback in the sandbox", %{sandbox: c} do
      assert Ampule.call({File, :ls!, ["/sys/class/net"]}, c) == ["lo"]
    end

    test "TCP and UDP to the bridge, the host's other addresses and the outside all fail",
         %{sandbox: c, netns: netns, outside: outside} do
      # Other tests add and remove addresses at the same time: the interfaces of the
      # cluster lab (clbr*) and of the isolation test's outside host (aout*) come and go
      # while this runs, so they do not count, and of the rest only those that exist when
      # listened on (the bridge's is always among them).
      host_addresses =
        for {name, opts} <- elem(:inet.getifaddrs(), 1),
            not String.starts_with?(to_string(name), ["clbr", "aout"]),
            {:addr, {_, _, _, _} = ip} <- opts,
            ip != {127, 0, 0, 1},
            match?({:ok, _}, probe_listen(ip)),
            do: ip

      assert Host.host_address() in host_addresses
      targets = [{outside, netns} | Enum.map([{127, 0, 0, 1} | host_addresses], &{&1, nil})]

      for {ip, ns} <- targets do
        ns_opt = if ns, do: [netns: ns], else: []
        {:ok, tcp} = :gen_tcp.listen(0, [:binary, active: false, ip: ip] ++ ns_opt)
        {:ok, tcp_port} = :inet.port(tcp)
        {:ok, udp} = :gen_udp.open(0, [:binary, active: false, ip: ip] ++ ns_opt)
        {:ok, udp_port} = :inet.port(udp)

        # From the host both work: the listeners are real.
        assert :connected = Ampule.RemoteHelpers.try_connect(ip, tcp_port, 2_000)
        {:ok, _} = :gen_tcp.accept(tcp, 1_000)
        assert :sent = SandboxHelpers.try_udp(ip, udp_port)
        assert {:ok, _} = :gen_udp.recv(udp, 0, 1_000)

        # From the sandbox neither does.
        assert {:error, _} =
                 Ampule.call({Ampule.RemoteHelpers, :try_connect, [ip, tcp_port, 1_000]}, c),
               "TCP to #{:inet.ntoa(ip)}"

        # A datagram to loopback is "sent" to the sandbox's own loopback, so what counts
        # is that none arrives.
        _ = Ampule.call({SandboxHelpers, :try_udp, [ip, udp_port]}, c)
        assert {:error, :timeout} = :gen_tcp.accept(tcp, 0)
        assert {:error, :timeout} = :gen_udp.recv(udp, 0, 300), "UDP to #{:inet.ntoa(ip)}"
        :gen_tcp.close(tcp)
        :gen_udp.close(udp)
      end

      assert Ampule.call({SandboxHelpers, :try_udp, [Host.host_address(), 9]}, c) ==
               {:error, :enetunreach}
    end
  end

  describe "what a sandbox sends" do
    test "200,000 new atoms in a result are refused; none of them is created here",
         %{sandbox: c} do
      # The atom count itself, which tests running beside this one move, is checked by
      # hostile_sandbox_atoms_test.exs, alone.
      tag = "hostile#{System.unique_integer([:positive])}"
      atoms = :erlang.system_info(:atom_count)

      assert call_reason({SandboxHelpers, :new_atoms, [tag, 200_000]}, c, 60_000) ==
               {:result_refused, :atoms}

      for i <- [1, 100_000, 200_000] do
        assert_raise ArgumentError, fn -> String.to_existing_atom("sandbox_atom_#{tag}_#{i}") end
      end

      assert :erlang.system_info(:atom_count) - atoms < 1_000
      # A refusal is not an attack on the channel: the sandbox goes on.
      assert Ampule.call({:erlang, :+, [1, 1]}, c) == 2
    end

    test "a 200 MB result is refused without the host's memory growing by it",
         %{sandbox: c} do
      memory = :erlang.memory(:total)
      reason = call_reason({SandboxHelpers, :big, [200_000_000]}, c, 60_000)
      assert reason == {:result_too_large, 64 * @mib}
      assert :erlang.memory(:total) - memory < 32 * @mib
      assert Ampule.format_error(reason) =~ "max_result"
    end

    test "max_result: a smaller limit is the limit" do
      c = Ampule.spawn(sandbox: true, max_result: 1 * @mib)
      assert byte_size(Ampule.call({SandboxHelpers, :big, [@mib - 100]}, c)) == @mib - 100
      assert call_reason({SandboxHelpers, :big, [@mib + 1]}, c) == {:result_too_large, @mib}
      # Small on the wire, large decoded: 16 bytes on the heap for each byte sent.
      assert call_reason({SandboxHelpers, :wide, [100_000]}, c) == {:result_too_large, @mib}
      :ok = Ampule.destroy(c)
    end

    test "a fun in a result is refused, and so are pids, references and ports",
         %{sandbox: c} do
      for {helper, kind} <- SandboxHelpers.refused_results() do
        assert call_reason({SandboxHelpers, helper, []}, c) == {:result_refused, kind}
      end

      assert Ampule.format_error({:result_refused, :fun}) =~ "fun"
    end
  end

  describe "a sandbox that breaks the channel is destroyed" do
    test "garbage in the place of a frame", %{sandbox: b} do
      assert attack({SandboxHelpers, :write_garbage, []}, b) == {:protocol, :bad_frame}
      assert Ampule.format_error({:protocol, :bad_frame}) =~ "destroyed"
    end

    test "a frame cut short, then the connection closed", %{sandbox: b} do
      assert attack({SandboxHelpers, :write_truncated, []}, b) == {:protocol, :closed}
    end

    test "a frame header of 200 MB: refused before it is read", %{sandbox: b} do
      memory = :erlang.memory(:total)

      assert attack({SandboxHelpers, :write_oversized, [200_000_000]}, b) ==
               {:protocol, :frame_too_large}

      assert :erlang.memory(:total) - memory < 32 * @mib
    end

    test "a result for a call never made", %{sandbox: b} do
      assert attack({SandboxHelpers, :forge_result, []}, b) == {:protocol, :unexpected_id}
    end

    test "an agent that falls silent: the call times out, the sandbox goes", %{sandbox: b} do
      c = Ampule.spawn(sandbox: true)
      assert call_reason({SandboxHelpers, :silence, []}, c, 300) == :timeout
      assert_receive {:ampule_exit, ^c, {:protocol, :unresponsive}}, 15_000
      assert wait_until(fn -> info(c.name) == {:error, :not_found} end, 10_000)
      assert Ampule.call({:erlang, :+, [1, 1]}, b) == 2
    end
  end

  test "output without end fills the sandbox's own memory limit, not the host", %{sandbox: b} do
    c = Ampule.spawn(sandbox: true, memory: 128 * @mib)
    chunk = :binary.copy("x", @mib)
    # 300 MB to standard output, which is the sandbox's ~/boot.log, on a tmpfs whose pages
    # count against the sandbox's memory.
    for _ <- 1..300, do: :ok = Ampule.cast({IO, :write, [chunk]}, c)
    assert_receive {:ampule_exit, ^c, :oom}, 30_000
    assert wait_until(fn -> Host.traces_of(c.name) == [] end, Host.release_bound_ms())
    assert Ampule.call({:erlang, :+, [1, 1]}, b) == 2
  end

  test "a sandbox runs under the seccomp policy too", %{sandbox: c} do
    status = Ampule.call({File, :read!, ["/proc/self/status"]}, c)
    assert status =~ ~r/Seccomp:\s+2/
    out = Ampule.call({:os, :cmd, [~c"unshare -U true 2>&1; echo status=$?"]}, c)
    assert to_string(out) =~ "status=1"
  end

  defp probe_listen(ip) do
    with {:ok, s} <- :gen_tcp.listen(0, ip: ip) do
      :gen_tcp.close(s)
      {:ok, ip}
    end
  end
end
