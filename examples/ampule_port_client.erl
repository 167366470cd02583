%% An Erlang program that drives ampule_port directly, by docs/protocol.md alone: no
%% Elixir, no Ampule library. It opens the port, waits for the hello, spawns a container,
%% calls into the container's node over ordinary distribution, and destroys it.
%%
%%   erlc examples/ampule_port_client.erl
%%   erl -noshell -run ampule_port_client main priv/ampule_port -s init stop
%%
%% It prints one line per step and exits with status 0 when every step worked.
-module(ampule_port_client).
-export([main/1, run/1]).

main([PortPath]) ->
    case run(PortPath) of
        ok ->
            halt(0);
        {error, Reason} ->
            io:format("error: ~p~n", [Reason]),
            halt(1)
    end.

run(PortPath) ->
    %% binary_to_term(_, [safe]) refuses atoms this VM has not seen: make the protocol's
    %% atoms exist before the first frame.
    _ = atoms(),
    Port = open_port({spawn_executable, PortPath},
                     [{packet, 4}, binary, nouse_stdio, exit_status]),
    try
        {ok, Hello} = hello(Port),
        io:format("hello: protocol ~p, port ~s, host address ~s~n",
                  [maps:get(protocol, Hello), maps:get(version, Hello),
                   maps:get(host_address, Hello)]),
        ok = distribution(maps:get(host_address, Hello)),
        {ok, #{name := Name, nodename := NodeBin, cookie := CookieBin}} =
            request(Port, {spawn, #{boot_timeout => 15000}}, 30000),
        io:format("spawned: ~s (~s)~n", [Name, NodeBin]),
        %% Node names and cookies arrive as binaries; distribution wants atoms.
        Node = binary_to_atom(NodeBin, utf8),
        true = erlang:set_cookie(Node, binary_to_atom(CookieBin, utf8)),
        Remote = erpc:call(Node, erlang, node, [], 5000),
        io:format("rpc: erlang:node() in the container is ~p~n", [Remote]),
        Remote = Node,
        {ok, [Name]} = request(Port, list, 5000),
        ok = request(Port, {destroy, Name}, 15000),
        {error, not_found} = request(Port, {info, Name}, 5000),
        io:format("destroyed: ~s~n", [Name]),
        ok
    catch
        Class:Reason:Stack ->
            {error, {Class, Reason, Stack}}
    after
        %% End of file on the port's fd 3: it destroys whatever it still has.
        catch port_close(Port)
    end.

%% The first frame is the hello event (or fatal); refuse a protocol we do not know.
hello(Port) ->
    receive
        {Port, {data, Bin}} ->
            case binary_to_term(Bin, [safe]) of
                {event, hello, #{protocol := 3} = Hello} -> {ok, Hello};
                {event, hello, #{protocol := V}} -> {error, {unsupported_protocol, V}};
                {event, fatal, #{reason := R, message := M}} -> {error, {fatal, R, M}}
            end;
        {Port, {exit_status, Status}} ->
            {error, {port_exited, Status}}
    after 60000 ->
        {error, hello_timeout}
    end.

%% One request and its reply, matched by tag; events that come meanwhile are printed.
request(Port, Request, Timeout) ->
    Tag = erlang:unique_integer([positive]),
    true = port_command(Port, term_to_binary({Tag, Request}, [{minor_version, 2}])),
    await(Port, Tag, Timeout).

await(Port, Tag, Timeout) ->
    receive
        {Port, {data, Bin}} ->
            case binary_to_term(Bin, [safe]) of
                {Tag, ok} -> ok;
                {Tag, {ok, Value}} -> {ok, Value};
                {Tag, {error, Reason}} -> {error, Reason};
                {event, log, #{level := Level, message := Message}} ->
                    io:format("  port log (~p): ~s~n", [Level, Message]),
                    await(Port, Tag, Timeout);
                {event, _, _} ->
                    await(Port, Tag, Timeout)
            end;
        {Port, {exit_status, Status}} ->
            {error, {port_exited, Status}}
    after Timeout ->
        {error, timeout}
    end.

%% The atoms of docs/protocol.md that this client may receive (existing once this module is
%% loaded, since they are literals here).
atoms() ->
    [event, hello, fatal, log, exit, bad_frame, ok, error, pong, protocol, version,
     lxc_version, bridge, host_address, subnet, instance, agents_dir, node_uid, reason, message, level, container,
     name, status, nodename, address, cookie, init_pid, boot_ms, kind, state, app, system,
     booting, running, stopped, undefined, oom, bad_option, bad_option_value,
     bad_config_key, name_in_use, no_address, lxc, boot_failed, boot_timeout, create, start,
     epmd, handshake, not_found, unknown_request, bad_request, bad_term, bad_envelope,
     frame_too_large, warn, info, debug].

%% Containers are reached by IP address: the local node needs long names.
distribution(HostAddress) ->
    case node() of
        nonode@nohost ->
            _ = os:cmd("epmd -daemon"),
            Name = list_to_atom("ampule_client_" ++ integer_to_list(erlang:unique_integer([positive]))
                                ++ "@" ++ binary_to_list(HostAddress)),
            {ok, _} = net_kernel:start([Name, longnames]),
            ok;
        _ ->
            ok
    end.
