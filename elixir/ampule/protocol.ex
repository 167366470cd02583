defmodule Ampule.Protocol do
  @moduledoc false
  # The Elixir mirror of the port's protocol.rs: the only module that knows how terms are
  # framed on the wire (docs/protocol.md). Framing itself ({packet, 4}) is the port driver's.

  @version 3

  @doc "The protocol version this client speaks."
  def version, do: @version

  @doc "Encodes a request envelope `{tag, request}` (UTF-8 atoms: minor_version 2)."
  @spec encode(term, term) :: binary
  def encode(tag, request), do: encode({tag, request})

  @spec encode(term) :: binary
  def encode(term), do: :erlang.term_to_binary(term, minor_version: 2)

  @doc """
  Decodes a frame from the port with `binary_to_term(bin, [:safe])`: an atom this VM has
  not seen is refused. Every atom the port sends exists here already (`atoms/0`); node
  names and cookies travel as binaries (docs/protocol.md).
  """
  @spec decode(binary) :: {:ok, term} | {:error, :bad_term}
  def decode(binary) when is_binary(binary) do
    {:ok, :erlang.binary_to_term(binary, [:safe])}
  rescue
    ArgumentError -> {:error, :bad_term}
  end

  # Every atom the port may send, so that each exists before a `[:safe]` decode: exactly
  # docs/protocol.md's "Every atom the port sends", in its order (an atom listed twice there
  # is named once here). test/ampule/tables_test.exs checks this list against that page and
  # against the reasons the port prints (`ampule_port --print-tables`).
  @atoms [
    # frames
    :event,
    :hello,
    :fatal,
    :log,
    :exit,
    :bad_frame,
    :console,
    :progress,
    :ok,
    :error,
    :pong,
    # keys
    :protocol,
    :version,
    :lxc_version,
    :bridge,
    :host_address,
    :subnet,
    :instance,
    :reason,
    :message,
    :level,
    :container,
    :name,
    :status,
    :nodename,
    :address,
    :cookie,
    :init_pid,
    :boot_ms,
    :kind,
    :state,
    :phase,
    :agents_dir,
    :node_uid,
    # values
    :app,
    :sandbox,
    :system,
    :booting,
    :running,
    :stopped,
    :destroying,
    :stopping,
    :undefined,
    :killed,
    :unknown,
    :oom,
    :creating,
    :starting,
    :warning,
    :info,
    :debug,
    # fatal reasons
    :not_root,
    :no_bridge,
    :no_cgroups,
    :no_state_dir,
    :no_subid_range,
    :bad_arguments,
    :internal,
    # errors
    :bad_option,
    :bad_option_value,
    :bad_config_key,
    :name_in_use,
    :no_address,
    :not_found,
    :no_log,
    :lxc,
    :rootfs,
    :leases,
    :boot_failed,
    :boot_timeout,
    :create,
    :start,
    :epmd,
    :handshake,
    :announce,
    :unknown_request,
    :bad_request,
    :bad_term,
    :bad_envelope,
    :frame_too_large,
    :template_unavailable,
    :unknown_template,
    :create_failed,
    :create_timeout,
    :dhcp,
    :no_console,
    :not_system,
    :already_running,
    :closing,
    # {lxc, Call} calls
    :lxc_container_new,
    :set_config_item,
    :clear_config_item,
    :save_config,
    :stop,
    :shutdown,
    :wait,
    :destroy,
    :console_getfd,
    # details of {bad_term, {Kind, Text}}
    :empty,
    :bad_version,
    :truncated,
    :trailing_bytes,
    :too_deep,
    :refused_tag,
    :unknown_tag,
    :undecodable
  ]

  @doc false
  def atoms, do: @atoms
end
