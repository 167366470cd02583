//! Ampule's bridge and the addresses on it: the subnet, the bridge itself (made at start,
//! idempotently, with no forwarding and no NAT) and address leases that several port
//! instances can share without colliding.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

/// An IPv4 subnet such as `10.213.57.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s}: expected ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s}: bad address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("{s}: bad prefix"))?;
        if !(16..=28).contains(&prefix) {
            return Err(format!("{s}: prefix must be between /16 and /28"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Subnet {
    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    /// The `n`-th address of the subnet.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    /// The host's own address on the bridge: the first one.
    pub fn host(&self) -> Ipv4Addr {
        self.nth(1)
    }

    /// Host indices for application containers: everything but the network, host and
    /// broadcast addresses and the top quarter, which is the DHCP pool of system containers.
    pub fn static_range(&self) -> std::ops::Range<u32> {
        2..self.size() - self.size() / 4
    }

    /// The DHCP pool handed to dnsmasq for system containers.
    pub fn dhcp_range(&self) -> (Ipv4Addr, Ipv4Addr) {
        (
            self.nth(self.size() - self.size() / 4),
            self.nth(self.size() - 2),
        )
    }

    /// Whether the subnet overlaps `other`.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        let mask = u32::MAX << (32 - p);
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }
}

/// Subnets that Ampule must never take: LXC's and Docker's defaults.
pub fn reserved_subnets() -> [Subnet; 2] {
    [
        Subnet {
            network: Ipv4Addr::new(10, 0, 3, 0),
            prefix: 24,
        },
        Subnet {
            network: Ipv4Addr::new(172, 17, 0, 0),
            prefix: 16,
        },
    ]
}

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

/// Address leases as files under `STATE/leases/ADDRESS`, created exclusively, holding the
/// owning instance and container; a crashed instance's leases are swept at start.
pub struct Leases {
    dir: PathBuf,
    subnet: Subnet,
    instance: String,
}

/// A held address; released explicitly by [`Leases::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub index: u32,
}

impl Lease {
    /// The host-side veth name, from the whole address: unique on the machine because the
    /// address is, whichever bridge it is on (`amp` and 8 hex digits: 11 of the 15 bytes a
    /// name may have). From the index alone, two ports on different bridges collided.
    pub fn veth(&self) -> String {
        format!("{VETH_PREFIX}{:08x}", u32::from(self.address))
    }
}

impl Leases {
    pub fn new(state_dir: &Path, subnet: Subnet, instance: &str) -> io::Result<Leases> {
        let dir = state_dir.join("leases");
        fs::create_dir_all(&dir)?;
        Ok(Leases {
            dir,
            subnet,
            instance: instance.to_string(),
        })
    }

    /// Takes a free address, searching from a random point: an address freed a moment ago
    /// is rarely handed out again at once, so the host's neighbour cache (which may still
    /// hold the old container's MAC for it) is not asked to forget it first.
    pub fn acquire(&self, container: &str) -> io::Result<Option<Lease>> {
        use rand::Rng;
        let range = self.subnet.static_range();
        let len = range.end - range.start;
        let first = rand::thread_rng().gen_range(0..len);
        for offset in 0..len {
            let index = range.start + (first + offset) % len;
            let address = self.subnet.nth(index);
            let path = self.dir.join(address.to_string());
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    writeln!(f, "{} {}", self.instance, container)?;
                    return Ok(Some(Lease { address, index }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    pub fn release(&self, lease: &Lease) {
        let _ = fs::remove_file(self.dir.join(lease.address.to_string()));
    }

    /// Removes every lease whose owning instance is in `dead`; returns how many.
    /// A crashed instance's veth may outlive its container for a moment (the kernel tears
    /// network namespaces down asynchronously): the lease goes only once its veth has, or
    /// the next container on that address could not create its own. Then the address is
    /// given to `forget` (the host's neighbour entry, see [`forget_address`]), as a
    /// destroy does before it releases a lease.
    pub fn sweep(
        dir: &Path,
        subnet: &Subnet,
        dead: &dyn Fn(&str) -> bool,
        forget: &dyn Fn(Ipv4Addr),
    ) -> usize {
        let Ok(entries) = fs::read_dir(dir.join("leases")) else {
            return 0;
        };
        let mut n = 0;
        for e in entries.flatten() {
            let owner = fs::read_to_string(e.path()).unwrap_or_default();
            // A lease is created empty and written at once: an empty one that is not old is
            // being taken this instant by a live instance.
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 60);
            if owner.trim().is_empty() && fresh {
                continue;
            }
            let instance = owner.split_whitespace().next().unwrap_or("");
            if !dead(instance) {
                continue;
            }
            if let Ok(ip) = e.file_name().to_string_lossy().parse::<Ipv4Addr>() {
                let index = u32::from(ip).wrapping_sub(u32::from(subnet.network));
                let veth = Lease { address: ip, index }.veth();
                crate::container::wait_link_gone(&veth, std::time::Duration::from_secs(5));
                forget(ip);
            }
            if fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        n
    }
}

/// Before an address goes to another container, the host forgets the old one's MAC: the
/// next container on it has another, and connections must not go to a vanished veth. (A
/// neighbour entry confirmed just before its container vanished stays REACHABLE for up to
/// 45 s: the next container's node would get nothing, its boot timing out in `epmd`.)
pub fn forget_address(ip: Ipv4Addr, bridge: &str) {
    let _ = Command::new("ip")
        .args(["neigh", "del", &ip.to_string(), "dev", bridge])
        .stderr(Stdio::null())
        .status();
}

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

    #[test]
    fn parses_and_normalises_subnets() {
        let s: Subnet = "10.213.57.9/24".parse().unwrap();
        assert_eq!(s.to_string(), "10.213.57.0/24");
        assert_eq!(s.host(), Ipv4Addr::new(10, 213, 57, 1));
        assert_eq!(s.static_range(), 2..192);
        assert_eq!(
            s.dhcp_range(),
            (
                Ipv4Addr::new(10, 213, 57, 192),
                Ipv4Addr::new(10, 213, 57, 254)
            )
        );
        assert!("10.0.0.0".parse::<Subnet>().is_err());
        assert!("10.0.0.0/8".parse::<Subnet>().is_err());
    }

    #[test]
    fn default_subnet_avoids_lxc_and_docker() {
        let ours: Subnet = "10.213.57.0/24".parse().unwrap();
        for r in reserved_subnets() {
            assert!(!ours.overlaps(&r));
        }
        let lxc: Subnet = "10.0.3.0/24".parse().unwrap();
        assert!(lxc.overlaps(&reserved_subnets()[0]));
    }

    #[test]
    fn leases_are_exclusive_and_swept_by_owner() {
        let dir = std::env::temp_dir().join(format!("ampule-leases-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let subnet: Subnet = "10.213.57.0/28".parse().unwrap();
        let a = Leases::new(&dir, subnet, "aaaa").unwrap();
        let b = Leases::new(&dir, subnet, "bbbb").unwrap();
        let l1 = a.acquire("c1").unwrap().unwrap();
        let l2 = b.acquire("c2").unwrap().unwrap();
        assert_ne!(l1, l2);
        assert_eq!(l1.veth(), format!("amp{:08x}", u32::from(l1.address)));
        assert_eq!(
            Lease {
                address: Ipv4Addr::new(10, 213, 57, 75),
                index: 75
            }
            .veth(),
            "amp0ad5394b"
        );
        assert!(subnet.static_range().contains(&l1.index));
        let mut held = vec![l1.clone(), l2];
        while let Some(l) = a.acquire("more").unwrap() {
            held.push(l);
        }
        assert_eq!(held.len(), subnet.static_range().len());
        a.release(&l1);
        assert_eq!(b.acquire("again").unwrap(), Some(l1));
        let forgotten = std::cell::RefCell::new(Vec::new());
        let swept = Leases::sweep(&dir, &subnet, &|i| i == "aaaa", &|ip| {
            forgotten.borrow_mut().push(ip)
        });
        assert_eq!(swept, held.len() - 2);
        // Every swept address, and only those, is forgotten by the host.
        let mut expected: Vec<Ipv4Addr> = held[2..].iter().map(|l| l.address).collect();
        let mut got = forgotten.into_inner();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        fs::remove_dir_all(&dir).unwrap();
    }
}
