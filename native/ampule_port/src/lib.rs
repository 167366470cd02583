//! `ampule_port`: the privileged half of Ampule. The BEAM starts it as a port; it speaks
//! `{packet, 4}` external term format on fds 3 and 4, drives liblxc to make containers,
//! boots an unprivileged Erlang node in each and says when the node is really reachable.
//! The protocol is written down in `docs/protocol.md`.
//!
//! # Layout
//!
//! Layers, bottom up. A module imports only from its own layer or the ones below, and
//! never in a circle; each kind of container (L4) is a room of its own that imports
//! neither another kind nor the request loop. `tests/layers.rs` reads this list and checks
//! every `crate::` path of `src/` against it.
//!
//! ## L0 — the wire
//! - [`frame`]: `{packet, 4}` framing, nothing else.
//! - [`etf`]: the guard in front of `eetf` (tags it panics on, nesting depth) and the reply
//!   encoder that echoes the caller's tag byte for byte.
//! - [`protocol`]: requests, replies and events as terms; option validation.
//! - [`pipe`]: the protocol descriptors as async streams.
//! - [`outbox`]: the single writer queue and the logger that feeds it.
//!
//! ## L1 — the kernel and liblxc, one concern each
//! - [`lxc`]: the only `unsafe` — a safe wrapper over liblxc, pidfds, process events.
//! - [`cgroup`]: the cgroup version, and the port kept out of the cgroups liblxc moves it into.
//! - [`subnet`]: an IPv4 subnet and how Ampule divides its bridge's.
//! - [`names`]: kinds of container, generated names, random strings.
//! - [`instance`]: a port instance's lock, liveness and owner files.
//! - [`settings`]: the command line.
//! - [`timeline`]: where the time of a boot or a removal went.
//! - [`teardown`]: taking a container apart without trusting liblxc to answer.
//! - [`exits`]: how a container's init ended, from the kernel's process events.
//! - [`oom`]: telling an out-of-memory kill from other deaths.
//! - [`untrusted`]: reading files a container controls (no links, no blocking, bounded).
//! - [`seccomp`]: Ampule's seccomp policy for application containers, with its reasons.
//!
//! ## L2 — the host
//! - [`host`]: prerequisites, the state directory, this instance's lock.
//! - [`network`]: the bridge and its firewall.
//! - [`leases`]: addresses on the bridge, shared by every port instance.
//! - [`dhcp`]: the dnsmasq that serves system containers on the bridge.
//! - [`staging`]: code paths a container's mapped root cannot reach, bind-mounted where it can.
//! - [`sweep`]: the start-up sweep of what crashed instances left.
//!
//! ## L3 — what the kinds share
//! - [`error`]: why a request failed, rendered once.
//! - [`tables`]: the reasons and options the port promises, printed for the client's tests.
//! - [`registry`]: every container this instance owns, its state and its transitions.
//! - [`shutdown`]: the start gate the final sweep shuts.
//! - [`ctx`]: all a kind is given.
//! - [`config`]: the `lxc.*` items every container shares.
//! - [`init`]: a container's init: watched, killed, its exit explained.
//! - [`console`]: consoles streamed under a credit window.
//! - [`node`]: a node in a transient container, what application containers and sandboxes
//!   share: spec, rootfs, config, start, release.
//!
//! ## L4 — the kinds
//! - [`app`]: application containers reached over distribution.
//! - [`sandbox`]: nodes without network, reached through the client's agent socket.
//! - [`system`]: system containers from LXC templates, with consoles.
//!
//! ## L5 — the request loop
//! - [`dispatch`]: frames in, each request to its kind's room, answers out; shutdown order.
//!
//! ## L6 — the program
//! - `main`: descriptors, runtime, start-up, serve.

#![deny(unsafe_code)]

pub mod app;
pub mod cgroup;
pub mod config;
pub mod console;
pub mod ctx;
pub mod dhcp;
pub mod dispatch;
pub mod error;
pub mod etf;
pub mod exits;
pub mod frame;
pub mod host;
pub mod init;
pub mod instance;
pub mod leases;
#[allow(unsafe_code)]
pub mod lxc;
pub mod names;
pub mod network;
pub mod node;
pub mod oom;
pub mod outbox;
pub mod pipe;
pub mod protocol;
pub mod registry;
pub mod sandbox;
pub mod seccomp;
pub mod settings;
pub mod shutdown;
pub mod staging;
pub mod subnet;
pub mod sweep;
pub mod system;
pub mod tables;
pub mod teardown;
pub mod timeline;
pub mod untrusted;
