%% The agent of an Ampule sandbox: the one process through which the host runs code in a
%% node that is not distributed (docs/protocol.md, "The agent channel (sandboxes)").
%%
%% The sandbox's init starts it with `erl ... -run ampule_agent start`. It connects to the
%% Unix socket the port bind-mounted at /run/ampule/agent.sock, says hello, and then runs
%% each call of the host in a process of its own:
%%
%%   host -> agent   <<1, Id:64, Max:64, Term>>   call: {M, F, A} or a 0-arity fun
%%                   <<2, Timeout:32, Term>>      cast: no answer; killed after Timeout ms
%%                   <<3, Id:64>>                 kill call Id (answered, see below)
%%   agent -> host   <<0, Version:16>>            hello
%%                   <<4, Id:64, Outcome, Term>>  result: 0 returned, 1 raised, 2 threw,
%%                                                3 exited ({Reason, Stacktrace})
%%                   <<5, Id:64, Size:64>>        the result took Size bytes, over Max
%%
%% Every call gets exactly one answer, a 4 or a 5, sent by this process alone (the
%% workers hand their frames to it), so a kill that races a result cannot answer twice: a
%% killed call is answered as exited with reason `killed`, unless its result was already
%% on its way. When the connection closes, the node halts, and every call with it.
%%
%% The host trusts nothing this agent sends (code running beside it can write to its
%% socket); the agent trusts the host. Kept small and free of Elixir: it boots in every
%% sandbox, before any of the caller's code.
-module(ampule_agent).

-export([start/0, start/1]).

-define(SOCKET, "/run/ampule/agent.sock").
-define(VERSION, 1).

%% `-run ampule_agent start`, and `-run ampule_agent start PATH` (tests run the agent in
%% a plain local node against their own listener).
start() -> start([?SOCKET]).

start([Path]) ->
    _ = spawn(fun() -> init(Path) end),
    ok.

init(Path) ->
    Opts = [local, binary, {packet, 4}, {active, true}],
    case gen_tcp:connect({local, Path}, 0, Opts) of
        {ok, Socket} ->
            _ = erlang:monitor(port, Socket),
            ok = gen_tcp:send(Socket, <<0, ?VERSION:16>>),
            loop(Socket, #{});
        {error, Reason} ->
            io:format(standard_error, "ampule_agent: cannot connect to ~ts: ~p~n", [Path, Reason]),
            erlang:halt(3)
    end.

%% Calls: #{Id => {Pid, MonitorRef, Max}} and #{MonitorRef => Id}.
loop(Socket, Calls) ->
    receive
        {tcp, Socket, <<1, Id:64, Max:64, Term/binary>>} ->
            Agent = self(),
            {Pid, Ref} = spawn_monitor(fun() -> call(Agent, Id, Max, Term) end),
            loop(Socket, Calls#{Id => {Pid, Ref, Max}, Ref => Id});
        {tcp, Socket, <<2, Timeout:32, Term/binary>>} ->
            Pid = spawn(fun() -> catch run(Term) end),
            _ = Timeout > 0 andalso erlang:send_after(Timeout, self(), {ampule_kill, Pid}),
            loop(Socket, Calls);
        {tcp, Socket, <<3, Id:64>>} ->
            loop(Socket, kill(Socket, Id, Calls));
        {ampule_result, Id, Frame} ->
            case maps:take(Id, Calls) of
                {{_Pid, Ref, _Max}, Rest} ->
                    erlang:demonitor(Ref, [flush]),
                    send(Socket, Frame),
                    loop(Socket, maps:remove(Ref, Rest));
                error ->
                    loop(Socket, Calls)
            end;
        {'DOWN', Ref, process, _Pid, Reason} when is_map_key(Ref, Calls) ->
            %% The worker died without a result: something in the node killed it.
            {Id, Rest} = maps:take(Ref, Calls),
            {{_, _, Max}, Rest1} = maps:take(Id, Rest),
            send(Socket, encode(Id, Max, 3, {Reason, []})),
            loop(Socket, Rest1);
        {ampule_kill, Pid} ->
            exit(Pid, kill),
            loop(Socket, Calls);
        {tcp, Socket, Other} ->
            closed({unknown_frame, Other});
        {tcp_closed, Socket} ->
            closed(tcp_closed);
        {tcp_error, Socket, Reason} ->
            closed({tcp_error, Reason});
        {'DOWN', _Ref, port, Socket, Reason} ->
            closed({socket_down, Reason});
        _Other ->
            loop(Socket, Calls)
    end.

%% Kills call Id and answers it: with its result if it had one, else as killed. The
%% kill is over (the process is gone) before the next frame is read.
kill(Socket, Id, Calls) ->
    case maps:take(Id, Calls) of
        {{Pid, Ref, Max}, Rest} ->
            exit(Pid, kill),
            receive {'DOWN', Ref, process, _, _} -> ok end,
            Frame =
                receive
                    {ampule_result, Id, Result} -> Result
                after 0 -> encode(Id, Max, 3, {killed, []})
                end,
            send(Socket, Frame),
            maps:remove(Ref, Rest);
        error ->
            Calls
    end.

send(Socket, Frame) ->
    case gen_tcp:send(Socket, Frame) of
        ok -> ok;
        {error, Reason} -> closed({send, Reason})
    end,
    %% This process allocates little, so it would keep the last large result (a binary
    %% off its heap) until some later collection: let it go now.
    _ = iolist_size(Frame) > 65536 andalso erlang:garbage_collect(),
    ok.

%% The channel is gone: so is the node (the host destroys the sandbox anyway). The
%% reason goes to the node's output (its boot.log), for whoever reads it.
closed(Why) ->
    io:format(standard_error, "ampule_agent: channel closed (~0tP); halting~n", [Why, 10]),
    erlang:halt(0, [{flush, false}]).

call(Agent, Id, Max, Term) ->
    {Outcome, Value} = run(Term),
    Agent ! {ampule_result, Id, encode(Id, Max, Outcome, Value)}.

run(Term) ->
    try
        case binary_to_term(Term) of
            {M, F, A} when is_atom(M), is_atom(F), is_list(A) -> {0, apply(M, F, A)};
            Fun when is_function(Fun, 0) -> {0, Fun()}
        end
    catch
        error:Reason:Stack -> {1, {Reason, clean(Stack)}};
        throw:Value:Stack -> {2, {Value, clean(Stack)}};
        exit:Reason:Stack -> {3, {Reason, clean(Stack)}}
    end.

%% A stack frame may carry the arguments of the call that failed, or the fun that was
%% called (`{Fun, Args, Location}`); they may hold pids or funs, which the host refuses.
%% A module, a name and a count tell as much for a stack trace.
clean(Stack) ->
    [
        case Frame of
            {M, F, Args, Location} when is_list(Args) ->
                {M, F, length(Args), Location};
            {Fun, Args, Location} when is_function(Fun) ->
                %% The name is [] when the fun's module is not loaded.
                {module, M} = erlang:fun_info(Fun, module),
                F = case erlang:fun_info(Fun, name) of
                    {name, Name} when is_atom(Name) -> Name;
                    _ -> '-fun-'
                end,
                {M, F, if is_list(Args) -> length(Args); true -> Args end, Location};
            _ ->
                Frame
        end
     || Frame <- Stack
    ].

%% The size is measured before encoding, so a result over Max costs no second copy.
encode(Id, Max, Outcome, Value) ->
    case erlang:external_size(Value) of
        Size when Size > Max -> <<5, Id:64, Size:64>>;
        _ -> [<<4, Id:64, Outcome>> | term_to_binary(Value)]
    end.
