//! Sandboxes (`Kind::Sandbox`): the seed's "safely". A node with no distribution and no
//! network but loopback (no veth, no address, no cookie, no EPMD); the client reaches it
//! through its own listening socket in this instance's `agents_dir`, which the port checks,
//! gives to the node's uid and bind-mounts at `/run/ampule/agent.sock`. The port never reads
//! what a sandbox sends: the client decodes it as hostile data.
//!
//! - States: `Booting` until its init runs, then `Running` (its readiness is its agent's
//!   hello, which only the client sees), then `Destroying` while it is released
//!   (`node/release.rs`), its socket removed with it.
//! - Who ends it: `destroy` (or `stop`), its node's exit, a failed start, end of input.
//! - What the sweep does: a crashed port's sandboxes are removed by the next port's
//!   start-up sweep, and its `agents_dir` with them.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use eetf::Term;

use crate::ctx::Ctx;
use crate::error::Failure;
use crate::host::Host;
use crate::init;
use crate::names::Kind;
use crate::node::start::{self, Launched};
use crate::node::{self, release, NodeSpec, Reach, NODE_UID};
use crate::protocol::{atom, bin, int, map, SpawnOpts};
use crate::registry::{Detail, Entry};

/// The sandboxes' room.
pub struct Sandboxes {
    ctx: Arc<Ctx>,
}

impl Sandboxes {
    pub fn new(ctx: Arc<Ctx>) -> Sandboxes {
        Sandboxes { ctx }
    }

    /// `{spawn, #{sandbox => #{socket => Socket}}}`, in phases: reserve the name, claim
    /// the client's agent socket, start the container and watch its init
    /// (`node/start.rs`); answered once its init runs.
    pub async fn spawn(&self, opts: SpawnOpts, socket: PathBuf) -> Result<Term, Failure> {
        let name = self.ctx.name_for(Kind::Sandbox, opts.name.clone());
        // The boot timeout covers the whole spawn, a wait for a same-named release too.
        let began = Instant::now();
        let deadline = tokio::time::Instant::from_std(began + opts.boot_timeout);
        let detail = Detail::Sandbox { socket: None };
        let reservation = self.ctx.reserve(&name, detail, opts.boot_timeout).await?;
        self.claim_socket(&name, &socket)?;
        let spec = NodeSpec {
            name,
            reach: Reach::Agent { socket },
            opts,
        };
        let launched = start::launch(&self.ctx, reservation, &spec, began, deadline).await?;
        if start::mark_running(&self.ctx, &spec.name, &launched.exited) {
            log::debug!(container = spec.name.as_str(); "started in {}", launched.timeline.summary());
            return Ok(self.answer(&spec, &launched));
        }
        // Its init exited before the answer: a failed boot, as for a distributed node.
        let failure = Failure::BootFailed {
            status: init::exit_reason(&self.ctx, launched.pid, launched.oom.as_deref()).await,
            log: node::log_tail(&self.ctx.host, &spec.name),
        };
        Err(release::fail_boot(&self.ctx, &spec, failure).await)
    }

    /// Hands the client's socket to the node and records it, to be removed with it.
    fn claim_socket(&self, name: &str, socket: &Path) -> Result<(), Failure> {
        if let Err(e) = claim_agent_socket(&self.ctx.host, socket) {
            log::warn!(container = name; "agent socket refused: {e}");
            return Err(Failure::BadAgentSocket(socket.to_path_buf()));
        }
        self.ctx.registry.with(name, |e| {
            e.detail = Detail::Sandbox {
                socket: Some(socket.to_path_buf()),
            }
        });
        Ok(())
    }

    fn answer(&self, spec: &NodeSpec, launched: &Launched) -> Term {
        map(vec![
            ("name", bin(&spec.name)),
            ("kind", atom("sandbox")),
            ("init_pid", int(launched.pid as i64)),
            ("boot_ms", int(launched.began.elapsed().as_millis() as i64)),
        ])
    }

    /// Ends a container `destroy` claimed.
    pub async fn destroy(&self, name: &str, entry: Entry) {
        release::destroy(&self.ctx, name, entry).await
    }

    /// End of input: every sandbox goes.
    pub async fn shut_down(&self) {
        release::shut_down(&self.ctx, Kind::Sandbox).await
    }
}

/// Checks that a sandbox's agent socket is the client's to hand over, then gives it to the
/// node's uid alone: a socket (not a link, not a file to expose) directly in this
/// instance's `agents_dir`, which only the client's user can write.
pub fn claim_agent_socket(host: &Host, socket: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if socket.parent() != Some(host.agents.as_path()) {
        return Err(io::Error::other(format!(
            "{} is not directly in {}",
            socket.display(),
            host.agents.display()
        )));
    }
    let meta = fs::symlink_metadata(socket)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::other(format!(
            "{} is not a socket",
            socket.display()
        )));
    }
    let (nu, ng) = (host.uids.start + NODE_UID, host.gids.start + NODE_UID);
    std::os::unix::fs::lchown(socket, Some(nu), Some(ng))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600))
}
