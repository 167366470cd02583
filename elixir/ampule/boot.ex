defmodule Ampule.Boot do
  @moduledoc false
  # How a container's node boots: the lean defaults that Ampule.Options puts before the
  # caller's `:args`. Each was measured A/B (bench/boot.exs; docs/benchmarks.md, "What
  # makes a boot cheaper") and is kept because it cut a boot's CPU time or a node's
  # memory without breaking a test:
  #
  #   * one scheduler and one dirty CPU scheduler per CPU of the container's quota
  #     (`:cpus`, one by default; none of these flags with `cpus: :infinity`), one dirty
  #     I/O scheduler, no async threads: a node under a quota of one CPU gains nothing from
  #     threads for the host's every core, and each costs memory and wake-ups;
  #   * schedulers that sleep at once when out of work (`+sbwt none`, and for both kinds
  #     of dirty scheduler), instead of spinning on a CPU that the quota charges;
  #   * no cached memory segments and no main carriers (`+MMmcs 0 +Mummbcs 0`): memory the
  #     node does not use goes back to the host (`+Mea min` saves a little more but makes
  #     `:erlang.memory/0` raise `:notsup`);
  #   * process and port tables of 65,536 and 8,192 (`+P`, `+Q`) instead of 262,144 and
  #     65,536: the tables are preallocated, and a container's memory limit (512 MiB by
  #     default) would not hold that many processes anyway;
  #   * a boot script that loads neither `erl_eval`, `erl_lint` nor `erl_parse` at boot
  #     (they load on first use, as any module) and reads no `.erlang`: the system's
  #     `start.script` with those two changes, made at run time from the OTP that the
  #     containers run (`/usr/lib/erlang`, the host's `/usr`), so that it always names its
  #     kernel's and stdlib's versions.
  #
  # Later flags win over earlier ones, so the caller's `:args` override any of them
  # (`+P 1048576`); a `-boot` among them replaces the boot script (the first `-boot` wins,
  # so Ampule then gives none). `config :ampule, lean_boot: false` boots stock nodes.

  require Logger

  # What `/usr/bin/erl` in a container runs: the host's /usr is the container's.
  @otp_root "/usr/lib/erlang"
  # Loaded at boot by the system's boot script although the boot needs none of them.
  @not_at_boot [:erl_eval, :erl_lint, :erl_parse]
  # Changes when the way the script is made changes, so that an old file is not reused.
  @recipe 1

  @doc """
  The code paths to add and the arguments to put before the caller's, for a node with
  CPU quota `cpus` (`nil` is the port's default, one CPU) and the caller's `args`.
  """
  @spec args(number | :infinity | nil, [String.t()]) :: {[String.t()], [String.t()]}
  def args(cpus, user_args) do
    if Application.get_env(:ampule, :lean_boot, true) do
      {paths, boot} =
        case if("-boot" in user_args, do: :theirs, else: script()) do
          {:ok, dir, boot} -> {[dir], ["-boot", boot]}
          _theirs_or_none -> {[], []}
        end

      {paths, emulator_flags(cpus) ++ boot}
    else
      {[], []}
    end
  end

  @doc "The emulator flags of a node with CPU quota `cpus`."
  @spec emulator_flags(number | :infinity | nil) :: [String.t()]
  def emulator_flags(cpus) do
    threads =
      case schedulers(cpus) do
        nil -> []
        n -> ["+S", "#{n}:#{n}", "+SDcpu", "#{n}:#{n}", "+SDio", "1", "+A", "0"]
      end

    threads ++
      ~w(+sbwt none +sbwtdcpu none +sbwtdio none +MMmcs 0 +Mummbcs 0 +P 65536 +Q 8192)
  end

  # As many schedulers as the quota has CPUs (rounded up), at most the host's.
  defp schedulers(nil), do: 1
  defp schedulers(:infinity), do: nil

  defp schedulers(cpus) when is_number(cpus) do
    cpus |> ceil() |> max(1) |> min(:erlang.system_info(:logical_processors))
  end

  @doc """
  The lean boot script: `{:ok, dir, boot}` where `boot` (`dir/NAME`, for `-boot`) is made
  from the system's `start.script`, or `:none` if it cannot be (no such script, one of
  another shape, or no place to write it). Made once per `start.script`: its size and
  modification time are checked on each call.
  """
  @spec script() :: {:ok, String.t(), String.t()} | :none
  def script do
    source = Path.join(@otp_root, "bin/start.script")

    stamp =
      case File.stat(source, time: :posix) do
        {:ok, %{size: size, mtime: mtime}} -> {size, mtime}
        {:error, _} -> nil
      end

    case :persistent_term.get({__MODULE__, :script}, nil) do
      {^stamp, result} ->
        result

      _ ->
        result = if stamp, do: make(source), else: :none
        :persistent_term.put({__MODULE__, :script}, {stamp, result})
        result
    end
  end

  defp make(source) do
    with {:ok, [{:script, id, commands}]} <- :file.consult(source),
         {:ok, commands} <- lean(commands),
         {:ok, dir, boot} <- write(source, {:script, id, commands}) do
      {:ok, dir, boot}
    else
      other ->
        Logger.debug("Ampule: nodes boot with the system's boot script (#{inspect(other)})")
        :none
    end
  end

  # The first `primLoad` is what init loads before the code server runs (in interactive
  # mode, the only modules loaded at boot): `@not_at_boot` move from it to the next one,
  # which only an embedded node loads at boot. `c:erlangrc` (which loads `c` and looks
  # for `.erlang` files) goes.
  defp lean(commands) do
    commands = Enum.reject(commands, &(&1 == {:apply, {:c, :erlangrc, []}}))

    case Enum.split_while(commands, &(not match?({:primLoad, _}, &1))) do
      {before, [{:primLoad, first} | rest]} ->
        if Enum.all?(@not_at_boot, &(&1 in first)) do
          {:ok, before ++ [{:primLoad, first -- @not_at_boot} | move_to_next(rest)]}
        else
          {:error, :unexpected_script}
        end

      _ ->
        {:error, :unexpected_script}
    end
  end

  defp move_to_next(commands) do
    case Enum.split_while(commands, &(not match?({:primLoad, _}, &1))) do
      {before, [{:primLoad, next} | rest]} -> before ++ [{:primLoad, next ++ @not_at_boot} | rest]
      {all, []} -> all ++ [{:primLoad, @not_at_boot}]
    end
  end

  # In Ampule's priv/boot, which containers mount read-only: a name of its content's hash,
  # written whole (a temporary file renamed) and readable by the container's user.
  defp write(source, script) do
    binary = :erlang.term_to_binary(script)
    hash = :erlang.md5([binary, <<@recipe>>]) |> Base.encode16(case: :lower)
    dir = Path.expand(Path.join(:code.priv_dir(:ampule), "boot"))
    name = "lean-#{binary_part(hash, 0, 16)}"
    file = Path.join(dir, name <> ".boot")

    with false <- File.regular?(file),
         :ok <- File.mkdir_p(dir),
         :ok <- File.chmod(dir, 0o755),
         tmp = "#{file}.#{System.unique_integer([:positive])}",
         :ok <- File.write(tmp, binary),
         :ok <- File.chmod(tmp, 0o644),
         :ok <- rename(tmp, file) do
      {:ok, dir, Path.join(dir, name)}
    else
      true -> {:ok, dir, Path.join(dir, name)}
      {:error, reason} -> {:error, {:write, dir, reason, source}}
    end
  end

  defp rename(tmp, file) do
    with {:error, _} = error <- File.rename(tmp, file) do
      _ = File.rm(tmp)
      error
    end
  end
end
