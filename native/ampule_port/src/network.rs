//! Ampule's bridge: made at start, idempotently, with no forwarding and no NAT, a fixed MAC,
//! and a firewall of its own (see `isolate_bridge`). The addresses on it are
//! `leases.rs`'s; how its subnet is divided, `subnet.rs`'s.

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use crate::subnet::Subnet;

fn run(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{:?}: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Makes sure the bridge exists, is up and holds the host address. Runs before the reaper
/// starts, so `Command`'s own wait sees its children.
pub fn ensure_bridge(bridge: &str, subnet: &Subnet) -> io::Result<()> {
    // Several ports may start at once on a machine that has no bridge yet (the test suites
    // do, on a fresh machine): each step below would race the others' ("File exists",
    // "Address already assigned"), so one instance at a time prepares a bridge.
    fs::create_dir_all(BRIDGE_LOCKS)?;
    let file = fs::File::create(Path::new(BRIDGE_LOCKS).join(format!("{bridge}.lock")))?;
    let _one_at_a_time = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))?;
    if !Path::new("/sys/class/net").join(bridge).exists() {
        run(Command::new("ip").args(["link", "add", bridge, "type", "bridge"]))?;
    }
    let cidr = format!("{}/{}", subnet.host(), subnet.prefix);
    let addrs = run(Command::new("ip").args(["-o", "-4", "addr", "show", "dev", bridge]))?;
    if !addrs.split_whitespace().any(|w| w == cidr) {
        run(Command::new("ip").args(["addr", "add", &cidr, "dev", bridge]))?;
    }
    // A bridge without an address of its own takes the lowest MAC among its ports, so its
    // MAC changed whenever a container's veth came or went, and containers that had
    // resolved the host's address kept sending to a MAC nobody had any more: about one
    // boot in 200, under churn, had its replies to the host vanish and never connected.
    let mac = bridge_mac(subnet.host());
    if fs::read_to_string(Path::new("/sys/class/net").join(bridge).join("address"))
        .map(|a| a.trim() != mac)
        .unwrap_or(true)
    {
        run(Command::new("ip").args(["link", "set", bridge, "address", &mac]))?;
    }
    run(Command::new("ip").args(["link", "set", bridge, "up"]))?;
    isolate_bridge(bridge, subnet)
}

/// Where the locks that serialise preparing a bridge live (one file per bridge name).
const BRIDGE_LOCKS: &str = "/run/ampule";

/// The bridge's fixed MAC: locally administered (`02:`), from the host's address.
pub fn bridge_mac(host: Ipv4Addr) -> String {
    let [a, b, c, d] = host.octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Ampule's firewall for one bridge, nftables tables of its own replaced whole each time.
/// Each rule is proven necessary by a test (`tests/firewall.rs`) that performs the attack
/// it stops, on hosts with and without `br_netfilter`, and sees it succeed once that rule
/// alone is deleted.
///
/// - `inet` forward: nothing is routed into or out of the bridge (no forwarding, no NAT).
/// - `inet` input: a container opens no connection to the host. Only replies to what the
///   host opened (the host connects to containers' nodes, never the reverse) and DHCP
///   requests to the bridge's address pass; every other port, and every other address of
///   the host, is closed to containers — EPMD too, which a container could otherwise flood
///   (its ~1,100 connections made EPMD refuse everyone) and ask for every node of the host.
/// - `bridge` forward: no frame goes from one container's port to another's. With
///   `br_netfilter` on (bridged IPv4 then also passes the `inet` forward hook, whose drop
///   would catch it too) this looks redundant; without it, it is the only rule that does.
/// - `bridge` input: DHCP only from system containers' ports (`amps*`), at most 20
///   requests a second from each, the rest dropped before dnsmasq sees them.
fn isolate_bridge(bridge: &str, subnet: &Subnet) -> io::Result<()> {
    let host = subnet.host();
    let table = table_name(bridge);
    let rules = format!(
        r#"table inet ampule {{}}
delete table inet ampule
table bridge ampule {{}}
delete table bridge ampule
table inet {table} {{}}
delete table inet {table}
table inet {table} {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{bridge}" drop
        oifname "{bridge}" drop
    }}
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "{bridge}" ct state established,related accept
        iifname "{bridge}" udp dport 67 ip daddr {{ {host}, 255.255.255.255 }} accept
        iifname "{bridge}" drop
    }}
}}
table bridge {table} {{}}
delete table bridge {table}
table bridge {table} {{
    set dhcp_rate {{ type ifname; flags dynamic; timeout 1m; }}
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{veth}*" oifname "{veth}*" drop
    }}
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "{veth}*" iifname != "{system}*" udp dport 67 drop
        iifname "{system}*" udp dport 67 update @dhcp_rate {{ iifname limit rate over {DHCP_RATE}/second burst {DHCP_BURST} packets }} drop
    }}
}}
"#,
        veth = VETH_PREFIX,
        system = SYSTEM_VETH_PREFIX,
    );
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("nft: no stdin"))?
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The name of a bridge's nftables tables: `ampule_` and the bridge's name, each byte that
/// nft would not take in a name made `_`. (Before, one pair named `ampule` served the one
/// bridge; it is removed when a port prepares its bridge.)
pub fn table_name(bridge: &str) -> String {
    let safe: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("ampule_{safe}")
}

/// Every host-side veth of Ampule starts with this (this kernel's nftables cannot match the
/// bridge by name in the bridge family, so sibling isolation matches the ports).
pub const VETH_PREFIX: &str = "amp";

/// System containers' veths start with this (`amps` and random hex; application
/// containers' are `amp` and the lease's index in hex, never an `s`).
pub const SYSTEM_VETH_PREFIX: &str = "amps";

/// DHCP requests a second (and burst) each system container may send.
const DHCP_RATE: u32 = 20;
const DHCP_BURST: u32 = 40;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_mac_is_local_and_follows_the_host_address() {
        assert_eq!(
            bridge_mac(Ipv4Addr::new(10, 213, 57, 1)),
            "02:00:0a:d5:39:01"
        );
    }

    #[test]
    fn each_bridge_has_tables_of_its_own() {
        assert_eq!(table_name("ampule0"), "ampule_ampule0");
        assert_eq!(table_name("amp-test.1"), "ampule_amp_test_1");
    }
}
