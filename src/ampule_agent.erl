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
%%                   <<4, Id:64>>                 send the result announced for Id
%%                   <<5, Id:64, Max:64, MaxOutput:64, Term>>
%%                                                call whose output goes to the host
%%                   <<6, Id:64, Bytes:32>>       the host took Bytes of Id's output
%%   agent -> host   <<0, Version:16>>            hello
%%                   <<4, Id:64, Outcome, Term>>  result: 0 returned (the value),
%%                                                1 raised ({Module, Message, Stacktrace}),
%%                                                2 threw, 3 exited ({Reason, Stacktrace})
%%                   <<5, Id:64, Size:64>>        the result took Size bytes, over Max
%%                   <<6, Id:64, Size:64>>        a result of Size bytes (over 64 KiB) is
%%                                                ready: sent once the host says so (4)
%%                   <<7, Id:64, Bytes/binary>>   output of call Id (at most 16 KiB)
%%                   <<8, Id:64>>                 call Id printed MaxOutput bytes and more:
%%                                                killed (its answer)
%%
%% Output (docs/protocol.md, "Output"): a call made with 5 runs with a group leader of
%% the agent's making (an io server, `gl/1`), which every process it starts inherits; the
%% node's `standard_error` is replaced at start by a router that hands each request to its
%% sender's group leader when that is such an io server, and to the node's own
%% standard_error (its log) otherwise. The io server sends what it is asked to print, in
%% order, as it is asked, at most Window bytes ahead of the host's acknowledgements (6):
%% a process printing faster than the host takes its bytes waits for its io reply, as
%% at a terminal. Past MaxOutput bytes the call is killed and answered with 8. When a
%% call is answered, its io server stops sending first (so no output frame ever follows
%% an answer), then hands the processes that still have it as group leader to a drain
%% that answers their requests and drops the bytes, and exits.
%%
%% A raised exception is described here, where its code runs: its module's name and its
%% message as binaries (the message bounded), so that the host needs neither the module
%% nor its atoms, and never runs a sandbox's `message/1` with its own rights.
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
-define(VERSION, 3).
%% Results up to this size are sent at once; larger ones wait for the host's go.
-define(EAGER, 65536).
%% The most bytes of an exception's message that are sent.
-define(MESSAGE_MAX, 16384).
%% Output: the most bytes in one frame, and the most sent before the host acknowledges.
-define(CHUNK, 16384).
-define(WINDOW, 65536).
%% How long an io server has to stop sending when its call is answered before it is killed.
-define(GL_END, 1000).
%% Retired io servers are swept in batches (see `drain/2`).
-define(SWEEP_BATCH, 64).
-define(SWEEP_AFTER, 1000).

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
            Drain = spawn(fun() -> drain() end),
            Router = stderr_router(Drain),
            Drain ! {router, Router},
            put(ampule_output, {Drain, Router}),
            loop(Socket, #{});
        {error, Reason} ->
            io:format(standard_error, "ampule_agent: cannot connect to ~ts: ~p~n", [Path, Reason]),
            erlang:halt(3)
    end.

%% Calls: #{Id => {Pid, MonitorRef, Max}} while running, #{Id => {held, Frame}} while a
%% large result awaits the host's go, and #{MonitorRef => Id}; #{{gl, Id} => Gl} for a
%% call whose output goes to the host, until it is answered.
loop(Socket, Calls) ->
    receive
        {tcp, Socket, <<1, Id:64, Max:64, Term/binary>>} ->
            Agent = self(),
            {Pid, Ref} = spawn_monitor(fun() -> call(Agent, Id, Max, Term) end),
            loop(Socket, Calls#{Id => {Pid, Ref, Max}, Ref => Id});
        {tcp, Socket, <<5, Id:64, Max:64, MaxOutput:64, Term/binary>>} ->
            Agent = self(),
            {Drain, Router} = get(ampule_output),
            Gl = spawn(fun() -> gl(#{socket => Socket, id => Id, agent => Agent,
                                     max => MaxOutput, total => 0, unacked => 0,
                                     queue => queue:new(), drain => Drain,
                                     router => Router}) end),
            %% The router knows the io server before the call can print to standard_error.
            Router ! {add, Gl},
            {Pid, Ref} = spawn_monitor(fun() ->
                group_leader(Gl, self()),
                call(Agent, Id, Max, Term)
            end),
            loop(Socket, Calls#{Id => {Pid, Ref, Max}, Ref => Id, {gl, Id} => Gl});
        {tcp, Socket, <<6, Id:64, Bytes:32>>} ->
            case Calls of
                #{{gl, Id} := Gl} -> Gl ! {ampule_ack, Bytes};
                _ -> ok
            end,
            loop(Socket, Calls);
        {ampule_output_limit, Id} ->
            loop(Socket, output_limit(Socket, Id, Calls));
        {tcp, Socket, <<2, Timeout:32, Term/binary>>} ->
            Pid = spawn(fun() -> catch run(Term) end),
            _ = Timeout > 0 andalso erlang:send_after(Timeout, self(), {ampule_kill, Pid}),
            loop(Socket, Calls);
        {tcp, Socket, <<3, Id:64>>} ->
            loop(Socket, kill(Socket, Id, Calls));
        {tcp, Socket, <<4, Id:64>>} ->
            case maps:take(Id, Calls) of
                {{held, Frame}, Rest} ->
                    send(Socket, Frame),
                    loop(Socket, Rest);
                _ ->
                    loop(Socket, Calls)
            end;
        {ampule_result, Id, Frame} ->
            case maps:take(Id, Calls) of
                {{_Pid, Ref, _Max}, Rest} ->
                    erlang:demonitor(Ref, [flush]),
                    Rest1 = end_output(Id, maps:remove(Ref, Rest)),
                    case iolist_size(Frame) of
                        Size when Size > ?EAGER ->
                            send(Socket, <<6, Id:64, Size:64>>),
                            loop(Socket, Rest1#{Id => {held, Frame}});
                        _ ->
                            send(Socket, Frame),
                            loop(Socket, Rest1)
                    end;
                error ->
                    loop(Socket, Calls)
            end;
        {'DOWN', Ref, process, _Pid, Reason} when is_map_key(Ref, Calls) ->
            %% The worker died without a result: something in the node killed it.
            {Id, Rest} = maps:take(Ref, Calls),
            {{_, _, Max}, Rest1} = maps:take(Id, Rest),
            Rest2 = end_output(Id, Rest1),
            send(Socket, encode(Id, Max, 3, {Reason, []})),
            loop(Socket, Rest2);
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
        {{held, _Frame}, Rest} ->
            %% The host no longer wants it.
            send(Socket, encode(Id, 0, 3, {killed, []})),
            Rest;
        {{Pid, Ref, Max}, Rest} ->
            exit(Pid, kill),
            receive {'DOWN', Ref, process, _, _} -> ok end,
            Frame =
                receive
                    {ampule_result, Id, Result} -> Result
                after 0 -> encode(Id, Max, 3, {killed, []})
                end,
            Rest1 = end_output(Id, maps:remove(Ref, Rest)),
            send(Socket, Frame),
            Rest1;
        error ->
            Calls
    end.

%% Call Id printed past its MaxOutput: killed, and answered so (its io server sent the
%% bytes up to the limit). A result that beat the kill is dropped: the call failed.
output_limit(Socket, Id, Calls) ->
    case maps:take(Id, Calls) of
        {{Pid, Ref, _Max}, Rest} when is_map_key({gl, Id}, Rest) ->
            exit(Pid, kill),
            receive {'DOWN', Ref, process, _, _} -> ok end,
            receive {ampule_result, Id, _} -> ok after 0 -> ok end,
            Rest1 = end_output(Id, maps:remove(Ref, Rest)),
            send(Socket, <<8, Id:64>>),
            Rest1;
        _ ->
            Calls
    end.

%% Before call Id is answered, its io server (if it has one) stops sending, so that no
%% output frame follows the answer: it answers what it holds and says so, then retires on
%% its own (`retire/1`, off the answer's path). One that does not say so within ?GL_END
%% (stuck printing a `put_chars` whose function loops) is killed, and retired from here.
end_output(Id, Calls) ->
    case maps:take({gl, Id}, Calls) of
        {Gl, Rest} ->
            Ref = erlang:monitor(process, Gl),
            Gl ! {ampule_end, self(), Ref},
            receive
                {Ref, ended} ->
                    erlang:demonitor(Ref, [flush]);
                {'DOWN', Ref, process, _, _} ->
                    retire(Gl, get(ampule_output))
            after ?GL_END ->
                exit(Gl, kill),
                receive {'DOWN', Ref, process, _, _} -> ok end,
                retire(Gl, get(ampule_output))
            end,
            Rest;
        error ->
            Calls
    end.

%% An io server's call is answered: the router sends the standard error of its processes
%% to the drain from now on (a request it forwarded to the io server before its
%% acknowledgement is in the io server's mailbox before that acknowledgement), and the
%% drain takes it among the retirees it sweeps (`drain/2`). Done by the io server itself,
%% or for one that is gone, by the agent.
retire(Gl, {Drain, Router}) ->
    RouterRef = erlang:monitor(process, Router),
    Router ! {remove, Gl, self(), RouterRef},
    removed(RouterRef),
    Drain ! {retire, Gl},
    ok.

%% Waits for the router, answering (and dropping) what comes meanwhile.
removed(RouterRef) ->
    receive
        {RouterRef, removed} ->
            erlang:demonitor(RouterRef, [flush]);
        {'DOWN', RouterRef, process, _, _} ->
            ok;
        {io_request, From, ReplyAs, Request} ->
            {_, Reply} = io_request(Request),
            From ! {io_reply, ReplyAs, Reply},
            removed(RouterRef)
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
    %% Code in the sandbox may have taken standard_error away: the halt comes regardless.
    catch io:format(standard_error, "ampule_agent: channel closed (~0tP); halting~n", [Why, 10]),
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
        error:Reason:Stack -> {1, describe(Reason, Stack)};
        throw:Value:Stack -> {2, {Value, clean(Stack)}};
        exit:Reason:Stack -> {3, {Reason, clean(Stack)}}
    end.

%% A stack frame may carry the arguments of the call that failed, or the fun that was
%% called (`{Fun, Args, Location}`); they may hold pids or funs, which the host refuses.
%% A module, a name and a count tell as much for a stack trace. Names go as binaries (the
%% host has no atoms for the modules a sandbox made), and a location keeps only `file`
%% and `line` (`error_info` names a function for the host to call).
clean(Stack) ->
    [
        {name(M), name(F), Arity, location(Location)}
     || Frame <- Stack, {M, F, Arity, Location} <- [frame(Frame)]
    ].

frame({M, F, Args, Location}) when is_list(Args) ->
    {M, F, length(Args), Location};
frame({M, F, Arity, Location}) when is_integer(Arity) ->
    {M, F, Arity, Location};
frame({Fun, Args, Location}) when is_function(Fun) ->
    %% The name is [] when the fun's module is not loaded.
    {module, M} = erlang:fun_info(Fun, module),
    F = case erlang:fun_info(Fun, name) of
        {name, Name} when is_atom(Name) -> Name;
        _ -> '-fun-'
    end,
    {M, F, if is_list(Args) -> length(Args); true -> Args end, Location};
frame(_Other) ->
    skip.

name(Atom) when is_atom(Atom) -> atom_to_binary(Atom);
name(_Other) -> <<"?">>.

location(Location) when is_list(Location) ->
    [Entry || {Key, _} = Entry <- Location, Key =:= file orelse Key =:= line];
location(_Other) ->
    [].

%% {ModuleName, Message, Stacktrace} of an error: Elixir's account of it where Elixir is on
%% the code path (as `Exception.normalize/3` and `Exception.message/1` give it), else
%% Erlang's `erlang:error` view. Runs in the call's own process, so a message/1 that loops
%% is stopped by the call's timeout like any other code of the call.
describe(Reason, Stack) ->
    {Module, Message} =
        try
            {module, _} = code:ensure_loaded('Elixir.Exception'),
            E = 'Elixir.Exception':normalize(error, Reason, Stack),
            {strip(maps:get('__struct__', E)), 'Elixir.Exception':message(E)}
        catch
            _:_ -> {<<"ErlangError">>, io_lib:format("~0tP", [Reason, 30])}
        end,
    {Module, bound(Message), clean(Stack)}.

%% `Elixir.ArgumentError` -> <<"ArgumentError">>, as Elixir writes a module's name.
strip(Module) ->
    case atom_to_binary(Module) of
        <<"Elixir.", Name/binary>> -> Name;
        Name -> Name
    end.

bound(Message) ->
    Bin =
        try unicode:characters_to_binary(Message) of
            B when is_binary(B) -> B;
            _ -> <<"(a message that is not text)">>
        catch
            _:_ -> <<"(a message that is not text)">>
        end,
    case byte_size(Bin) > ?MESSAGE_MAX of
        true -> <<(binary:part(Bin, 0, ?MESSAGE_MAX))/binary, "...">>;
        false -> Bin
    end.

%% The size is measured before encoding, so a result over Max costs no second copy.
encode(Id, Max, Outcome, Value) ->
    case erlang:external_size(Value) of
        Size when Size > Max -> <<5, Id:64, Size:64>>;
        _ -> [<<4, Id:64, Outcome>> | term_to_binary(Value)]
    end.

%% The io server of a call whose output goes to the host (see the module's comment): the
%% io protocol's output requests, in order; input is at its end (`eof`).
gl(#{queue := Queue} = S) ->
    receive
        {io_request, From, ReplyAs, Request} ->
            {Bytes, Reply} = io_request(Request),
            gl(pump(S#{queue := queue:in({From, ReplyAs, Reply, Bytes}, Queue)}));
        {ampule_ack, N} ->
            gl(pump(S#{unacked := max(maps:get(unacked, S) - N, 0)}));
        {ampule_end, Agent, Ref} ->
            drain_queue(Queue),
            Agent ! {Ref, ended},
            retire(self(), {maps:get(drain, S), maps:get(router, S)}),
            retiree()
    end.

%% A retired io server answers and drops what its call's processes still print, until the
%% drain has taken them over.
retiree() ->
    receive
        {io_request, From, ReplyAs, Request} ->
            {_, Reply} = io_request(Request),
            From ! {io_reply, ReplyAs, Reply},
            retiree();
        ampule_retired ->
            drain_mailbox()
    end.

%% Sends what waits, while the window allows; a request is answered once all its bytes
%% are sent. Past the limit, the agent is told and the rest is dropped.
pump(#{queue := Queue, total := Total, max := Max, unacked := Unacked} = S) ->
    case queue:out(Queue) of
        {empty, _} ->
            S;
        {{value, {From, ReplyAs, Reply, Bytes}}, Rest} when Bytes =:= <<>>; Max < 0 ->
            From ! {io_reply, ReplyAs, Reply},
            pump(S#{queue := Rest});
        {{value, _}, _} when Total >= Max ->
            maps:get(agent, S) ! {ampule_output_limit, maps:get(id, S)},
            drain_queue(Queue),
            S#{queue := queue:new(), max := -1};
        {{value, _}, _} when Unacked >= ?WINDOW ->
            S;
        {{value, {From, ReplyAs, Reply, Bytes}}, Rest} ->
            Size = lists:min([byte_size(Bytes), ?CHUNK, ?WINDOW - Unacked, Max - Total]),
            <<Chunk:Size/binary, Left/binary>> = Bytes,
            Id = maps:get(id, S),
            case gen_tcp:send(maps:get(socket, S), [<<7, Id:64>> | Chunk]) of
                ok -> ok;
                {error, _} -> exit(normal)
            end,
            pump(S#{queue := queue:in_r({From, ReplyAs, Reply, Left}, Rest),
                    total := Total + Size, unacked := Unacked + Size})
    end.

%% Answers every request waiting, dropping its bytes (past the limit, max is -1 and every
%% later request is answered so too).
drain_queue(Queue) ->
    _ = [From ! {io_reply, ReplyAs, Reply} || {From, ReplyAs, Reply, _} <- queue:to_list(Queue)],
    ok.

drain_mailbox() ->
    receive
        {io_request, From, ReplyAs, Request} ->
            {_, Reply} = io_request(Request),
            From ! {io_reply, ReplyAs, Reply},
            drain_mailbox()
    after 0 ->
        ok
    end.

%% The drain: the group leader of a call's processes once it is answered. Their output
%% goes nowhere; they are answered as if it went. It takes them over from the retired io
%% servers in sweeps, one walk of the node's processes for up to ?SWEEP_BATCH io servers
%% or what retired within ?SWEEP_AFTER ms: a walk costs about 10 us a process (each
%% `process_info/2` a signal), too much for every call's answer to wait for. Until its
%% sweep, a retired io server answers and drops by itself.
drain() ->
    receive
        {router, Router} ->
            put(router, Router),
            drain(#{}, false)
    end.

drain(Retirees, Timer) ->
    receive
        {io_request, From, ReplyAs, Request} ->
            {_, Reply} = io_request(Request),
            From ! {io_reply, ReplyAs, Reply},
            drain(Retirees, Timer);
        {retire, Gl} when map_size(Retirees) + 1 >= ?SWEEP_BATCH ->
            sweep(Retirees#{Gl => true}),
            drain(#{}, Timer);
        {retire, Gl} when Timer ->
            drain(Retirees#{Gl => true}, Timer);
        {retire, Gl} ->
            _ = erlang:send_after(?SWEEP_AFTER, self(), ampule_sweep),
            drain(Retirees#{Gl => true}, true);
        ampule_sweep ->
            sweep(Retirees),
            drain(#{}, false);
        _ ->
            drain(Retirees, Timer)
    end.

%% A process may exit between the walk and its group_leader/2 (badarg then).
sweep(Retirees) ->
    _ = [catch group_leader(self(), P) || P <- processes(),
                                         {group_leader, Gl} <- [process_info(P, group_leader)],
                                         is_map_key(Gl, Retirees)],
    _ = [Gl ! ampule_retired || Gl <- maps:keys(Retirees)],
    get(router) ! {forget, Retirees},
    ok.

%% {Bytes to print, the reply}. Bytes go as they are: a binary unchanged whatever the
%% encoding it claims (so bytes that are not UTF-8 reach the host as they were written),
%% a list of characters as UTF-8. The host never decodes them.
io_request({put_chars, Encoding, Chars}) -> put_chars(Encoding, Chars);
io_request({put_chars, Encoding, M, F, A}) ->
    try apply(M, F, A) of
        Chars -> put_chars(Encoding, Chars)
    catch
        _:_ -> {<<>>, {error, put_chars}}
    end;
io_request({put_chars, Chars}) -> put_chars(latin1, Chars);
io_request({put_chars, M, F, A}) -> io_request({put_chars, latin1, M, F, A});
io_request({requests, Requests}) when is_list(Requests) ->
    lists:foldl(
        fun
            (Request, {Acc, ok}) ->
                {Bytes, Reply} = io_request(Request),
                {<<Acc/binary, Bytes/binary>>, Reply};
            (_Request, Error) ->
                Error
        end,
        {<<>>, ok},
        Requests
    );
io_request({get_chars, _, _}) -> {<<>>, eof};
io_request({get_chars, _, _, _}) -> {<<>>, eof};
io_request({get_line, _}) -> {<<>>, eof};
io_request({get_line, _, _}) -> {<<>>, eof};
io_request({get_until, _, _, _}) -> {<<>>, eof};
io_request({get_until, _, _, _, _, _}) -> {<<>>, eof};
io_request({get_password, _}) -> {<<>>, eof};
io_request(getopts) -> {<<>>, [{binary, true}, {encoding, unicode}]};
io_request({setopts, _}) -> {<<>>, ok};
io_request({get_geometry, _}) -> {<<>>, {error, enotsup}};
io_request(_Other) -> {<<>>, {error, request}}.

put_chars(_Encoding, Chars) when is_binary(Chars) -> {Chars, ok};
put_chars(unicode, Chars) ->
    case unicode:characters_to_binary(Chars) of
        Bin when is_binary(Bin) -> {Bin, ok};
        _ -> {<<>>, {error, put_chars}}
    end;
put_chars(_Latin1, Chars) ->
    try iolist_to_binary(Chars) of
        Bin -> {Bin, ok}
    catch
        _:_ -> {<<>>, {error, put_chars}}
    end.

%% The node's standard_error becomes a router (see the module's comment): the original
%% process stays, unregistered, for everything that is not a captured call's.
stderr_router(Drain) ->
    Original = whereis(standard_error),
    Router = spawn(fun() -> route_stderr(Original, Drain, #{Drain => Drain}) end),
    _ = is_pid(Original) andalso unregister(standard_error),
    true = register(standard_error, Router),
    Router.

%% Gls: the io servers of calls (each to itself), retired ones to the drain (their
%% processes' until the drain's sweep), and the drain.
route_stderr(Original, Drain, Gls) ->
    receive
        {add, Gl} ->
            route_stderr(Original, Drain, Gls#{Gl => Gl});
        {remove, Gl, From, Ref} ->
            From ! {Ref, removed},
            route_stderr(Original, Drain, Gls#{Gl => Drain});
        {forget, Retirees} ->
            route_stderr(Original, Drain, maps:without(maps:keys(Retirees), Gls));
        {io_request, From, _ReplyAs, _Request} = Message ->
            Target =
                case is_pid(From) andalso node(From) =:= node() andalso
                         process_info(From, group_leader) of
                    {group_leader, Gl} when is_map_key(Gl, Gls) -> map_get(Gl, Gls);
                    _ -> Original
                end,
            case is_pid(Target) of
                true -> Target ! Message;
                false -> From ! {io_reply, element(3, Message), {error, terminated}}
            end,
            route_stderr(Original, Drain, Gls);
        _ ->
            route_stderr(Original, Drain, Gls)
    end.
