defmodule Ampule.Sandbox.Atoms do
  @moduledoc false
  # A sandbox's result may name only atoms this node has (it is decoded as
  # `binary_to_term(_, [:safe])` would). Error tuples are the common case of atoms a node
  # has not always met yet: `{:error, :econnrefused}` was refused by a fresh VM that had
  # never seen `:econnrefused`. This module names Linux's errno atoms and OTP's usual
  # error reasons; loading it (the application does, at start) makes them exist.

  @atoms ~w(e2big eacces eaddrinuse eaddrnotavail eadv eafnosupport eagain ealready ebade ebadf ebadfd ebadmsg ebadr ebadrqc ebadslt ebfont ebusy ecanceled echild echrng ecomm econnaborted econnrefused econnreset edeadlk edeadlock edestaddrreq edom edotdot edquot eexist efault efbig ehostdown ehostunreach ehwpoison eidrm eilseq einprogress eintr einval eio eisconn eisdir eisnam ekeyexpired ekeyrejected ekeyrevoked el2hlt el2nsync el3hlt el3rst elibacc elibbad elibexec elibmax elibscn elnrng eloop emediumtype emfile emlink emsgsize emultihop enametoolong enavail enetdown enetreset enetunreach enfile enoano enobufs enocsi enodata enodev enoent enoexec enokey enolck enolink enomedium enomem enomsg enonet enopkg enoprotoopt enospc enosr enostr enosys enotblk enotconn enotdir enotempty enotnam enotrecoverable enotsock enotty enotuniq enxio eopnotsupp eoverflow eownerdead eperm epfnosupport epipe eproto eprotonosupport eprototype erange eremchg eremote eremoteio erestart erfkill erofs eshutdown esocktnosupport espipe esrch esrmnt estale estrpipe etime etimedout etoomanyrefs etxtbsy euclean eunatch eusers ewouldblock exdev exfull)a ++
           [
             :timeout,
             :closed,
             :badarg,
             :badarith,
             :badmatch,
             :function_clause,
             :case_clause,
             :if_clause,
             :try_clause,
             :undef,
             :badfun,
             :badarity,
             :noproc,
             :normal,
             :shutdown,
             :killed,
             :nxdomain,
             :not_found,
             :exists,
             :already_started,
             :noconnection,
             :nodedown,
             :system_limit,
             :badkey,
             :badmap,
             :notsup,
             :terminated
           ]

  @doc "The atoms this module makes exist."
  def list, do: @atoms
end
