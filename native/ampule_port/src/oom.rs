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
//! OOM killer took its `erl`). On cgroup v2, which has no such notification,
//! `memory.events` is read at exit if the cgroup is still there; if liblxc has removed it
//! already (in the stock Debian VM it had, and the owner heard 137 instead of `oom`), an
//! inotify watch on that file, set beforehand, tells whether it changed: the kernel
//! changes it when the cgroup hits its limit (`max`, `oom`, `oom_kill`), not when it is
//! removed, so a change and a node killed by SIGKILL mean what v1's signal and a SIGKILL
//! mean.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::cgroup::Cgroups;
use crate::exits::Ended;

/// The init shell's status when its `erl` was killed by SIGKILL (128 + 9).
pub const KILLED: i32 = 137;

pub enum Watch {
    V1(EventFd),
    V2 {
        events: PathBuf,
        wd: WatchDescriptor,
    },
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
            Cgroups::V2 => {
                let events = PathBuf::from("/sys/fs/cgroup")
                    .join(format!("lxc.payload.{name}"))
                    .join("memory.events");
                let wd = with_changes(|c| {
                    c.inotify
                        .add_watch(&events, AddWatchFlags::IN_MODIFY)
                        .map_err(io::Error::from)
                })?;
                Ok(Watch::V2 { events, wd })
            }
        }
    }

    /// Whether the node that ended so was killed for want of memory.
    pub fn killed_by_oom(&self, ended: Ended) -> bool {
        if !matches!(ended, Ended::Exited(KILLED) | Ended::Signaled(9)) {
            return false;
        }
        match self {
            Watch::V1(efd) => efd.read().map(|n| n > 0).unwrap_or(false),
            Watch::V2 { events, wd } => match fs::read_to_string(events) {
                Ok(text) => oom_kills(&text) > 0,
                Err(_) => with_changes(|c| Ok(c.take(*wd))).unwrap_or(false),
            },
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Watch::V2 { wd, .. } = self {
            // The kernel removed the watch with the file; what is left is the record.
            let _ = with_changes(|c| Ok(c.take(*wd)));
        }
    }
}

/// The port's one inotify instance for every v2 container's `memory.events`: one per
/// container would meet `fs.inotify.max_user_instances` (128 on Debian) long before a
/// host runs out of room for containers.
struct Changes {
    inotify: Inotify,
    /// Watches whose file changed, as read from the instance so far.
    changed: HashSet<WatchDescriptor>,
}

impl Changes {
    /// Whether the file of `wd` changed (reading what the kernel queued), forgetting it.
    fn take(&mut self, wd: WatchDescriptor) -> bool {
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_MODIFY) {
                    self.changed.insert(e.wd);
                }
            }
        }
        self.changed.remove(&wd)
    }
}

fn with_changes<T>(f: impl FnOnce(&mut Changes) -> io::Result<T>) -> io::Result<T> {
    static CHANGES: OnceLock<Mutex<Option<Changes>>> = OnceLock::new();
    let mut guard = CHANGES
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let changes = match guard.as_mut() {
        Some(changes) => changes,
        None => guard.insert(Changes {
            inotify: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?,
            changed: HashSet::new(),
        }),
    };
    f(changes)
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

    /// What v2 relies on once liblxc has removed the cgroup: a change to the watched file
    /// is recorded, once, for its watch alone.
    #[test]
    fn changes_are_told_per_watch_and_once() {
        let dir = std::env::temp_dir().join(format!("ampule-oom-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs::write(&a, "0").unwrap();
        fs::write(&b, "0").unwrap();
        let watch = |p: &PathBuf| {
            with_changes(|c| {
                c.inotify
                    .add_watch(p, AddWatchFlags::IN_MODIFY)
                    .map_err(io::Error::from)
            })
            .unwrap()
        };
        let (wa, wb) = (watch(&a), watch(&b));
        fs::write(&a, "1").unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert!(with_changes(|c| Ok(c.take(wa))).unwrap());
        assert!(!with_changes(|c| Ok(c.take(wa))).unwrap());
        assert!(!with_changes(|c| Ok(c.take(wb))).unwrap());
    }

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
