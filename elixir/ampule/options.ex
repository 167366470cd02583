defmodule Ampule.Options do
  @moduledoc false
  # Validates the options of every entry point (start/spawn/call, create, console_active),
  # raising ArgumentError that names the option, and turns them into the port's spawn and
  # create maps. The port's own limits live here once (`@port_options`); a test
  # (test/ampule/tables_test.exs) checks them against the port's (`ampule_port
  # --print-tables`) and docs/protocol.md.

  alias Ampule.Distribution

  @spawn_defaults [
    name: nil,
    boot_timeout: 15_000,
    code_paths: [],
    host_code_paths: true,
    args: [],
    hidden: true,
    env: [],
    config: [],
    memory: nil,
    pids: nil,
    cpu_shares: nil,
    cpus: nil,
    seccomp: nil,
    owner: :self,
    sandbox: :config,
    max_result: nil,
    prepare: nil
  ]

  # A sandbox's default result limit, and the largest one: a frame's length is 32 bits
  # and carries a 17-byte header besides the term.
  @max_result 64 * 1024 * 1024
  @max_max_result 0xFFFFFFFF - 17

  # The port's name rule (native/ampule_port/src/protocol.rs, `valid_name`): 1 to 40 of
  # A-Z a-z 0-9 _ -, not starting with `-` (it would read as an option to lxc's tools).
  @name_re ~r/\A[A-Za-z0-9_][A-Za-z0-9_-]{0,39}\z/
  @name_rule "1 to 40 of A-Z a-z 0-9 _ -, not starting with -"

  @u64_max 0xFFFF_FFFF_FFFF_FFFF

  # Every key of the port's spawn and create maps, as the port takes it: `{min, max}` for
  # an integer it bounds, `:checked` for a value the port checks in its own way (the
  # library checks it first, more strictly), `:unused` for a key the port takes and this
  # library never sends. One table: the validators below read their bounds from it.
  @limits %{
    memory: {16 * 1024 * 1024, @u64_max},
    pids: {16, @u64_max},
    cpu_shares: {2, @u64_max},
    cpu_millis: {10, 1_024_000}
  }
  @port_options %{
    spawn:
      Map.merge(@limits, %{
        name: :checked,
        boot_timeout: {1, 3_600_000},
        code_paths: :checked,
        args: :checked,
        env: :checked,
        config: :checked,
        seccomp: :checked,
        sandbox: :checked,
        announce: :checked
      }),
    create:
      Map.merge(@limits, %{
        name: :checked,
        template: :checked,
        release: :checked,
        user: :checked,
        privileged: :checked,
        persistent: :checked,
        timeout: {1, 3_600_000},
        template_args: :unused,
        config: :unused
      })
  }

  @create_defaults [
    name: nil,
    template: nil,
    release: nil,
    user: nil,
    password: nil,
    privileged: nil,
    persistent: nil,
    timeout: nil,
    owner: :self,
    progress: false,
    memory: nil,
    pids: nil,
    cpu_shares: nil,
    cpus: nil,
    active: nil
  ]

  # Chunks of console output sent to the owner before it must re-arm (`console_active/2`);
  # as cowboy's `active_n`. Bounds its mailbox to about 100 × 16 KiB.
  @default_active 100
  @default_create_timeout 600_000

  @doc "The keys of the port's spawn and create maps and their bounds (see `@port_options`)."
  @spec port_options() :: %{spawn: map, create: map}
  def port_options, do: @port_options

  @doc "The console mode of a system container when `:active` is not given."
  @spec default_active() :: pos_integer
  def default_active, do: @default_active

  @doc "The options of spawn/start, with their defaults."
  def spawn_defaults, do: @spawn_defaults

  @doc """
  Validates spawn options. Returns `{owner, request, kind}`: the owner pid (or nil), the
  map sent to the port, and `:distribution` or `{:sandbox, max_result}`.

  Ampule's own ebin is always on a container's code path (even with `host_code_paths:
  false`): after its boot, every node puts its own code directories before OTP's
  (`-s ampule_code_path promote`); a sandbox's node then starts its agent (`-run
  ampule_agent start`), and a distribution container's node announces itself (`-s
  ampule_announce`, with `announce: true` in the request).
  """
  @spec spawn!(keyword) :: {pid | nil, map, :distribution | {:sandbox, pos_integer}}
  def spawn!(opts) do
    opts = validate!(opts, @spawn_defaults)

    kind =
      case {opts[:sandbox], opts[:max_result]} do
        {true, max} ->
          {:sandbox, max || @max_result}

        {false, nil} ->
          :distribution

        {false, max} ->
          bad!(
            :max_result,
            max,
            "no :max_result without sandbox: true (results over distribution are not limited)"
          )
      end

    # The lean boot's flags and boot script (Ampule.Boot), before the caller's arguments,
    # which override them.
    {boot_paths, boot_args} = Ampule.Boot.args(opts[:cpus], opts[:args])

    # Ampule's ebin: the agent must be there; a distribution node does without it (and
    # without the promotion and the announcement: the port then finds it in its EPMD and
    # handshakes, as before issue 21) when Ampule runs from an archive, as in an escript.
    # After the boot, the promotion first (nothing of the caller's runs before it), then
    # a distribution node's announcement (`ampule_announce`: the port answers when it
    # comes), then the caller's own `-s`, `-run` and `-eval`, in that order.
    {ampule_paths, after_boot, announce} =
      case {kind, ampule_ebin()} do
        {:distribution, {:ok, dir}} ->
          {[dir], ["-s", "ampule_code_path", "promote", "-s", "ampule_announce"], true}

        {_sandbox, {:ok, dir}} ->
          {[dir], ["-s", "ampule_code_path", "promote"], false}

        {:distribution, :error} ->
          {[], [], false}

        {_sandbox, :error} ->
          raise "Ampule's ebin, where the sandbox agent lives, is not a directory"
      end

    code_paths =
      if(opts[:host_code_paths], do: Distribution.host_code_paths(), else: []) ++
        opts[:code_paths] ++ ampule_paths ++ boot_paths

    args =
      boot_args ++
        after_boot ++
        case {kind, opts[:hidden]} do
          {{:sandbox, _}, _hidden} -> ["-run", "ampule_agent", "start" | opts[:args]]
          {:distribution, true} -> ["-hidden" | opts[:args]]
          {:distribution, false} -> opts[:args]
        end

    request =
      %{
        boot_timeout: opts[:boot_timeout],
        code_paths: Enum.uniq(code_paths),
        args: args,
        env: opts[:env],
        config: opts[:config],
        name: opts[:name],
        memory: opts[:memory],
        pids: opts[:pids],
        cpu_shares: opts[:cpu_shares],
        cpu_millis: cpu_millis(opts[:cpus]),
        seccomp: opts[:seccomp]
      }
      |> Enum.reject(fn {_key, value} -> value == nil end)
      |> Map.new()
      |> then(&if(announce, do: Map.put(&1, :announce, true), else: &1))

    {opts[:owner], request, kind}
  end

  # Ampule's own ebin, where the modules that run in every container live (the agent,
  # ampule_code_path, the announcer).
  defp ampule_ebin do
    with path when is_list(path) <- :code.which(:ampule_code_path),
         dir = path |> Path.dirname() |> Path.expand(),
         true <- File.dir?(dir) do
      {:ok, dir}
    else
      _ -> :error
    end
  end

  @doc "The port's `cpu_millis` for a `:cpus` value (validated): thousandths, or `:infinity`."
  @spec cpu_millis(number | :infinity | nil) :: pos_integer | :infinity | nil
  def cpu_millis(nil), do: nil
  def cpu_millis(:infinity), do: :infinity
  def cpu_millis(cpus), do: round(cpus * 1000)

  @doc "Validates a `:cpus` value (of `start/1` or `create/1`)."
  @spec cpus!(term) :: number | :infinity | nil
  def cpus!(value), do: value!(:cpus, value)

  @doc "Validates the options of an anonymous call: `{timeout, spawn_options}`."
  @spec call!(keyword, timeout) :: {timeout, keyword}
  def call!(opts, default_timeout) do
    opts = validate_keyword!(opts)
    {timeout, spawn_opts} = Keyword.pop(opts, :timeout, default_timeout)
    # Validates the spawn options (and their names) before anything starts.
    _ = validate!(spawn_opts, @spawn_defaults, [:timeout, :on])
    {timeout!(timeout, :timeout), spawn_opts}
  end

  @doc """
  Takes the `:on` option of spawn/start/call: `{host, rest}`, host `nil` for this node
  (also when `:on` names it).
  """
  @spec on!(keyword) :: {node | nil, keyword}
  def on!(opts) do
    {on, rest} = opts |> validate_keyword!() |> Keyword.pop(:on)

    cond do
      on == nil or on == node() -> {nil, rest}
      is_atom(on) and on not in [true, false] -> {on, rest}
      true -> bad!(:on, on, "a node name (an atom)")
    end
  end

  @doc """
  Validates a console mode: for `Ampule.create/1`'s `:active` (`context: :create`, a count
  from 1 to 32767) or `Ampule.console_active/2` (`context: :set`, any integer of
  `:inet.setopts/2`'s range, -32768 to 32767, added to the count).
  """
  @spec active!(term, :create | :set) :: boolean | :once | integer
  def active!(active, _context) when is_boolean(active) or active == :once, do: active
  def active!(n, :create) when is_integer(n) and n in 1..32_767, do: n
  def active!(n, :set) when is_integer(n) and n in -32_768..32_767, do: n

  def active!(other, :create),
    do: bad!(:active, other, "true, false, :once or a count from 1 to 32767")

  def active!(other, :set),
    do: bad!(:active, other, "true, false, :once or an integer from -32768 to 32767")

  @doc "Validates a timeout argument."
  @spec timeout!(term, atom) :: timeout
  def timeout!(:infinity, _name), do: :infinity
  def timeout!(timeout, _name) when is_integer(timeout) and timeout >= 0, do: timeout

  def timeout!(other, name) do
    raise ArgumentError,
          "invalid value for #{inspect(name)}: expected a non-negative integer (milliseconds) " <>
            "or :infinity, got: #{inspect(other)}"
  end

  defp validate_keyword!(opts) do
    if Keyword.keyword?(opts) do
      opts
    else
      raise ArgumentError, "expected a keyword list of options, got: #{inspect(opts)}"
    end
  end

  defp validate!(opts, defaults, also_allowed \\ []) do
    opts = validate_keyword!(opts)

    case Keyword.validate(opts, defaults ++ Enum.map(also_allowed, &{&1, nil})) do
      {:ok, validated} ->
        validated
        |> Keyword.drop(also_allowed)
        |> Enum.map(fn {key, value} -> {key, value!(key, value)} end)

      {:error, unknown} ->
        unknown!(unknown, defaults ++ Enum.map(also_allowed, &{&1, nil}))
    end
  end

  defp unknown!(unknown, defaults) do
    raise ArgumentError,
          "unknown option#{if length(unknown) > 1, do: "s"} #{Enum.map_join(unknown, ", ", &inspect/1)}; " <>
            "the options are: #{Enum.map_join(Keyword.keys(defaults), ", ", &inspect/1)}"
  end

  defp value!(:name, nil), do: nil

  defp value!(:name, name) when is_binary(name) do
    if name =~ @name_re, do: name, else: bad!(:name, name, @name_rule)
  end

  defp value!(:boot_timeout, t) when is_integer(t), do: bounded!(:boot_timeout, t, :spawn)
  defp value!(:sandbox, :config), do: Application.get_env(:ampule, :sandbox, false) |> sandbox!()
  defp value!(:sandbox, b), do: sandbox!(b)
  defp value!(:prepare, spec), do: Ampule.Prepare.validate!(spec)

  defp value!(:max_result, nil), do: nil

  defp value!(:max_result, n) when is_integer(n) and n > 0 and n <= @max_max_result,
    do: n

  defp value!(:max_result, v),
    do: bad!(:max_result, v, "a positive integer (bytes) up to #{@max_max_result}")

  defp value!(key, b) when key in [:host_code_paths, :hidden] and is_boolean(b), do: b

  defp value!(:code_paths, paths) when is_list(paths) do
    Enum.map(paths, fn path ->
      path =
        to_string_or(path, fn -> bad!(:code_paths, paths, "a list of absolute directories") end)

      cond do
        Path.type(path) != :absolute -> bad!(:code_paths, path, "an absolute path")
        not File.dir?(path) -> bad!(:code_paths, path, "an existing directory")
        true -> Path.expand(path)
      end
    end)
  end

  defp value!(:args, args) when is_list(args) do
    Enum.map(args, &to_string_or(&1, fn -> bad!(:args, args, "a list of strings") end))
  end

  defp value!(key, pairs) when key in [:env, :config] and (is_list(pairs) or is_map(pairs)) do
    Enum.map(pairs, fn
      {k, v} ->
        bad = fn -> bad!(key, pairs, "a list of {name, value} pairs of strings or atoms") end
        {to_string_or(k, bad), to_string_or(v, bad)}

      _ ->
        bad!(key, pairs, "a list of {name, value} pairs of strings or atoms")
    end)
  end

  defp value!(key, nil) when key in [:memory, :pids, :cpu_shares, :cpus, :seccomp], do: nil
  defp value!(:cpus, :infinity), do: :infinity

  defp value!(:cpus, n) when is_number(n) do
    {min, max} = @limits.cpu_millis
    if n * 1000 >= min and n * 1000 <= max, do: n, else: bad!(:cpus, n, cpus_expected())
  end

  defp value!(:cpus, v), do: bad!(:cpus, v, cpus_expected())

  defp value!(:seccomp, policy) when policy in [true, false, :lxc], do: policy

  defp value!(:seccomp, path) when is_binary(path) do
    cond do
      Path.type(path) != :absolute -> bad!(:seccomp, path, "an absolute path")
      not File.regular?(path) -> bad!(:seccomp, path, "an existing profile file")
      true -> Path.expand(path)
    end
  end

  defp value!(:seccomp, v),
    do: bad!(:seccomp, v, "true, false, :lxc or the absolute path of a profile file")

  defp value!(key, n) when key in [:memory, :pids, :cpu_shares] and is_integer(n),
    do: bounded!(key, n, :spawn)

  defp value!(:owner, :self), do: self()
  defp value!(:owner, pid) when is_pid(pid), do: pid
  defp value!(:owner, false), do: nil

  defp value!(:boot_timeout, t), do: bad!(:boot_timeout, t, expected(:boot_timeout, :spawn))
  defp value!(key, v) when key in [:host_code_paths, :hidden], do: bad!(key, v, "a boolean")
  defp value!(:owner, v), do: bad!(:owner, v, "a pid or false")

  defp value!(key, v) when key in [:memory, :pids, :cpu_shares],
    do: bad!(key, v, limit_expected(key))

  defp value!(key, v) when key in [:code_paths, :args], do: bad!(key, v, "a list")

  defp value!(key, v) when key in [:env, :config],
    do: bad!(key, v, "a list of {name, value} pairs")

  defp value!(:name, v), do: bad!(:name, v, "a string")

  @doc """
  The smallest value the port takes for a cgroup limit: a node does not boot in less than
  16 MiB, nor with fewer than 16 processes (threads count); a CPU weight below 2 is not
  one the kernel takes.
  """
  @spec limit_min(:memory | :pids | :cpu_shares) :: pos_integer
  def limit_min(key) when key in [:memory, :pids, :cpu_shares], do: elem(@limits[key], 0)

  @doc "What a limit option takes, in words."
  @spec limit_expected(atom) :: String.t()
  def limit_expected(:memory),
    do: "an integer of bytes, at least 16 MiB (#{limit_min(:memory)})"

  def limit_expected(:pids), do: "an integer of processes, at least #{limit_min(:pids)}"

  def limit_expected(:cpu_shares),
    do: "an integer weight, at least #{limit_min(:cpu_shares)} (1024 is one CPU's share)"

  defp expected(key, _kind) when key in [:memory, :pids, :cpu_shares], do: limit_expected(key)

  defp expected(key, kind) do
    {min, max} = @port_options[kind][key]
    "an integer of milliseconds from #{min} to #{max}"
  end

  defp cpus_expected do
    {min, max} = @limits.cpu_millis
    "a number of CPUs from #{min / 1000} to #{div(max, 1000)}, or :infinity"
  end

  # An integer within the port's bounds for `key`, or ArgumentError.
  defp bounded!(key, n, kind) do
    {min, max} = @port_options[kind][key]
    if n >= min and n <= max, do: n, else: bad!(key, n, expected(key, kind))
  end

  @doc """
  Validates the options of `Ampule.create/1`. Returns `{request, owner, progress_to,
  active, timeout}`: the map sent to the port, the owner (or nil), the process that gets
  progress events (or nil), the console mode and the template's timeout.
  """
  @spec create!(keyword) :: {map, pid | nil, pid | nil, boolean | :once | integer, timeout}
  def create!(opts) do
    opts = validate_keyword!(opts)

    opts =
      case Keyword.validate(opts, @create_defaults) do
        {:ok, opts} -> opts
        {:error, unknown} -> unknown!(unknown, @create_defaults)
      end

    owner = value!(:owner, opts[:owner])
    active = active!(Keyword.get(opts, :active) |> default(@default_active), :create)

    progress =
      if is_boolean(opts[:progress]),
        do: opts[:progress],
        else: bad!(:progress, opts[:progress], "a boolean")

    # Progress events name the container before the reply does: pick the name here.
    name =
      if progress and owner,
        do: opts[:name] || "s-#{System.unique_integer([:positive])}",
        else: opts[:name]

    request =
      opts
      |> Keyword.take([
        :template,
        :release,
        :privileged,
        :persistent,
        :timeout,
        :memory,
        :pids,
        :cpu_shares,
        :cpus
      ])
      |> Keyword.put(:name, name)
      |> Enum.reject(fn {_key, value} -> value == nil end)
      |> Map.new(&create_value!/1)
      |> Map.merge(login!(opts[:user], opts[:password]))

    progress_to = if progress, do: owner
    {request, owner, progress_to, active, default(opts[:timeout], @default_create_timeout)}
  end

  defp create_value!({:name, name}), do: {:name, value!(:name, name)}

  defp create_value!({key, value}) when key in [:template, :release] and is_binary(value),
    do: {key, value}

  defp create_value!({key, value}) when key in [:privileged, :persistent] and is_boolean(value),
    do: {key, value}

  defp create_value!({key, value})
       when key in [:timeout, :memory, :pids, :cpu_shares] and is_integer(value),
       do: {key, bounded!(key, value, :create)}

  defp create_value!({:cpus, value}), do: {:cpu_millis, cpu_millis(cpus!(value))}

  defp create_value!({key, value}),
    do: raise(ArgumentError, "invalid value for #{inspect(key)}: #{inspect(value)}")

  defp default(nil, default), do: default
  defp default(value, _default), do: value

  defp login!(nil, nil), do: %{}

  defp login!(user, password) when is_binary(user) and is_binary(password),
    do: %{user: {user, password}}

  defp login!(_, _), do: raise(ArgumentError, ":user and :password go together, both strings")

  defp sandbox!(b) when is_boolean(b), do: b

  defp sandbox!(v),
    do: bad!(:sandbox, v, "a boolean (the default is config :ampule, sandbox: ..., else false)")

  defp to_string_or(value, _bad) when is_binary(value), do: value

  defp to_string_or(value, _bad) when is_atom(value) and value not in [nil, true, false],
    do: Atom.to_string(value)

  defp to_string_or(value, bad) when is_list(value) do
    List.to_string(value)
  rescue
    _ in [ArgumentError, UnicodeConversionError] -> bad.()
  end

  defp to_string_or(_value, bad), do: bad.()

  defp bad!(key, value, expected) do
    raise ArgumentError,
          "invalid value for the #{inspect(key)} option: expected #{expected}, got: #{inspect(value)}"
  end
end
