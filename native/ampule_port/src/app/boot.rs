//! "Ready means ready": a node is up when the container's EPMD knows its name and a
//! distribution handshake with its cookie completes. Both are polled on the real signals,
//! each attempt bounded, the whole wait bounded by the boot deadline. For a client that
//! does not ask its nodes to announce themselves (`announce.rs`, what the Elixir library
//! does): the port's handshake is the first incoming connection of a node still booting,
//! and costs it `string` and `unicode_util` loaded (docs/benchmarks.md).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use erl_dist::epmd::{EpmdClient, DEFAULT_EPMD_PORT};
use erl_dist::handshake::ClientSideHandshake;
use erl_dist::node::{Creation, LocalNode, NodeName};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::names;
use crate::node::phase::{Phase, PhaseCell};
use crate::timeline::Timeline;

/// How often EPMD and the handshake are retried while a node boots. Small: a node
/// registers within a few hundred milliseconds and every poll is one local TCP connect.
pub const POLL: Duration = Duration::from_millis(4);
const ATTEMPT: Duration = Duration::from_millis(500);

async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    match tokio::time::timeout(ATTEMPT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Some(s)
        }
        _ => None,
    }
}

/// The node's distribution port, once its EPMD answers with it.
async fn epmd_port(ip: Ipv4Addr, alive: &str) -> Option<u16> {
    let stream = connect(SocketAddr::from((ip, DEFAULT_EPMD_PORT))).await?;
    let query = EpmdClient::new(stream.compat()).get_node(alive);
    match tokio::time::timeout(ATTEMPT, query).await {
        Ok(Ok(Some(entry))) => Some(entry.port),
        _ => None,
    }
}

async fn handshake(ip: Ipv4Addr, port: u16, local: &NodeName, cookie: &str) -> bool {
    let Some(stream) = connect(SocketAddr::from((ip, port))).await else {
        return false;
    };
    let me = LocalNode::new(local.clone(), Creation::random());
    let mut hs = ClientSideHandshake::new(stream.compat(), me, cookie);
    let run = async {
        hs.execute_send_name(erl_dist::LOWEST_DISTRIBUTION_PROTOCOL_VERSION)
            .await
            .ok()?;
        hs.execute_rest(true).await.ok()
    };
    matches!(tokio::time::timeout(ATTEMPT, run).await, Ok(Some(_)))
}

/// Waits until `alive@ip` is registered in the container's EPMD and accepts a handshake
/// with `cookie`. Runs until it succeeds: the caller bounds it with the boot deadline and
/// reads `phase` to say where it was stuck.
pub async fn wait_ready(
    ip: Ipv4Addr,
    alive: &str,
    cookie: &str,
    local: &NodeName,
    phase: &PhaseCell,
    timeline: &Timeline,
) {
    loop {
        phase.set(Phase::Epmd);
        let port = loop {
            if let Some(p) = epmd_port(ip, alive).await {
                break p;
            }
            tokio::time::sleep(POLL).await;
        };
        timeline.mark("epmd");
        phase.set(Phase::Handshake);
        if handshake(ip, port, local, cookie).await {
            timeline.mark("handshake");
            return;
        }
        timeline.mark("handshake_refused");
        tokio::time::sleep(POLL).await;
    }
}

/// A random cookie: 20 upper-case letters, as `erl` makes its own.
pub fn random_cookie() -> String {
    names::random(names::COOKIE_ALPHABET, 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_random_letters() {
        let a = random_cookie();
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|b| b.is_ascii_uppercase()));
        assert_ne!(a, random_cookie());
    }
}
