//! Application containers reached over Erlang distribution (`Kind::App`): a node with an
//! address of its own on the bridge and a cookie, answered for only once it is really
//! reachable ([`boot`]: registered in its EPMD, then a handshake with its cookie), or, for
//! a client that asks (`announce => true`), once it says it is up on a FIFO of its own
//! ([`announce`]; the client's connection is then the handshake).
//!
//! - States: `Booting` until the handshake, then `Running`, then `Destroying` while it is
//!   released (`node/release.rs`).
//! - Who ends it: `destroy` (or `stop`), its node's exit (`{event, exit, ...}` with how it
//!   ended), a boot that fails or times out, and end of input.
//! - What the sweep does: a crashed port's are removed, leases included, by the next
//!   port's start-up sweep.
//!
//! Its own: the address lease (kept in the registry entry, released with the container)
//! and the port's node name for handshakes.

pub mod announce;
pub mod boot;

use std::io;
use std::sync::Arc;
use std::time::Instant;

use eetf::Term;
use erl_dist::node::NodeName;

use crate::ctx::Ctx;
use crate::error::Failure;
use crate::host::Host;
use crate::init;
use crate::leases::Lease;
use crate::names::Kind;
use crate::node::phase::Phase;
use crate::node::start::{self, Launched};
use crate::node::{self, release, NodeSpec, Reach};
use crate::protocol::{bin, int, map, SpawnOpts};
use crate::registry::{Detail, Entry};

/// The application containers' room.
pub struct Apps {
    ctx: Arc<Ctx>,
    /// The name the port's handshakes come from.
    local: NodeName,
}

/// The port's own node name on the bridge, `ampule_port_INSTANCE@HOST_ADDRESS`.
pub fn local_node(host: &Host) -> io::Result<NodeName> {
    NodeName::new(
        &format!("ampule_port_{}", host.instance),
        &host.subnet.host().to_string(),
    )
    .map_err(|e| io::Error::other(e.to_string()))
}

impl Apps {
    pub fn new(ctx: Arc<Ctx>, local: NodeName) -> Apps {
        Apps { ctx, local }
    }

    /// `{spawn, Opts}`, in phases: reserve the name, lease an address, start the container
    /// and watch its init (`node/start.rs`), then wait until its node is ready.
    pub async fn spawn(&self, opts: SpawnOpts) -> Result<Term, Failure> {
        let name = self.ctx.name_for(Kind::App, opts.name.clone());
        // The boot timeout covers the whole spawn, a wait for a same-named release too.
        let began = Instant::now();
        let deadline = tokio::time::Instant::from_std(began + opts.boot_timeout);
        let detail = Detail::App {
            lease: None,
            nodename: None,
        };
        let reservation = self.ctx.reserve(&name, detail, opts.boot_timeout).await?;
        let lease = self.lease(&name)?;
        let cookie = boot::random_cookie();
        let reach = Reach::Dist {
            lease: lease.clone(),
            cookie: cookie.clone(),
            announce: opts.announce,
        };
        let spec = NodeSpec { name, reach, opts };
        let launched = start::launch(&self.ctx, reservation, &spec, began, deadline).await?;
        self.await_node(&spec, &lease, &cookie, launched).await
    }

    /// Takes an address for `name` and records it in its entry.
    fn lease(&self, name: &str) -> Result<Lease, Failure> {
        let lease = match self.ctx.leases.acquire(name) {
            Ok(Some(l)) => l,
            Ok(None) => return Err(Failure::NoAddress),
            Err(e) => return Err(Failure::Leases(e.to_string())),
        };
        self.ctx.registry.with(name, |e| {
            if let Detail::App { lease: l, .. } = &mut e.detail {
                *l = Some(lease.clone());
            }
        });
        Ok(lease)
    }

    /// Waits until a distributed node is ready (found in its EPMD, handshake done; or it
    /// announced itself), then answers; a node that exits or does not get there in time is
    /// destroyed.
    async fn await_node(
        &self,
        spec: &NodeSpec,
        lease: &Lease,
        cookie: &str,
        launched: Launched,
    ) -> Result<Term, Failure> {
        let Launched {
            pid,
            began,
            deadline,
            phase,
            timeline,
            mut exited,
            oom,
        } = launched;
        enum Outcome {
            Ready,
            Exited,
            Timeout,
        }
        let announce = matches!(spec.reach, Reach::Dist { announce: true, .. });
        let mut fifo = None;
        if announce {
            phase.set(Phase::Announce);
            match announce::open(&node::ready_fifo(&self.ctx.host, &spec.name)) {
                Ok(f) => fifo = Some(f),
                Err(e) => {
                    log::error!(container = spec.name.as_str(); "cannot open the ready FIFO: {e}");
                    let failure = Failure::Rootfs(format!("ready FIFO: {e}"));
                    return Err(release::fail_boot(&self.ctx, spec, failure).await);
                }
            }
        } else {
            phase.set(Phase::Epmd);
        }
        let nodename = spec.nodename().unwrap_or_default();
        let ready = async {
            match fifo.as_mut() {
                Some(f) => announce::wait(f, &spec.name, &nodename, &timeline).await,
                None => {
                    boot::wait_ready(
                        lease.address,
                        &spec.name,
                        cookie,
                        &self.local,
                        &phase,
                        &timeline,
                    )
                    .await
                }
            }
        };
        let outcome = tokio::select! {
            _ = ready => Outcome::Ready,
            _ = exited.wait_for(|e| *e) => Outcome::Exited,
            _ = tokio::time::sleep_until(deadline) => Outcome::Timeout,
        };
        let name = &spec.name;
        let failure = match outcome {
            Outcome::Ready if start::mark_running(&self.ctx, name, &exited) => {
                let ms = began.elapsed().as_millis() as i64;
                log::debug!(container = name.as_str(); "ready in {}", timeline.summary());
                return Ok(ready_answer(spec, lease, cookie, pid, ms));
            }
            Outcome::Ready | Outcome::Exited => None,
            Outcome::Timeout => Some(start::boot_timeout(&self.ctx, name, phase.get())),
        };
        let failure = match failure {
            Some(f) => f,
            None => Failure::BootFailed {
                status: init::exit_reason(&self.ctx, pid, oom.as_deref()).await,
                log: node::log_tail(&self.ctx.host, name),
            },
        };
        Err(release::fail_boot(&self.ctx, spec, failure).await)
    }

    /// Ends a container `destroy` claimed.
    pub async fn destroy(&self, name: &str, entry: Entry) {
        release::destroy(&self.ctx, name, entry).await
    }

    /// End of input: every application container goes.
    pub async fn shut_down(&self) {
        release::shut_down(&self.ctx, Kind::App).await
    }
}

fn ready_answer(spec: &NodeSpec, lease: &Lease, cookie: &str, pid: i32, ms: i64) -> Term {
    map(vec![
        ("name", bin(&spec.name)),
        ("nodename", bin(spec.nodename().unwrap_or_default())),
        ("address", bin(lease.address.to_string())),
        ("cookie", bin(cookie)),
        ("init_pid", int(pid as i64)),
        ("boot_ms", int(ms)),
    ])
}

/// An application container's address, for `info`.
pub fn address(entry: &Entry) -> Option<String> {
    entry.lease().map(|l| l.address.to_string())
}
