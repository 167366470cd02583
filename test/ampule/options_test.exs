defmodule Ampule.OptionsTest do
  # Option validation happens before anything starts: no root needed.
  use ExUnit.Case, async: true

  alias Ampule.Options

  # The examples in the docs that need no container.
  doctest Ampule, only: [mfa: 4, format_error: 1]

  test "an unknown option raises ArgumentError naming it" do
    error = assert_raise ArgumentError, fn -> Ampule.spawn(bogus: 1) end
    assert error.message =~ ":bogus"
    assert error.message =~ ":boot_timeout"

    assert_raise ArgumentError, ~r/:colour/, fn ->
      Ampule.call({:erlang, :node, []}, colour: 1)
    end
  end

  test "a bad value raises ArgumentError naming the option" do
    for {opts, key} <- [
          {[boot_timeout: -1], ":boot_timeout"},
          {[name: "has space"], ":name"},
          {[name: String.duplicate("a", 41)], ":name"},
          {[code_paths: ["relative/dir"]], ":code_paths"},
          {[code_paths: ["/nonexistent/dir"]], ":code_paths"},
          {[memory: 0], ":memory"},
          {[owner: :someone], ":owner"},
          {[env: [:oops]], ":env"},
          {[host_code_paths: :yes], ":host_code_paths"},
          {[cpus: 0], ":cpus"},
          {[cpus: :max], ":cpus"},
          {[seccomp: :docker], ":seccomp"},
          {[seccomp: "relative.seccomp"], ":seccomp"},
          {[seccomp: "/nonexistent/profile.seccomp"], ":seccomp"}
        ] do
      error = assert_raise ArgumentError, fn -> Ampule.start(opts) end
      assert error.message =~ key, "#{inspect(opts)}: #{error.message}"
    end

    assert_raise ArgumentError, ~r/:timeout/, fn ->
      Ampule.call({:erlang, :node, []}, timeout: -5)
    end

    assert_raise ArgumentError, ~r/module, function, args/, fn -> Ampule.call(:not_an_mfa) end
  end

  test "options become the port's spawn map" do
    {owner, request, :distribution} =
      Options.spawn!(
        name: "box_1",
        boot_timeout: 5_000,
        env: [LANG: "C.UTF-8"],
        args: [~c"-kernel", "foo"],
        host_code_paths: false,
        code_paths: ["/tmp"],
        memory: 64 * 1024 * 1024
      )

    assert owner == self()
    {boot_paths, boot_args} = Ampule.Boot.args(nil, ["-kernel", "foo"])
    ampule_ebin = :code.which(:ampule_code_path) |> Path.dirname() |> Path.expand()
    promote = ["-s", "ampule_code_path", "promote"]
    announce = ["-s", "ampule_announce"]

    # Once booted, the node promotes its own code paths, then announces itself
    # (ampule_announce, from Ampule's own ebin), before the caller's arguments run.
    assert request == %{
             name: "box_1",
             boot_timeout: 5_000,
             env: [{"LANG", "C.UTF-8"}],
             args: boot_args ++ promote ++ announce ++ ["-hidden", "-kernel", "foo"],
             code_paths: ["/tmp", ampule_ebin] ++ boot_paths,
             config: [],
             memory: 64 * 1024 * 1024,
             announce: true
           }

    assert {nil, %{args: args}, :distribution} = Options.spawn!(owner: false, hidden: false)
    assert args == boot_args ++ promote ++ announce
    assert {_, request, _} = Options.spawn!(sandbox: true)
    refute Map.has_key?(request, :announce)
  end

  test "nodes boot lean: flags before the caller's arguments, which override them" do
    {[dir], args} = Ampule.Boot.args(nil, [])
    assert ["+S", "1:1", "+SDcpu", "1:1", "+SDio", "1", "+A", "0" | _] = args
    assert "+sbwt" in args and "+MMmcs" in args and "+P" in args
    assert ["-boot", boot] = Enum.drop_while(args, &(&1 != "-boot"))
    assert Path.dirname(boot) == dir

    # The boot script: the system's, without erl_eval, erl_lint and erl_parse loaded at
    # boot (they move to a group only an embedded node loads) and without c:erlangrc.
    {:script, _, commands} = File.read!(boot <> ".boot") |> :erlang.binary_to_term()
    [first, second | _] = for {:primLoad, mods} <- commands, do: mods
    refute Enum.any?([:erl_eval, :erl_lint, :erl_parse], &(&1 in first))
    assert Enum.all?([:erl_eval, :erl_lint, :erl_parse], &(&1 in second))
    assert :code_server in first
    refute {:apply, {:c, :erlangrc, []}} in commands

    # One scheduler per CPU of the quota (at most the host's); none of the thread flags
    # without a quota.
    n = "#{min(3, :erlang.system_info(:logical_processors))}"
    assert ["+S", "#{n}:#{n}"] == Enum.take(Ampule.Boot.emulator_flags(2.5), 2)
    assert ["+S", "1:1"] == Enum.take(Ampule.Boot.emulator_flags(1), 2)
    assert ["+S", "1:1"] == Enum.take(Ampule.Boot.emulator_flags(0.2), 2)
    refute "+S" in Ampule.Boot.emulator_flags(:infinity)

    # A -boot of the caller's replaces Ampule's script (the first -boot wins).
    assert {[], args} = Ampule.Boot.args(nil, ["-boot", "start_clean"])
    refute "-boot" in args

    Application.put_env(:ampule, :lean_boot, false)

    try do
      assert {[], []} = Ampule.Boot.args(nil, [])

      assert {_,
              %{args: ["-s", "ampule_code_path", "promote", "-s", "ampule_announce", "-hidden"]},
              _} = Options.spawn!(host_code_paths: false)
    after
      Application.delete_env(:ampule, :lean_boot)
    end
  end

  test "cpus: a number of CPUs in thousandths, or :infinity for no quota" do
    assert {_, %{cpu_millis: 1_500}, _} = Options.spawn!(cpus: 1.5)
    assert {_, %{cpu_millis: :infinity}, _} = Options.spawn!(cpus: :infinity)
    # Absent: the port's default (one CPU).
    assert {_, request, _} = Options.spawn!([])
    refute Map.has_key?(request, :cpu_millis)
  end

  test "seccomp: the policy, or a profile file's absolute path" do
    for policy <- [true, false, :lxc] do
      assert {_, %{seccomp: ^policy}, _} = Options.spawn!(seccomp: policy)
    end

    profile = Path.join(System.tmp_dir!(), "ampule-options-#{System.unique_integer()}.seccomp")
    File.write!(profile, "2\ndenylist\n")

    try do
      assert {_, %{seccomp: ^profile}, _} = Options.spawn!(seccomp: profile)
    after
      File.rm!(profile)
    end

    assert {_, request, _} = Options.spawn!([])
    refute Map.has_key?(request, :seccomp)
  end

  test "the host's code paths: this project's and Elixir's, nothing under the OTP root" do
    paths = Ampule.Distribution.host_code_paths()
    root = to_string(:code.root_dir())
    assert Enum.any?(paths, &String.ends_with?(&1, "/ampule/ebin"))
    assert Enum.any?(paths, &String.contains?(&1, "elixir/ebin"))
    refute Enum.any?(paths, &String.starts_with?(&1, root <> "/"))
  end

  test "mfa/4 builds what call/1 takes" do
    assert Ampule.mfa(:a@b, :erlang, :atom_to_list) == {:erlang, :atom_to_list, [:a@b]}
    assert Ampule.mfa("a,b", String, :split, [","]) == {String, :split, ["a,b", ","]}
  end

  test "the container's cookie is not shown by inspect" do
    container = %Ampule.Container{
      name: "c",
      nodename: :"c@10.213.57.2",
      address: "10.213.57.2",
      cookie: :SECRETCOOKIE
    }

    refute inspect(container) =~ "SECRETCOOKIE"
    assert inspect(container) =~ "c@10.213.57.2"
  end

  test "a sandbox's spawn map: its agent started, Ampule's ebin on its path, no -hidden" do
    agent_dir = :code.which(:ampule_agent) |> Path.dirname() |> Path.expand()

    assert {_, request, {:sandbox, 67_108_864}} =
             Options.spawn!(sandbox: true, host_code_paths: false, args: ["+S", "1"])

    {boot_paths, boot_args} = Ampule.Boot.args(nil, ["+S", "1"])
    promote = ["-s", "ampule_code_path", "promote"]
    assert request.args == boot_args ++ promote ++ ["-run", "ampule_agent", "start", "+S", "1"]
    assert request.code_paths == [agent_dir | boot_paths]

    # A distribution node promotes its code paths too, from the same ebin, then announces
    # itself.
    {_, request, :distribution} = Options.spawn!(host_code_paths: false, args: ["+S", "1"])
    announce = ["-s", "ampule_announce"]
    assert request.args == boot_args ++ promote ++ announce ++ ["-hidden", "+S", "1"]
    assert request.code_paths == [agent_dir | boot_paths]

    assert {_, _, {:sandbox, 1024}} = Options.spawn!(sandbox: true, max_result: 1024)
    assert {_, _, :distribution} = Options.spawn!(sandbox: false)
  end

  test "sandbox options are validated, and :max_result needs a sandbox" do
    for {opts, message} <- [
          {[sandbox: :yes], ":sandbox"},
          {[sandbox: true, max_result: 0], ":max_result"},
          {[sandbox: true, max_result: 0xFFFFFFFF], ":max_result"},
          {[sandbox: true, max_result: "64M"], ":max_result"},
          {[max_result: 1024], "sandbox: true"}
        ] do
      error = assert_raise ArgumentError, fn -> Ampule.start(opts) end
      assert error.message =~ message, "#{inspect(opts)}: #{error.message}"
    end

    assert_raise ArgumentError, ~r/:max_result/, fn ->
      Ampule.call({:erlang, :node, []}, sandbox: true, max_result: -1)
    end
  end

  test "call/2 takes a function of no arguments; one with arguments is refused" do
    assert_raise ArgumentError, ~r/function of no arguments/, fn ->
      Ampule.call(fn x -> x end, timeout: 1)
    end
  end

  test "on: a node name, checked with the other options here, before anything is sent" do
    assert_raise ArgumentError, ~r/:on option/, fn -> Ampule.start(on: "host2") end
    assert_raise ArgumentError, ~r/at least 16 MiB/, fn -> Ampule.start(on: :h@x, memory: 1) end

    assert_raise ArgumentError, ~r/unknown option :colour/, fn ->
      Ampule.start(on: :h@x, colour: 1)
    end

    assert_raise ArgumentError, ~r/:hosts option/, fn ->
      Ampule.Pool.start_link(name: :"pool_#{System.unique_integer([:positive])}", hosts: "all")
    end

    # A node that cannot be reached (here: no such node, on loopback) is a typed error.
    assert Ampule.start(on: :"nobody@127.0.0.1", sandbox: true) ==
             {:error, {:host_down, :"nobody@127.0.0.1"}}
  end

  test "every new error reason has its own explanation" do
    for reason <- [
          {:result_refused, :atoms},
          {:result_refused, :fun},
          {:result_refused, :pid},
          {:result_refused, :port},
          {:result_refused, :reference},
          {:result_too_large, 1024},
          {:protocol, :bad_frame},
          {:protocol, :unexpected_id},
          {:protocol, :frame_too_large},
          {:protocol, :bad_term},
          {:protocol, :closed},
          {:protocol, :unresponsive},
          {:protocol, :bad_hello},
          {:protocol, :peer},
          {:protocol, :unexpected_output},
          {:protocol, :output_too_large},
          {:protocol, :output_window},
          {:output_limit, 1024},
          {:boot_timeout, :agent, "last words"},
          :sandbox_unsupported,
          {:agent_socket, :eacces}
        ] do
      message = Ampule.format_error(reason)
      refute message == inspect(reason), "no explanation for #{inspect(reason)}"
      refute message =~ "{:", "an unexplained detail in #{inspect(message)}"
    end
  end

  test "every reason of the docs' list has its sentence, system containers' too" do
    for reason <- [
          {:template_unavailable, "ubuntu", "it downloads images"},
          {:unknown_template, "nosuch"},
          {:create_failed, "lxc-create: exited 1"},
          :create_timeout,
          {:dhcp, "dnsmasq: address in use"},
          :no_console,
          {:console, "EIO"},
          :not_system,
          :already_running,
          :stopped,
          :booting,
          :closing,
          :checkout_timeout,
          {:rootfs, "ENOSPC"},
          {:leases, "EACCES"},
          {:sudo_not_found, "sudo"},
          {:bad_option_value, :memory, 1},
          {:host_down, :"ampule@10.0.0.2"},
          :no_host
        ] do
      message = Ampule.format_error(reason)
      refute message =~ "unexpected reason", "no explanation for #{inspect(reason)}"
    end

    # Limits say what they take.
    assert Ampule.format_error({:bad_option_value, :memory, 1}) =~ "at least 16 MiB"
    error = assert_raise ArgumentError, fn -> Ampule.Options.spawn!(memory: 1) end
    assert error.message =~ "at least 16 MiB"
    assert_raise ArgumentError, ~r/at least 16/, fn -> Ampule.Options.spawn!(pids: 3) end
    assert Ampule.format_error(:some_future_reason) =~ "unexpected reason: :some_future_reason"
  end

  test "a name is checked as the port checks it, for spawn and create alike" do
    assert {_, %{name: "web_1"}, _} = Options.spawn!(name: "web_1", owner: false)
    assert {_, %{name: "_x-1"}, _} = Options.spawn!(name: "_x-1", owner: false)

    for bad <- ["-x", "", "a/b", "a b", String.duplicate("x", 41)] do
      assert_raise ArgumentError, ~r/:name.*not starting with -/, fn ->
        Options.spawn!(name: bad, owner: false)
      end

      # Refused before anything reaches the port.
      assert_raise ArgumentError, ~r/:name/, fn -> Ampule.create(name: bad) end
    end
  end

  test "create's options: the port's map, its bounds, a login that goes together" do
    assert {%{name: "box", template: "debian", memory: 33_554_432, cpu_millis: 500}, owner, nil,
            100,
            600_000} =
             Options.create!(name: "box", template: "debian", memory: 32 * 1024 * 1024, cpus: 0.5)

    assert owner == self()

    assert {%{user: {"alice", "pw"}}, nil, nil, :once, 5} =
             Options.create!(
               user: "alice",
               password: "pw",
               owner: false,
               active: :once,
               timeout: 5
             )

    assert {%{name: "s-" <> _}, _, progress_to, _, _} = Options.create!(progress: true)
    assert progress_to == self()

    assert_raise ArgumentError, ~r/:timeout/, fn -> Options.create!(timeout: 3_600_001) end
    assert_raise ArgumentError, ~r/:memory/, fn -> Options.create!(memory: 1) end
    assert_raise ArgumentError, ~r/go together/, fn -> Options.create!(user: "alice") end
    assert_raise ArgumentError, ~r/:colour/, fn -> Options.create!(colour: :red) end
  end

  test "boot_timeout is bounded as the port bounds it" do
    assert {_, %{boot_timeout: 3_600_000}, _} =
             Options.spawn!(boot_timeout: 3_600_000, owner: false)

    assert_raise ArgumentError, ~r/from 1 to 3600000/, fn ->
      Options.spawn!(boot_timeout: 3_600_001, owner: false)
    end
  end
end
