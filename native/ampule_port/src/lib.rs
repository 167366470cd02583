//! `ampule_port`: the privileged half of Ampule. The BEAM starts it as a port; it speaks
//! `{packet, 4}` external term format on fds 3 and 4, drives liblxc to make containers,
//! boots an unprivileged Erlang node in each and says when the node is really reachable.
//! The protocol is written down in `docs/protocol.md`.
//!
//! # Layout
//!
//! - [`frame`]: `{packet, 4}` framing, nothing else.
//! - [`etf`]: the guard in front of `eetf` (tags it panics on, nesting depth) and the reply
//!   encoder that echoes the caller's tag byte for byte.
//! - [`protocol`]: requests, replies and events as terms; option validation.
//! - [`dispatch`]: the request loop, the registry of containers, shutdown on end of input.
//! - [`container`]: an application container's rootfs, config, start and removal.
//! - [`boot`]: waiting for a node — EPMD registration, then a handshake with its cookie.
//! - [`system`]: system containers from LXC templates and their consoles.
//! - [`dhcp`]: the dnsmasq that serves system containers on the bridge.
//! - [`network`]: the bridge, its isolation rules, address leases.
//! - [`oom`]: telling an out-of-memory kill from other deaths.
//! - [`exits`]: how a container's init ended, from the kernel's process events.
//! - [`untrusted`]: reading files a container controls (no links, no blocking, bounded).
//! - [`seccomp`]: Ampule's seccomp policy for application containers, with its reasons.
//! - [`staging`]: code paths a container's mapped root cannot reach, bind-mounted where it can.
//! - [`host`]: prerequisites, command-line settings, the instance lock and start-up sweep.
//! - [`lxc`]: the only `unsafe` — a safe wrapper over liblxc.
//! - [`cgroup`]: keeps the port out of the cgroups liblxc moves it into.
//! - [`pipe`]: the protocol descriptors as async streams.
//! - [`outbox`]: the single writer queue and the logger that feeds it.

#![deny(unsafe_code)]

pub mod boot;
pub mod cgroup;
pub mod container;
pub mod dhcp;
pub mod dispatch;
pub mod etf;
pub mod exits;
pub mod frame;
pub mod host;
pub mod instance;
pub mod leases;
#[allow(unsafe_code)]
pub mod lxc;
pub mod names;
pub mod network;
pub mod oom;
pub mod outbox;
pub mod pipe;
pub mod protocol;
pub mod seccomp;
pub mod settings;
pub mod staging;
pub mod subnet;
pub mod sweep;
pub mod system;
pub mod teardown;
pub mod timeline;
pub mod untrusted;
