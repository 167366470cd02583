//! Launching a node's container, the phases both kinds of node share: the name is
//! committed, the rootfs prepared and the container started within the boot deadline, its
//! memory cgroup watched for OOM kills and its init for its exit. A container that fails
//! any of them is destroyed before the spawn answers.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::phase::{Phase, PhaseCell};
use super::{config, dir, log_tail, release, rootfs, NodeSpec};
use crate::config::lxc_log_tail;
use crate::ctx::Ctx;
use crate::error::Failure;
use crate::host::Host;
use crate::lxc::{Container, LxcError};
use crate::registry::{Detail, Refusal, Reservation, State};
use crate::timeline::Timeline;
use crate::{init, oom};

/// A node's container whose init runs and is watched.
pub struct Launched {
    pub pid: i32,
    pub began: Instant,
    pub deadline: tokio::time::Instant,
    pub phase: Arc<PhaseCell>,
    pub timeline: Arc<Timeline>,
    /// Turns `true` when the init exits.
    pub exited: watch::Receiver<bool>,
    pub oom: Option<Arc<oom::Watch>>,
}

/// Marks a node whose container is ready (a distributed node that answered, a sandbox whose
/// init runs) as running, unless its init exited first (then its boot failed). The exit and
/// this are ordered by the registry's lock: an exit seen here fails the boot, a later one
/// ends the running container. One destroyed by the end of input meanwhile counts as
/// running: its removal is under way.
pub fn mark_running(ctx: &Ctx, name: &str, exited: &watch::Receiver<bool>) -> bool {
    let running = ctx.registry.transition(
        name,
        State::Running,
        |e| e.state.can_run() && !*exited.borrow(),
        |_| (),
    );
    !matches!(running, Err(Refusal::In(_, State::Booting)))
}

/// Starts the container of `spec`, whose name `reservation` holds, within `deadline`.
pub async fn launch(
    ctx: &Arc<Ctx>,
    reservation: Reservation<'_>,
    spec: &NodeSpec,
    began: Instant,
    deadline: tokio::time::Instant,
) -> Result<Launched, Failure> {
    // From here on, a failure's removal forgets the name.
    reservation.commit();
    let timeline = Arc::new(Timeline::new(began));
    let phase = Arc::new(PhaseCell::default());
    let pid = match start(ctx, spec, &phase, &timeline, deadline).await {
        Ok(pid) => pid,
        Err(failure) => return Err(release::fail_boot(ctx, spec, failure).await),
    };
    let oom = match oom::Watch::register(ctx.host.cgroups, &spec.name) {
        Ok(w) => Some(Arc::new(w)),
        Err(e) => {
            log::warn!(container = spec.name.as_str(); "cannot watch for OOM kills: {e}");
            None
        }
    };
    let on_exit = release::on_init_exit(ctx.clone(), spec.name.clone(), pid, oom.clone());
    let exited = match init::watch(ctx, &spec.name, pid, on_exit) {
        Ok(rx) => rx,
        Err(e) => {
            log::error!(container = spec.name.as_str(); "cannot watch init {pid}: {e}");
            return Err(release::fail_boot(ctx, spec, Failure::Lxc("init_pid")).await);
        }
    };
    Ok(Launched {
        pid,
        began,
        deadline,
        phase,
        timeline,
        exited,
        oom,
    })
}

/// Prepares the rootfs and starts the container within the deadline; its init's pid.
async fn start(
    ctx: &Arc<Ctx>,
    spec: &NodeSpec,
    phase: &Arc<PhaseCell>,
    timeline: &Arc<Timeline>,
    deadline: tokio::time::Instant,
) -> Result<i32, Failure> {
    let permit = ctx.gate.permit().await;
    let mut job = {
        let (ctx, sp, ph, tl) = (ctx.clone(), spec.clone(), phase.clone(), timeline.clone());
        tokio::task::spawn_blocking(move || {
            rootfs::prepare(&ctx.host, &sp)?;
            tl.mark("prepare");
            ph.set(Phase::Start);
            start_blocking(&ctx.host, &sp, &tl)
        })
    };
    let started = tokio::select! {
        r = &mut job => r,
        _ = tokio::time::sleep_until(deadline) => {
            let stuck = phase.get();
            let _ = job.await;
            return Err(boot_timeout(ctx, &spec.name, stuck));
        }
    };
    drop(permit);
    let pid = match started {
        Ok(Ok(pid)) => pid,
        Ok(Err(e)) => return Err(start_failure(ctx, &spec.name, e)),
        Err(join) => {
            log::error!(container = spec.name.as_str(); "start task failed: {join}");
            return Err(Failure::Lxc("start"));
        }
    };
    ctx.registry.with(&spec.name, |e| {
        e.init_pid = Some(pid);
        if let Detail::App { nodename, .. } = &mut e.detail {
            *nodename = spec.nodename();
        }
    });
    Ok(pid)
}

/// Why a container could not be started.
#[derive(Debug)]
enum StartError {
    Io(io::Error),
    Lxc(LxcError),
    NoInit,
}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> StartError {
        StartError::Io(e)
    }
}

impl From<LxcError> for StartError {
    fn from(e: LxcError) -> StartError {
        StartError::Lxc(e)
    }
}

/// Configures and starts a node's container whose directory [`rootfs::prepare`] wrote;
/// returns its init's host pid.
fn start_blocking(host: &Host, spec: &NodeSpec, timeline: &Timeline) -> Result<i32, StartError> {
    let c = Container::open(&spec.name, &host.apps)?;
    for (k, v) in config::node_config(host, spec) {
        c.set_config_item(&k, &v)?;
    }
    c.save_config()?;
    timeline.mark("config");
    crate::cgroup::starting(|| {
        timeline.mark("start_lock");
        c.start(&config::argv(spec))
    })?;
    timeline.mark("lxc_start");
    c.init_pid().ok_or(StartError::NoInit)
}

/// `{boot_timeout, Phase, Log}`: the deadline passed in `phase`.
pub fn boot_timeout(ctx: &Ctx, name: &str, phase: Phase) -> Failure {
    Failure::BootTimeout {
        phase: phase.atom(),
        log: log_tail(&ctx.host, name),
    }
}

fn start_failure(ctx: &Ctx, name: &str, e: StartError) -> Failure {
    match e {
        StartError::Io(e) if e.kind() == io::ErrorKind::AlreadyExists => Failure::NameInUse,
        StartError::Io(e) => {
            log::error!(container = name; "preparing the rootfs failed: {e}");
            Failure::Rootfs(e.to_string())
        }
        StartError::Lxc(e) => {
            log::error!(container = name; "{e}; {}", lxc_log_tail(&dir(&ctx.host, name)));
            e.into()
        }
        StartError::NoInit => Failure::Lxc("init_pid"),
    }
}
