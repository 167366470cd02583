defmodule Ampule.Test.LocalAgent do
  @moduledoc false
  # The agent in a plain local `erl` (no container), connected to a channel's socket: the
  # channel and the agent tested on their own. The node gets this VM's code path, so the
  # agent, Elixir and the test helpers are there, as in a sandbox with host_code_paths.

  @doc "Starts `erl -run ampule_agent start PATH`; returns the Erlang port of the OS process."
  def start(path) do
    erl = System.find_executable("erl")

    paths =
      :code.get_path()
      |> Enum.map(&to_string/1)
      |> Enum.filter(&File.dir?/1)
      |> Enum.flat_map(&["-pa", &1])

    Port.open({:spawn_executable, erl}, [
      :binary,
      :exit_status,
      :stderr_to_stdout,
      args: ["-noshell", "-noinput" | paths] ++ ["-run", "ampule_agent", "start", path]
    ])
  end

  @doc "The OS pid of the agent's node."
  def os_pid(port) do
    {:os_pid, pid} = Port.info(port, :os_pid)
    pid
  end

  @doc """
  Kills the node `os_pid` (from `os_pid/1`, taken while the port is open: the port closes
  with the process that opened it, and the node does not end with it).
  """
  def stop(os_pid) when is_integer(os_pid) do
    System.cmd("kill", ["-9", to_string(os_pid)], stderr_to_stdout: true)
    :ok
  end
end
