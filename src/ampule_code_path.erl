%% Puts a container's own code directories (Elixir's libraries, the caller's project,
%% Ampule's ebin: everything outside the OTP root) before OTP's once its node has booted.
%%
%% A container's node gets those directories with `-pz`, after OTP's, because its boot
%% loads some hundred OTP modules and each would otherwise be looked for in every one of
%% them first. After the boot the balance turns: in interactive mode every module loaded
%% on first use is looked for in the code path's directories in order, one failed open
%% per directory, and real work loads Elixir's modules by the hundred (the compiler,
%% ExUnit, Enum, String...), each after the 37 directories of OTP. So the node's first
%% act after its boot (`-s ampule_code_path promote`, before anything of the caller's
%% runs) is to put them first, as `erl -pa` (and so a local `elixir` or `mix`) has them.
-module(ampule_code_path).

-export([promote/0]).

promote() ->
    Root = code:root_dir() ++ "/",
    Own = [Dir || Dir <- code:get_path(), Dir =/= ".", not lists:prefix(Root, Dir)],
    %% add_pathsa/1 moves each directory (in reverse, so the order is kept) and checks
    %% only those: set_path/1 would check all 45 or so, each a file operation on a dirty
    %% I/O scheduler, which cost a booting node 6-18 ms under load (2-9 quiet).
    ok = code:add_pathsa(lists:reverse(Own)).
