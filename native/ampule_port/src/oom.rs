//! Telling an out-of-memory kill from any other death of a container's node, so that the
//! owner hears `oom` rather than a bare exit status.
//!
//! The obvious way, reading the memory cgroup's `oom_kill` counter when init exits, races
//! with liblxc's monitor, which removes the cgroup as soon as it has reaped init. So the
//! port asks the kernel beforehand: on cgroup v1 an eventfd registered on
//! `memory.oom_control` is signalled when the cgroup hits its limit, *before* the OOM
//! killer picks a victim, so it is always set by the time init has exited. The kernel also
//! signals it when the cgroup is removed, which is why an OOM needs both the signal and a
//! node killed by SIGKILL (the init killed, or the init shell exiting with 137 when the
//! OOM killer took its `erl`). On cgroup v2, which has no
//! such notification, `memory.events` is read at exit, if the cgroup is still there.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::cgroup::Cgroups;
use crate::exits::Ended;

/// The init shell's status when its `erl` was killed by SIGKILL (128 + 9).
pub const KILLED: i32 = 137;

pub enum Watch {
    V1(EventFd),
    V2(PathBuf),
}

impl Watch {
    /// Starts watching the memory cgroup of the running container `name`.
    pub fn register(cgroups: Cgroups, name: &str) -> io::Result<Watch> {
        match cgroups {
            Cgroups::V1 => {
                let dir =
                    PathBuf::from("/sys/fs/cgroup/memory").join(format!("lxc.payload.{name}"));
                let control = File::open(dir.join("memory.oom_control"))?;
                let efd = EventFd::from_value_and_flags(
                    0,
                    EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
                )?;
                fs::write(
                    dir.join("cgroup.event_control"),
                    format!("{} {}", efd.as_fd().as_raw_fd(), control.as_raw_fd()),
                )?;
                Ok(Watch::V1(efd))
            }
            Cgroups::V2 => Ok(Watch::V2(
                PathBuf::from("/sys/fs/cgroup")
                    .join(format!("lxc.payload.{name}"))
                    .join("memory.events"),
            )),
        }
    }

    /// Whether the node that ended so was killed for want of memory.
    pub fn killed_by_oom(&self, ended: Ended) -> bool {
        if !matches!(ended, Ended::Exited(KILLED) | Ended::Signaled(9)) {
            return false;
        }
        match self {
            Watch::V1(efd) => efd.read().map(|n| n > 0).unwrap_or(false),
            Watch::V2(events) => fs::read_to_string(events)
                .map(|t| oom_kills(&t) > 0)
                .unwrap_or(false),
        }
    }
}

/// The `oom_kill` count of a `memory.events` (v2) or `memory.oom_control` (v1) file.
pub fn oom_kills(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counts_of_both_cgroup_versions() {
        assert_eq!(
            oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            3
        );
        assert_eq!(
            oom_kills("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(oom_kills("oom_kill_disable 0\n"), 0);
    }
}
