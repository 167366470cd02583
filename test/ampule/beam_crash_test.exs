defmodule Ampule.BeamCrashTest do
  # kill -9 of a whole BEAM running Ampule: its port program sees the end of its input and
  # removes every container. Not async: it starts a second BEAM (and port program), and it
  # counts the veths on the machine.
  use ExUnit.Case, async: false

  alias Ampule.Test.Host

  @moduletag :root
  @moduletag :lxc

  @script """
  {:ok, _} = Application.ensure_all_started(:ampule)
  containers = for _ <- 1..5, do: Ampule.spawn(owner: false)
  IO.puts("READY \#{Ampule.Port.os_pid()} " <> Enum.map_join(containers, " ", & &1.name))
  Process.sleep(:infinity)
  """

  test "SIGKILL of the BEAM with five containers: within two seconds nothing is left" do
    ebins = Path.wildcard(Path.join(Mix.Project.build_path(), "lib/*/ebin"))
    # The suite's bridge, subnet and state dir (config/config.exs), which a bare BEAM lacks.
    settings = Application.get_all_env(:ampule) |> Keyword.take([:bridge, :subnet, :state_dir])
    script = "Application.put_all_env(ampule: #{inspect(settings)})\n" <> @script
    args = Enum.flat_map(ebins, &["-pa", &1]) ++ ["-e", script]

    beam =
      Port.open({:spawn_executable, System.find_executable("elixir")}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        line: 4096,
        args: args
      ])

    {:os_pid, os_pid} = Port.info(beam, :os_pid)
    # Should an assertion fail before the kill, the BEAM must not outlive the test.
    on_exit(fn -> System.cmd("kill", ["-9", to_string(os_pid)], stderr_to_stdout: true) end)
    [port_pid | names] = await_ready(beam)
    assert length(names) == 5
    assert File.read!("/proc/#{os_pid}/comm") == "beam.smp\n"

    veths = Enum.map(names, &veth_of/1)

    for name <- names do
      assert Host.traces_of(name) != []
      assert Host.container_pids(name) != []
    end

    assert veths -- Host.veths() == []

    killed_at = System.monotonic_time(:millisecond)
    {_, 0} = System.cmd("kill", ["-9", to_string(os_pid)])
    assert_receive {^beam, {:exit_status, 137}}, 1_000

    gone? = fn ->
      Enum.all?(names, &(Host.traces_of(&1) == [] and Host.container_pids(&1) == [])) and
        veths -- veths -- Host.veths() == [] and exited?(port_pid)
    end

    assert Host.wait_until(gone?, 2_000),
           "left after 2 s: #{inspect(Enum.map(names, &Host.traces_of/1))}, " <>
             "veths #{inspect(veths -- veths -- Host.veths())}, " <>
             "pids #{inspect(Enum.map(names, &Host.container_pids/1))}, " <>
             "port #{inspect(File.read("/proc/#{port_pid}/status"))}"

    elapsed = System.monotonic_time(:millisecond) - killed_at

    IO.puts(
      "\n  five containers removed and the port exited #{elapsed} ms after kill -9 of their BEAM"
    )
  end

  # Gone, or a zombie its new parent has not reaped yet (that can take two seconds here):
  # either way it has exited.
  defp exited?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} -> String.contains?(stat, ") Z ")
      {:error, _} -> true
    end
  end

  defp veth_of(name) do
    [dir] = Enum.filter(Host.container_dirs(), &(Path.basename(&1) == name))
    config = File.read!(Path.join(dir, "config"))
    [_, veth] = Regex.run(~r/^lxc\.net\.0\.veth\.pair = (\S+)$/m, config)
    veth
  end

  defp await_ready(beam) do
    receive do
      {^beam, {:data, {:eol, "READY " <> rest}}} -> String.split(rest)
      {^beam, {:data, _other}} -> await_ready(beam)
      {^beam, {:exit_status, status}} -> flunk("the BEAM exited (#{status}) before READY")
    after
      60_000 -> flunk("no READY from the BEAM in 60 s")
    end
  end
end
