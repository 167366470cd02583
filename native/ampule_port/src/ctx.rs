//! All a kind of container is given: the host, the address leases, the outbox, the kernel's
//! exit reports, the registry of every container and the start gate. Each kind keeps what
//! is only its own (consoles, dnsmasq, the local node name) in its own room.

use std::sync::Arc;
use std::time::Duration;

use eetf::Term;

use crate::error::Failure;
use crate::exits::Exits;
use crate::host::Host;
use crate::leases::Leases;
use crate::names::{self, Kind};
use crate::outbox::Outbox;
use crate::protocol::{bin, map};
use crate::registry::{Detail, Entry, Registry, Reservation};
use crate::shutdown::Gate;

/// The port's state shared by every request task and every kind.
pub struct Ctx {
    pub host: Host,
    pub leases: Leases,
    pub out: Outbox,
    /// How inits ended, from the kernel.
    pub exits: Arc<Exits>,
    pub registry: Registry,
    pub gate: Gate,
}

impl Ctx {
    /// A context whose registry starts with `adopted` (call from within the runtime: the
    /// kernel's exit reports are read by a task of their own).
    pub fn new(host: Host, leases: Leases, out: Outbox, adopted: Vec<(String, Entry)>) -> Ctx {
        Ctx {
            host,
            leases,
            out,
            exits: Exits::start(),
            registry: Registry::new(adopted),
            gate: Gate::default(),
        }
    }

    /// The name of a new container of `kind`: the one asked for, or a generated one.
    pub fn name_for(&self, kind: Kind, asked: Option<String>) -> String {
        let seq = self.registry.next_seq();
        asked.unwrap_or_else(|| names::generated(kind, &self.host.instance, seq))
    }

    /// Claims `name` (see [`Registry::reserve`]); a directory of either place containers
    /// live in takes a name as well.
    pub async fn reserve(
        &self,
        name: &str,
        detail: Detail,
        limit: Duration,
    ) -> Result<Reservation<'_>, Failure> {
        let on_disk =
            || self.host.apps.join(name).exists() || self.host.lxcpath.join(name).exists();
        self.registry.reserve(name, detail, limit, on_disk).await
    }

    /// `{event, exit, #{name, status}}`: a container ended on its own.
    /// `{event, exit, #{name, status}}`, with `log` (the node's last output) for the
    /// containers that have one.
    pub fn exit_event(&self, name: &str, status: Term, log: Option<&str>) {
        let mut fields = vec![("name", bin(name)), ("status", status)];
        if let Some(l) = log {
            fields.push(("log", bin(l)));
        }
        self.out.event("exit", map(fields));
    }
}
