defmodule Ampule.Protocol do
  @moduledoc false
  # The Elixir mirror of the port's protocol.rs: the only module that knows how terms are
  # framed on the wire (docs/protocol.md). Framing itself ({packet, 4}) is the port driver's.

  @version 2

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

  @doc "Converts spawn options (already validated) into the request map."
  @spec spawn_request(keyword) :: {:spawn, map}
  def spawn_request(opts), do: {:spawn, Map.new(opts)}

  # Atoms that may appear in frames from the port; referencing them here guarantees that
  # they exist before a `[:safe]` decode. The first group is docs/protocol.md's; the rest
  # are sent by the port (native/ampule_port/src) without being listed there.
  @atoms [
    :event,
    :hello,
    :fatal,
    :log,
    :exit,
    :bad_frame,
    :ok,
    :error,
    :pong,
    :protocol,
    :version,
    :lxc_version,
    :bridge,
    :host_address,
    :subnet,
    :instance,
    :agents_dir,
    :node_uid,
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
    :app,
    :sandbox,
    :system,
    :booting,
    :running,
    :stopped,
    :undefined,
    :oom,
    :bad_option,
    :bad_option_value,
    :bad_config_key,
    :name_in_use,
    :closing,
    :no_address,
    :lxc,
    :boot_failed,
    :boot_timeout,
    :create,
    :start,
    :epmd,
    :handshake,
    :not_found,
    :no_log,
    :unknown_request,
    :bad_request,
    :bad_term,
    :bad_envelope,
    :frame_too_large,
    :warn,
    :debug,
    :info,
    # fatal reasons
    :bad_arguments,
    :internal,
    :no_bridge,
    :no_cgroups,
    :no_state_dir,
    :no_subid_range,
    :not_root,
    # {lxc, Call}
    :console_getfd,
    :destroy,
    :lxc_container_new,
    :save_config,
    :set_config_item,
    :shutdown,
    :stop,
    :wait,
    # other errors and states
    :rootfs,
    :leases,
    :killed,
    :unknown,
    :oom,
    :destroying,
    :stopping,
    # {bad_term, Detail}
    :empty,
    :bad_version,
    :truncated,
    :trailing_bytes,
    :too_deep,
    :refused_tag,
    :unknown_tag,
    :undecodable,
    # system containers
    :console,
    :progress,
    :phase,
    :creating,
    :starting,
    :template_unavailable,
    :unknown_template,
    :create_failed,
    :create_timeout,
    :dhcp,
    :no_console,
    :not_system,
    :already_running,
    :not_running
  ]

  @doc false
  def atoms, do: @atoms
end
