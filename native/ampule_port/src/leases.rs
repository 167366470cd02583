//! Address leases on Ampule's bridge: files under `STATE/leases/ADDRESS`, created
//! exclusively, so that several port instances share one subnet without colliding; a
//! crashed instance's leases are swept at start. Before an address is used again, the host
//! forgets the old container's MAC for it ([`forget_address`]).

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::network::VETH_PREFIX;
use crate::subnet::Subnet;

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
                crate::teardown::wait_link_gone(&veth, std::time::Duration::from_secs(5));
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
