%% The last step of a distribution container's boot: the node tells the port it is up by
%% writing its own name and a newline on the FIFO the port mounted at /run/ampule/ready
%% (docs/protocol.md, `announce`). The container's init runs it with
%% `erl ... -s ampule_announce`, after the boot script, so distribution is up by then.
%%
%% The port trusts nothing here: it reads at most a line and counts only the exact name
%% it expects; a node whose distribution did not start writes `nonode@nohost` and is
%% refused. The host's own connection, with the container's cookie, is the real check.
%% Kept small and free of Elixir, like ampule_agent: it runs in every distribution
%% container, before any of the caller's code.
-module(ampule_announce).

-export([start/0]).

-define(FIFO, "/run/ampule/ready").

start() ->
    case init:get_argument(dist_listen) of
        %% A node that does not listen cannot be reached: it says nothing, and the port
        %% waits for it as for any node that never comes up (its own handshake used to
        %% find that out).
        {ok, [["false"] | _]} -> ok;
        _ -> announce()
    end.

announce() ->
    case file:write_file(?FIFO, [atom_to_list(node()), $\n], [raw]) of
        ok ->
            ok;
        {error, Reason} ->
            io:format(standard_error, "ampule_announce: cannot write ~s: ~p~n", [?FIFO, Reason])
    end.
