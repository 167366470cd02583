//! How a node's container ends, whoever ends it: its init killed (or seen to exit), then
//! its veth, cgroups, files and address released and its name forgotten. `destroy`
//! answers once nothing of the container runs; the release follows off the caller's path
//! (liblxc's teardown is ~40 ms, most of it the kernel deleting the veth), the name is
//! reusable at once (see `Registry::reserve`) and the final sweep waits for every release.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{dir, NodeSpec};
use crate::ctx::Ctx;
use crate::error::Failure;
use crate::leases::{self, Lease};
use crate::names::Kind;
use crate::registry::{Detail, Entry, State};
use crate::timeline::Timeline;
use crate::{init, oom, teardown};

/// How long the final sweep waits for releases still running (each normally takes tens of
/// milliseconds); past it, their monitors are killed and the files left to the next
/// port's start-up sweep.
const RELEASE_LIMIT: Duration = Duration::from_secs(30);

/// How long a release tries to remove a container's cgroups before it answers (a spawn that
/// failed waits for that), then behind it.
const CGROUPS_NOW: Duration = Duration::from_secs(2);
const CGROUPS_LATER: Duration = Duration::from_secs(25);

/// Removes a container's files, veth and lease, and forgets it.
pub async fn remove(ctx: &Ctx, name: &str, lease: Option<Lease>) {
    let cgroups_left = remove_now(ctx, name, lease).await;
    finish(ctx, name, cgroups_left).await;
}

/// Removes what can go at once (files, veth, lease, and the cgroups within
/// [`CGROUPS_NOW`]); whether cgroups are left.
async fn remove_now(ctx: &Ctx, name: &str, lease: Option<Lease>) -> bool {
    let host_name = name.to_string();
    let veth = lease.as_ref().map(|l| l.veth());
    let lxcpath = ctx.host.apps.clone();
    let dir = dir(&ctx.host, name);
    let address = lease.as_ref().map(|l| l.address);
    let bridge = ctx.host.bridge.clone();
    let r = tokio::task::spawn_blocking(move || {
        let timeline = Timeline::new(Instant::now());
        teardown::stop(&lxcpath, &host_name);
        timeline.mark("lxc_stop");
        teardown::remove_container_dir(&dir)?;
        timeline.mark("remove_files");
        if let Some(v) = veth {
            teardown::wait_link_gone(&v, Duration::from_secs(5));
        }
        let cgroups_left = !teardown::remove_cgroups_within(&host_name, CGROUPS_NOW).is_empty();
        timeline.mark("veth_cgroups");
        if let Some(ip) = address {
            leases::forget_address(ip, &bridge);
        }
        timeline.mark("forget_address");
        log::debug!(container = host_name.as_str(); "removed in {}", timeline.summary());
        Ok::<_, std::io::Error>(cgroups_left)
    })
    .await;
    let cgroups_left = match r {
        Ok(Ok(left)) => left,
        Ok(Err(e)) => {
            log::error!(container = name; "removing failed: {e}");
            false
        }
        Err(e) => {
            log::error!(container = name; "removal task failed: {e}");
            false
        }
    };
    if let Some(l) = lease {
        ctx.leases.release(&l);
    }
    let socket = ctx.registry.with(name, |e| match &e.detail {
        Detail::Sandbox { socket } => socket.clone(),
        _ => None,
    });
    if let Some(s) = socket.flatten() {
        let _ = std::fs::remove_file(s);
    }
    cgroups_left
}

/// Forgets the container, once its cgroups are gone if some were left.
async fn finish(ctx: &Ctx, name: &str, cgroups_left: bool) {
    if !cgroups_left {
        ctx.registry.forget(name);
        return;
    }
    // A monitor still sitting in its cgroup (seconds, on a loaded machine): retried behind,
    // the name kept as being released meanwhile, so the final sweep waits for it too.
    let host_name = name.to_string();
    let left = tokio::task::spawn_blocking(move || {
        teardown::remove_cgroups_within(&host_name, CGROUPS_LATER)
    })
    .await
    .unwrap_or_default();
    for cg in left {
        log::warn!(container = name; "cannot remove cgroup {}", cg.display());
    }
    ctx.registry.forget(name);
}

/// Destroys a container that did not boot; returns why, for the spawn's answer. The answer
/// waits for what goes at once, not for cgroups that a loaded machine's liblxc monitor
/// holds on to (up to [`CGROUPS_LATER`]: a failed boot's answer took 27 s in a CI run):
/// those are retried behind it.
pub async fn fail_boot(ctx: &Arc<Ctx>, spec: &NodeSpec, why: Failure) -> Failure {
    // Refused only when the end of input made it `Destroying` already: removed either way.
    ctx.registry
        .transition(
            &spec.name,
            State::Destroying,
            |e| e.state.can_fail(),
            |_| (),
        )
        .ok();
    let cgroups_left = remove_now(ctx, &spec.name, spec.lease().cloned()).await;
    if cgroups_left {
        let (ctx, name) = (ctx.clone(), spec.name.clone());
        tokio::spawn(async move { finish(&ctx, &name, true).await });
    } else {
        finish(ctx, &spec.name, false).await;
    }
    why
}

/// Ends a container that `destroy` claimed (`entry`, as it was): answers once every
/// process of it has exited, and releases the rest behind.
pub async fn destroy(ctx: &Arc<Ctx>, name: &str, entry: Entry) {
    let lease = entry.lease().cloned();
    if init::kill(name, entry.init_fd).await {
        let ctx = ctx.clone();
        let name = name.to_string();
        tokio::spawn(async move { remove(&ctx, &name, lease).await });
    } else {
        // The promise is "nothing runs when destroy answers": without a confirmed
        // exit, answer only after liblxc's own stop and the whole release.
        remove(ctx, name, lease).await;
    }
}

/// What a node's init exiting on its own after boot comes to: the container is destroyed
/// and the BEAM told how the node ended.
pub async fn on_init_exit(ctx: Arc<Ctx>, name: String, pid: i32, oom: Option<Arc<oom::Watch>>) {
    let ended = ctx.registry.transition(
        &name,
        State::Destroying,
        |e| e.state.can_end(),
        |e| e.lease().cloned(),
    );
    let Ok(lease) = ended else {
        return;
    };
    let status = init::exit_reason(&ctx, pid, oom.as_deref()).await;
    log::info!(container = name.as_str(); "init exited ({status}); destroying");
    // Told as soon as the node is gone, as `destroy` answers (the release follows, and the
    // final sweep waits for it): a pool must not hand out a container that died while it
    // waited, and the client of a sandbox that never said hello wants its last words.
    let log = super::log_tail(&ctx.host, &name);
    ctx.exit_event(&name, status, Some(&log));
    remove(&ctx, &name, lease).await;
}

/// End of input: removes every container of `kind` that is not being destroyed already.
pub async fn shut_down(ctx: &Ctx, kind: Kind) {
    let victims = ctx
        .registry
        .transition_all(kind, State::Destroying, |e| e.state.can_shut_down());
    let jobs = victims.into_iter().map(|(name, e)| async move {
        remove(ctx, &name, e.lease().cloned()).await;
    });
    futures::future::join_all(jobs).await;
}

/// Waits for the releases still running, up to `RELEASE_LIMIT`. Those that did not
/// finish (a monitor that no longer answers liblxc) have their monitors killed, so that
/// nothing of them runs, and what is left on disk belongs to this instance, whose lock
/// goes at exit: the next port's start-up sweep removes it.
pub async fn finish_releases(ctx: &Ctx) {
    if tokio::time::timeout(RELEASE_LIMIT, ctx.registry.releases_done())
        .await
        .is_ok()
    {
        return;
    }
    let stuck = ctx.registry.releasing();
    log::warn!(
        "releases not done after {RELEASE_LIMIT:?}: {stuck:?}; left to the next port's sweep"
    );
    let lxcpath = ctx.host.apps.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for name in stuck {
            teardown::kill_monitor(&lxcpath, &name);
        }
    })
    .await;
}
