defmodule Mix.Tasks.Compile.AmpulePort do
  @shortdoc "Builds Ampule's port program (Rust) into priv/"

  @moduledoc """
  Builds `ampule_port`, the Rust program that drives liblxc, and copies it to
  `priv/ampule_port`.

  It runs as the first of Ampule's compilers (`compilers: [:ampule_port] ++ Mix.compilers()`),
  so `mix compile` builds the port in Ampule's own checkout as well as in an application that
  depends on Ampule by `path:` or `git:`:

      cargo build --release --locked

  in the directory of Ampule's `mix.exs` (the root of its cargo workspace), with the target
  directory `target/` beside it. Nothing is built when no file under `native/`, nor
  `Cargo.toml` or `Cargo.lock`, is newer than `priv/ampule_port`; `mix compile --force`
  builds anyway. When cargo fails, the compilation fails with cargo's output.

  ## Using a prebuilt binary

  Set `AMPULE_PORT_PATH` to the path of an `ampule_port` binary: it is copied to
  `priv/ampule_port` and cargo is not run (no Rust toolchain is needed). At run time the
  same variable, when set, is also where `Ampule.Port` finds the program.

  ## Requirements

  A Rust toolchain (`cargo`), and the headers bindgen reads: on Debian 12,
  `apt-get install cargo lxc-dev libclang-dev` (or a toolchain from rustup).
  `mix ampule.check` tells what else the host needs to run containers.
  """

  use Mix.Task.Compiler

  # The project's root: this file sits at elixir/mix/tasks/ in Ampule's own directory,
  # whichever project is being compiled and whatever the current directory is.
  @root Path.expand("../../..", __DIR__)
  @crate "ampule_port"

  @impl Mix.Task.Compiler
  def run(args) do
    {opts, _, _} = OptionParser.parse(args, switches: [force: :boolean])
    dest = dest()
    File.mkdir_p!(Path.dirname(dest))

    result =
      cond do
        prebuilt = System.get_env("AMPULE_PORT_PATH") -> copy_prebuilt(prebuilt, dest)
        !opts[:force] and up_to_date?(dest) -> {:noop, []}
        true -> build(dest)
      end

    ensure_build_priv()
    result
  end

  @impl Mix.Task.Compiler
  def manifests, do: []

  @impl Mix.Task.Compiler
  def clean do
    File.rm(origin_file())
    File.rm(dest())
  end

  @doc false
  # The project root the port is built in (tests use it).
  def root, do: @root

  @doc false
  def dest, do: Path.join([@root, "priv", @crate])

  # Where priv/ampule_port came from, "cargo" or "prebuilt": a copy from AMPULE_PORT_PATH
  # is never up to date for a build from source, however new its mtime.
  @doc false
  def origin_file, do: dest() <> ".origin"

  defp origin, do: File.read(origin_file())
  defp origin!(what), do: File.write!(origin_file(), what)

  @doc false
  # The files whose change makes the port stale.
  def sources do
    native =
      Path.join(@root, "native/**")
      |> Path.wildcard(match_dot: false)
      |> Enum.reject(&(String.contains?(&1, "/target/") or File.dir?(&1)))

    native ++
      Enum.filter(
        [Path.join(@root, "Cargo.toml"), Path.join(@root, "Cargo.lock")],
        &File.exists?/1
      )
  end

  defp up_to_date?(dest) do
    case {origin(), File.stat(dest, time: :posix)} do
      {{:ok, "cargo"}, {:ok, %{mtime: built}}} ->
        Enum.all?(sources(), fn file ->
          case File.stat(file, time: :posix) do
            {:ok, %{mtime: mtime}} -> mtime <= built
            {:error, _} -> true
          end
        end)

      _ ->
        false
    end
  end

  defp copy_prebuilt(prebuilt, dest) do
    cond do
      not File.regular?(prebuilt) ->
        error("AMPULE_PORT_PATH is set to #{inspect(prebuilt)}, which is not a file")

      (why = not_a_port(prebuilt)) != nil ->
        error(
          "AMPULE_PORT_PATH is set to #{inspect(prebuilt)}, which is not an ampule_port: #{why}"
        )

      Path.expand(prebuilt) == dest or same_file?(prebuilt, dest) ->
        origin!("prebuilt")
        {:noop, []}

      true ->
        install(prebuilt, dest)
        origin!("prebuilt")
        Mix.shell().info("Copied prebuilt ampule_port from #{prebuilt} (AMPULE_PORT_PATH)")
        {:ok, []}
    end
  end

  @doc false
  # Whether `path` is a port program, asked without side effects: given an argument it
  # does not know, ampule_port answers on fd 4 with `{event, fatal, #{reason =>
  # bad_arguments}}` before it touches the host, and exits with status 64. Returns nil if
  # so, else why not.
  def not_a_port(path) do
    port =
      Port.open({:spawn_executable, path}, [
        {:packet, 4},
        :binary,
        :nouse_stdio,
        :exit_status,
        args: ["--ampule-compile-probe"]
      ])

    answer =
      receive do
        {^port, {:data, frame}} -> decode_fatal(frame)
        {^port, {:exit_status, status}} -> "it exited (#{status}) without a frame"
      after
        10_000 -> "it did not answer within 10 s"
      end

    close(port)
    answer
  rescue
    e in ErlangError -> "it cannot be run (#{inspect(e.original)})"
  end

  defp decode_fatal(frame) do
    case :erlang.binary_to_term(frame, [:safe]) do
      {:event, :fatal, %{reason: :bad_arguments}} -> nil
      other -> "its first frame is #{inspect(other, limit: 5)}, not the protocol's"
    end
  rescue
    ArgumentError -> "its first frame is not a term"
  end

  defp close(port) do
    Port.close(port)
  catch
    :error, _ -> :ok
  end

  # The copy made last time: same size, and not older than the prebuilt binary.
  defp same_file?(prebuilt, dest) do
    with {:ok, from} <- File.stat(prebuilt, time: :posix),
         {:ok, to} <- File.stat(dest, time: :posix) do
      from.size == to.size and to.mtime >= from.mtime
    else
      _ -> false
    end
  end

  defp build(dest) do
    case cargo() do
      nil ->
        error("""
        cargo was not found in PATH, so Ampule's port program cannot be built.
        Install a Rust toolchain (Debian: apt-get install cargo lxc-dev libclang-dev), or
        set AMPULE_PORT_PATH to a prebuilt ampule_port binary.\
        """)

      cargo ->
        Mix.shell().info("Building ampule_port (cargo build --release --locked) in #{@root}")
        target_dir = Path.join(@root, "target")

        case run_cargo(cargo, ["build", "--release", "--locked", "-p", @crate], target_dir) do
          {_output, 0} ->
            install(Path.join([target_dir, "release", @crate]), dest)
            origin!("cargo")
            {:ok, []}

          {output, status} ->
            headline =
              "cargo build --release --locked failed with exit status #{status} in #{@root}"

            # The output was shown as it came; the diagnostic carries its end too.
            error(headline <> " (its output is above)", headline <> ":\n\n" <> tail(output, 60))
        end
    end
  end

  defp cargo do
    System.find_executable("cargo") ||
      Enum.find(
        [Path.expand("~/.cargo/bin/cargo")],
        &File.regular?/1
      )
  end

  # Runs cargo and echoes its output as it comes, keeping it for the error message.
  defp run_cargo(cargo, args, target_dir) do
    port =
      Port.open({:spawn_executable, cargo}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        args: args,
        cd: @root,
        env: [{~c"CARGO_TARGET_DIR", String.to_charlist(target_dir)}]
      ])

    collect(port, [])
  end

  defp collect(port, acc) do
    receive do
      {^port, {:data, data}} ->
        IO.write(data)
        collect(port, [acc | data])

      {^port, {:exit_status, status}} ->
        {IO.iodata_to_binary(acc), status}
    end
  end

  defp tail(output, lines) do
    output |> String.split("\n") |> Enum.take(-lines) |> Enum.join("\n")
  end

  # Copies through a temporary file and a rename: the old binary may be running.
  defp install(from, dest) do
    tmp = dest <> ".tmp#{System.unique_integer([:positive])}"
    File.cp!(from, tmp)
    File.chmod!(tmp, 0o755)
    File.rename!(tmp, dest)
  end

  # Mix links _build/ENV/lib/ampule/priv to priv/ only if priv/ existed when it laid out
  # the build directory; on a fresh checkout it did not.
  defp ensure_build_priv do
    if Mix.Project.get() do
      app_priv = Path.join(Mix.Project.app_path(), "priv")
      unless File.exists?(app_priv), do: Mix.Project.build_structure()
    end

    :ok
  end

  defp error(message, diagnostic_message \\ nil) do
    Mix.shell().error(message)
    message = diagnostic_message || message

    diagnostic = %Mix.Task.Compiler.Diagnostic{
      compiler_name: "ampule_port",
      file: Path.join(@root, "Cargo.toml"),
      position: nil,
      message: message,
      severity: :error
    }

    {:error, [diagnostic]}
  end
end
