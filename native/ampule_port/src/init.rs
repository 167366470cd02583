//! A container's init, seen from the port: watched through a pidfd from the moment it
//! runs, killed only through that pidfd (never by a pid another process may have reused),
//! and, once it exited, how: an OOM kill, an exit status, a signal, from the kernel (see
//! `exits.rs`). What an exit means is the kind's: it passes the watch its own ending.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eetf::Term;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::ctx::Ctx;
use crate::exits::Ended;
use crate::lxc;
use crate::oom;
use crate::protocol::{atom, int};

/// How long `destroy` waits for a killed init to exit before it falls back to liblxc's
/// full, synchronous stop.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long an exit's status may lag behind the exit itself (the kernel reports it first;
/// this only covers the port's reader being busy).
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(1);

/// Watches the init `pid` of container `name`: its pidfd goes into the registry entry, and
/// when it exits the receiver turns `true` and `on_exit` runs.
pub fn watch<F>(ctx: &Ctx, name: &str, pid: i32, on_exit: F) -> io::Result<watch::Receiver<bool>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let fd = Arc::new(lxc::watch_exit(pid)?);
    ctx.registry.with(name, |e| e.init_fd = Some(fd.clone()));
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = fd.readable().await;
        let _ = tx.send(true);
        on_exit.await;
    });
    Ok(rx)
}

/// Why a node's init exited, from the kernel: `oom`, the node's exit status, `killed` (a
/// signal), or `unknown` when the kernel's report was not seen.
pub async fn exit_reason(ctx: &Ctx, pid: i32, oom: Option<&oom::Watch>) -> Term {
    let ended = ctx.exits.of(pid, EXIT_REPORT_WAIT).await;
    if oom.is_some_and(|w| w.killed_by_oom(ended)) {
        return atom("oom");
    }
    match ended {
        Ended::Exited(status) => int(status as i64),
        Ended::Signaled(_) => atom("killed"),
        Ended::Unknown => atom("unknown"),
    }
}

/// Kills a container's init and waits until it has exited: the kernel kills the rest of a
/// pid namespace and reaps it before its init is gone, so nothing of the container runs
/// any more when this returns. The init is killed directly, not through liblxc's `stop()`,
/// which only returns once the monitor has finished the whole teardown; the monitor sees
/// the exit and tears down as it always does. Returns whether the exit was seen.
pub async fn kill(name: &str, init: Option<Arc<AsyncFd<OwnedFd>>>) -> bool {
    let began = Instant::now();
    let Some(init) = init else {
        return false;
    };
    if let Err(e) = lxc::kill_pidfd(&init) {
        log::warn!(container = name; "cannot kill init: {e}");
    }
    if tokio::time::timeout(KILL_WAIT, init.readable())
        .await
        .is_err()
    {
        log::warn!(container = name; "init still running {KILL_WAIT:?} after the kill");
        return false;
    }
    log::debug!(container = name; "dead in {:.1} ms", began.elapsed().as_secs_f64() * 1000.0);
    true
}
