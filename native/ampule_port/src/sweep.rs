//! The start-up sweep: what crashed port instances left behind. An instance whose lock
//! nobody holds is dead, and everything it owned goes: its containers (but persistent
//! system containers, which the next port adopts), the cgroups liblxc left for them, its
//! leases, staged code paths, agent sockets and the dnsmasq it started.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::host::Host;
use crate::instance::{live_instance, tombstone, OWNER_FILE, PERSISTENT};
use crate::leases::{self, Leases};
use crate::{dhcp, names, staging, teardown};

/// What the start-up sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub instances: usize,
    pub containers: Vec<String>,
    pub leases: usize,
}

/// Instances whose lock nobody holds are dead: their containers, leases and locks go.
pub fn run(host: &Host) -> Sweep {
    let (state_dir, me) = (host.state_dir.as_path(), host.instance.as_str());
    let lxcpaths = [host.lxcpath.as_path(), host.apps.as_path()];
    let dead = dead_instances(state_dir, me);
    let is_dead = |owner: &str| {
        owner != me && !owner.starts_with(PERSISTENT) && !live_instance(state_dir, owner)
    };
    let containers = leftover_containers(&lxcpaths, &is_dead);
    orphan_cgroups_of_the_dead(state_dir, &lxcpaths);
    staging::sweep(state_dir, &|id| id != me && !live_instance(state_dir, id));
    // Agent sockets of dead instances: their sandboxes are gone. The directory is the
    // client's to fill: removed by descriptor, as containers' files are.
    for e in fs::read_dir(state_dir.join("agents"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = e.file_name().to_string_lossy().into_owned();
        if id != me && !live_instance(state_dir, &id) {
            let _ = teardown::remove_tree(&e.path());
        }
    }
    let leases = Leases::sweep(state_dir, &host.subnet, &is_dead, &|ip| {
        leases::forget_address(ip, &host.bridge)
    });
    dhcp::sweep(state_dir, &|owner| {
        !live_instance(state_dir, owner) && owner != me
    });
    Sweep {
        instances: dead.len(),
        containers,
        leases,
    }
}

/// Takes the locks of dead instances (but `me`) and leaves a tombstone for each.
fn dead_instances(state_dir: &Path, me: &str) -> Vec<String> {
    let mut dead = Vec::new();
    if let Ok(entries) = fs::read_dir(state_dir.join("instances")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".lock") else {
                continue;
            };
            if id == me {
                continue;
            }
            let Ok(f) = fs::OpenOptions::new().write(true).open(e.path()) else {
                continue;
            };
            if Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok() {
                dead.push(id.to_string());
                // A tombstone: the cgroups of its containers are named after it, in
                // hierarchies every state directory on the machine shares, and only this
                // directory's dead instances are this sweep's to remove.
                let _ = fs::rename(e.path(), tombstone(state_dir, id));
            }
        }
    }
    dead
}

/// Removes the containers whose owner `is_dead`; returns their names.
fn leftover_containers(lxcpaths: &[&Path], is_dead: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut containers = Vec::new();
    for &lxcpath in lxcpaths {
        let Ok(entries) = fs::read_dir(lxcpath) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let owner = match fs::read_to_string(e.path().join(OWNER_FILE)) {
                Ok(o) => o,
                // Owner files are written right after the directory is made: an ownerless
                // directory is either being made this instant or a crash's leftover.
                Err(_) if recently_made(&e.path()) => continue,
                Err(_) => String::new(),
            };
            if is_dead(owner.trim()) {
                teardown::remove_leftover(lxcpath, &name);
                containers.push(name);
            }
        }
    }
    containers
}

/// Cgroups liblxc left for containers whose directory is already gone (a crash between
/// the two removals): attributable by the generated names, `a-`, `x-` or `s-INSTANCE-N`.
/// Cgroups are shared by every state directory on the machine (other checkouts, hosts
/// in network namespaces): only instances this directory saw die count. A tombstone goes
/// once nothing of its instance is left.
fn orphan_cgroups_of_the_dead(state_dir: &Path, lxcpaths: &[&Path]) {
    let ours_dead = |owner: &str| !owner.is_empty() && tombstone(state_dir, owner).exists();
    for cg in orphan_cgroups(lxcpaths) {
        if names::instance_of(&cg).is_some_and(ours_dead) {
            teardown::remove_cgroups(&cg, Duration::from_millis(200));
        }
    }
    let still: HashSet<String> = orphan_cgroups(lxcpaths)
        .iter()
        .filter_map(|cg| names::instance_of(cg).map(String::from))
        .collect();
    for e in fs::read_dir(state_dir.join("instances"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".dead") {
            if !still.contains(id) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Container names that have `lxc.monitor.`/`lxc.payload.` cgroups but no directory.
fn orphan_cgroups(lxcpaths: &[&Path]) -> Vec<String> {
    let mut names = BTreeSet::new();
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    for h in hierarchies.flatten() {
        for e in fs::read_dir(h.path()).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = n
                .strip_prefix("lxc.monitor.")
                .or_else(|| n.strip_prefix("lxc.payload."));
            if let Some(name) = name {
                if !lxcpaths.iter().any(|p| p.join(name).exists()) {
                    names.insert(name.to_string());
                }
            }
        }
    }
    names.into_iter().collect()
}

fn recently_made(p: &Path) -> bool {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < Duration::from_secs(60))
}
