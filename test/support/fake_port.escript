#!/usr/bin/env escript
%% A stand-in for ampule_port that speaks the framing and envelope of docs/protocol.md
%% (fds 3/4, {packet,4}, tags, events) but runs no container. Only Ampule.Port's unit
%% tests use it: tag routing, hello and version refusal, fatal events, port death,
%% ownership bookkeeping. Tests that claim to test containers use the real port.
%%
%% Arguments: --protocol N (hello's version, default 3), --fatal (fatal event, exit 78),
%% --silent (never says hello).
%%
%% Requests besides the protocol's: {echo, Term, DelayMs}, {log, Level, Msg, Container},
%% {exit_event, Name, Status}, destroyed (names destroyed so far), hang (no reply).
-mode(compile).

main(Args) ->
    Port = open_port({fd, 3, 4}, [{packet, 4}, binary, eof]),
    case Args of
        ["--fatal" | _] ->
            send_term(Port, {event, fatal, #{reason => not_root,
                                            message => <<"run the port as root">>}}),
            timer:sleep(50),
            halt(78);
        ["--silent" | _] ->
            loop(Port, []);
        ["--protocol", N | _] ->
            hello(Port, list_to_integer(N)),
            loop(Port, []);
        _ ->
            hello(Port, 3),
            loop(Port, [])
    end.

hello(Port, Version) ->
    send_term(Port, {event, hello, #{protocol => Version, version => <<"0.0.0-fake">>,
                                     lxc_version => <<"none">>, bridge => <<"ampule0">>,
                                     host_address => <<"127.0.0.1">>,
                                     subnet => <<"127.0.0.0/8">>, instance => <<"fake">>}}).

loop(Port, Destroyed) ->
    receive
        {Port, {data, Bin}} ->
            {Tag, Request} = binary_to_term(Bin),
            loop(Port, handle(Port, Tag, Request, Destroyed));
        {Port, eof} ->
            halt(0);
        {reply, Term} ->
            send_term(Port, Term),
            loop(Port, Destroyed)
    end.

handle(_Port, Tag, {echo, Term, Delay}, Destroyed) ->
    Self = self(),
    spawn(fun() -> timer:sleep(Delay), Self ! {reply, {Tag, {ok, Term}}} end),
    Destroyed;
handle(Port, Tag, {log, Level, Msg, Container}, Destroyed) ->
    send_term(Port, {event, log, #{level => Level, message => Msg, container => Container}}),
    send_term(Port, {Tag, ok}),
    Destroyed;
handle(Port, Tag, {exit_event, Name, Status}, Destroyed) ->
    send_term(Port, {event, exit, #{name => Name, status => Status}}),
    send_term(Port, {Tag, ok}),
    Destroyed;
handle(_Port, Tag, {spawn, Opts}, Destroyed) ->
    N = integer_to_binary(erlang:unique_integer([positive])),
    Name = maps:get(name, Opts, <<"fake-", N/binary>>),
    Delay = maps:get(boot_timeout, Opts, 0) div 1000,
    Reply = {Tag, {ok, #{name => Name, nodename => <<Name/binary, "@127.0.0.1">>,
                         address => <<"127.0.0.1">>, cookie => <<"FAKECOOKIE">>,
                         init_pid => 1, boot_ms => Delay}}},
    Self = self(),
    spawn(fun() -> timer:sleep(Delay), Self ! {reply, Reply} end),
    Destroyed;
handle(Port, Tag, {destroy, Name}, Destroyed) ->
    send_term(Port, {Tag, ok}),
    [Name | Destroyed];
handle(Port, Tag, destroyed, Destroyed) ->
    send_term(Port, {Tag, {ok, lists:reverse(Destroyed)}}),
    Destroyed;
handle(Port, Tag, list, Destroyed) ->
    send_term(Port, {Tag, {ok, []}}),
    Destroyed;
handle(_Port, _Tag, hang, Destroyed) ->
    Destroyed;
handle(Port, Tag, Request, Destroyed) ->
    send_term(Port, {Tag, {error, {unknown_request, Request}}}),
    Destroyed.

send_term(Port, Term) ->
    try port_command(Port, term_to_binary(Term))
    catch error:_ -> halt(0)
    end.
