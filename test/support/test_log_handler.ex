defmodule Ampule.TestLogHandler do
  @moduledoc false
  # An Erlang :logger handler that sends every event to a test process, so a test can see
  # a log event's metadata (Ampule's :container).

  def attach(id, pid) do
    :ok = :logger.add_handler(id, __MODULE__, %{config: %{pid: pid}, level: :all})
    ExUnit.Callbacks.on_exit(fn -> :logger.remove_handler(id) end)
  end

  def log(%{msg: msg, meta: meta, level: level}, %{config: %{pid: pid}}) do
    send(pid, {:log, level, message(msg), meta})
  end

  defp message({:string, chardata}), do: IO.chardata_to_string(chardata)
  defp message({:report, report}), do: inspect(report)
  defp message({format, args}), do: format |> :io_lib.format(args) |> IO.chardata_to_string()
end
