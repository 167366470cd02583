//! The port's own place in the cgroup hierarchies. liblxc's daemonized `start()` moves the
//! *calling* process into the new container's `lxc.monitor.NAME` cgroup; left there, the
//! port would pin that cgroup (it could never be removed) and drift from one container's
//! monitor cgroup to the next. So the port records where it started and returns there after
//! every start. Which hierarchy the host has ([`Cgroups`]) decides where limits go.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Which cgroup hierarchy limits go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    V1,
    V2,
}

impl Cgroups {
    /// The hierarchy mounted under `/sys/fs/cgroup`, if any.
    pub fn detect() -> Option<Cgroups> {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            Some(Cgroups::V2)
        } else if Path::new("/sys/fs/cgroup/memory").exists() {
            Some(Cgroups::V1)
        } else {
            None
        }
    }
}

static HOME: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// `cgroup.procs` files of the cgroups this process is in now, one per hierarchy.
fn current() -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let membership = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    parse(&mounts, &membership)
}

/// Joins `/proc/self/cgroup` (`ID:controllers:path`) with the cgroup mounts of
/// `/proc/self/mountinfo` (mount point in field 5, super options after the fs type).
pub fn parse(mountinfo: &str, membership: &str) -> Vec<PathBuf> {
    let mounts: Vec<(String, String, Vec<String>)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?.to_string();
            let mut r = right.split_whitespace();
            let fstype = r.next()?.to_string();
            let opts = r
                .nth(1)
                .unwrap_or("")
                .split(',')
                .map(str::to_string)
                .collect();
            (fstype == "cgroup" || fstype == "cgroup2").then_some((fstype, point, opts))
        })
        .collect();
    membership
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let (_, point, _) = mounts.iter().find(|(fstype, _, opts)| {
                if controllers.is_empty() {
                    fstype == "cgroup2"
                } else {
                    fstype == "cgroup"
                        && controllers.split(',').all(|c| opts.iter().any(|o| o == c))
                }
            })?;
            Some(
                PathBuf::from(point)
                    .join(path.trim_start_matches('/'))
                    .join("cgroup.procs"),
            )
        })
        .collect()
}

static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs one liblxc `start()`: one at a time, because each moves the whole port process
/// into that container's monitor cgroup until [`return_home`]; two interleaved would leave
/// the port (and what it forks next) in the wrong one. A start takes ~35 ms.
pub fn starting<T>(start: impl FnOnce() -> T) -> T {
    let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    let r = start();
    return_home();
    r
}

/// Records where the port runs; call once at start, before any container starts.
pub fn remember_home() {
    let _ = HOME.set(current());
}

/// Moves the whole port process back to where [`remember_home`] found it.
pub fn return_home() {
    let pid = std::process::id().to_string();
    for procs in HOME.get().map(Vec::as_slice).unwrap_or(&[]) {
        if let Err(e) = fs::write(procs, &pid) {
            log::debug!("cannot return to {}: {e}", procs.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_membership_with_mounts() {
        let mountinfo = "\
35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
36 25 0:31 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
37 25 0:32 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
38 25 0:33 / /proc rw - proc proc rw";
        let membership = "4:memory:/a/b\n9:name=systemd:/\n0::/\n";
        assert_eq!(
            parse(mountinfo, membership),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/a/b/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/systemd/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/unified/cgroup.procs"),
            ]
        );
    }
}
