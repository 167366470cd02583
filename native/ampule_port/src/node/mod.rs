//! An Erlang node in a transient container: what application containers (`app/`) and
//! sandboxes (`sandbox/`) share. The two differ only in how the client reaches the node
//! ([`Reach`]); everything else is here, once.
//!
//! A node's container is transient: its directory is `STATE/apps/NAME/` (on the port's
//! tmpfs, see `host.rs`) with `rootfs/` (a tmpfs of its own holding a skeleton:
//! merged-usr links, a tiny `/etc`, a home holding the cookie), the saved `config`, and `ampule-owner` naming the port
//! instance that made it.
//!
//! - States: `Booting` from the reservation until the kind says it is ready (its node
//!   answered a handshake, or for a sandbox its init runs), then `Running`, then
//!   `Destroying` while its veth, cgroups, files and address are released ([`release`]),
//!   after which its name is forgotten.
//! - Who ends it: `destroy`, its init's exit (the BEAM hears `{event, exit, ...}`), a
//!   failed boot, and end of input.
//! - What the sweep does: a crashed port's nodes are killed and removed by the next port's
//!   start-up sweep (their owner file names a dead instance).

pub mod config;
pub mod phase;
pub mod release;
pub mod rootfs;
pub mod start;

use std::path::{Path, PathBuf};

use crate::host::Host;
use crate::leases::Lease;
use crate::protocol::SpawnOpts;

/// The unprivileged user the node runs as, inside the container.
pub const NODE_UID: u32 = 1000;
/// The node's home inside the container.
pub const HOME: &str = "/home/ampule";
/// The distribution port every node listens on (each container has its own address).
pub const DIST_PORT: u16 = 9100;

/// Where the socket of a sandbox's agent appears inside it.
pub const AGENT_SOCKET: &str = "/run/ampule/agent.sock";

/// Where an announcing node's FIFO appears inside its container (`app/announce.rs`).
pub const READY_FIFO: &str = "/run/ampule/ready";

/// How the client reaches the node of an application container.
#[derive(Debug, Clone)]
pub enum Reach {
    /// Erlang distribution: a veth on the bridge with this address, and this cookie; with
    /// `announce`, the node says it is up on its own FIFO, mounted at [`READY_FIFO`].
    Dist {
        lease: Lease,
        cookie: String,
        announce: bool,
    },
    /// A sandbox: no network but loopback; the client's agent socket, mounted at
    /// [`AGENT_SOCKET`].
    Agent { socket: PathBuf },
}

/// Everything needed to start one node's container (either mode).
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub reach: Reach,
    pub opts: SpawnOpts,
}

impl NodeSpec {
    pub fn lease(&self) -> Option<&Lease> {
        match &self.reach {
            Reach::Dist { lease, .. } => Some(lease),
            Reach::Agent { .. } => None,
        }
    }

    /// The distributed node's name, `NAME@ADDRESS`; a sandbox has none.
    pub fn nodename(&self) -> Option<String> {
        self.lease().map(|l| format!("{}@{}", self.name, l.address))
    }
}

/// A node container's directory (under [`Host::apps`]).
pub fn dir(host: &Host, name: &str) -> PathBuf {
    host.apps.join(name)
}

/// An announcing node's FIFO on the host: in the container's directory, which is the
/// port's (root's, mode 0711), outside the rootfs, which is the container's to change.
pub fn ready_fifo(host: &Host, name: &str) -> PathBuf {
    dir(host, name).join("ready")
}

pub fn rootfs(host: &Host, name: &str) -> PathBuf {
    dir(host, name).join("rootfs")
}

/// The node's last output lines (what `erl` printed before it died or hung). `boot.log` is
/// in the node's home, the container's to replace with anything: read as untrusted, from
/// the rootfs (a tmpfs of its own, see `rootfs.rs`: reading from the container's directory
/// would cross that mount, which `read_tail` refuses).
pub fn log_tail(host: &Host, name: &str) -> String {
    const MAX: usize = 2048;
    let rel = Path::new(HOME.trim_start_matches('/')).join("boot.log");
    match crate::untrusted::read_tail(&rootfs(host, name), &rel, MAX) {
        Ok(text) => String::from_utf8_lossy(&text).into_owned(),
        Err(e) => format!("(boot.log not read: {e})"),
    }
}
