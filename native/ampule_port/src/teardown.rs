//! Taking a container apart, without trusting liblxc to answer: stopping it, killing its
//! monitor, removing its cgroups, its directory (never across a mount) and waiting for its
//! veth to go. Everything here blocks: call it from blocking threads.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lxc::Container;
use crate::untrusted::read_bounded;

/// Kills a container's init (and so its whole pid namespace) and waits until it stopped.
pub fn stop(lxcpath: &Path, name: &str) {
    if let Ok(c) = Container::open(name, lxcpath) {
        if c.is_running() {
            let _ = c.stop();
            c.wait("STOPPED", 10);
        }
    }
}

/// The start-up sweep's removal of a crashed instance's container.
pub fn remove_leftover(lxcpath: &Path, name: &str) {
    // A crashed port's monitor may no longer answer liblxc's commands (a call would block
    // forever), so leftovers are killed directly: the monitor's children (the container's
    // init, and with it its pid namespace), then the monitor.
    kill_monitor(lxcpath, name);
    let _ = remove_tree(&lxcpath.join(name));
    remove_cgroups(name, Duration::from_secs(2));
}

/// Kills a container without asking liblxc: its monitor's children (the init, and with it
/// the pid namespace), then the monitor.
pub fn kill_monitor(lxcpath: &Path, name: &str) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let title = format!("[lxc monitor] {} {name}", lxcpath.display());
    let Some((monitors, parents)) = monitors_titled(&title) else {
        return;
    };
    for m in monitors {
        for (&child, _) in parents.iter().filter(|(_, &pp)| pp == m) {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(m), Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{m}/stat")).exists()
            && fs::read_to_string(format!("/proc/{m}/stat"))
                .map(|s| !s.contains(") Z"))
                .unwrap_or(false)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The processes titled `title` (liblxc's monitors), and every process's parent.
fn monitors_titled(title: &str) -> Option<(Vec<i32>, HashMap<i32, i32>)> {
    let procs = fs::read_dir("/proc").ok()?;
    let mut parents = HashMap::new();
    let mut monitors = Vec::new();
    for e in procs.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A container's process can name itself anything, and make its command line as long
        // as its memory allows: only the host's root runs monitors, and a title is short.
        let host_root = e.metadata().is_ok_and(|m| m.uid() == 0);
        if host_root {
            let cmd = read_bounded(&e.path().join("cmdline"), 4096).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).trim_end_matches('\0') == title {
                monitors.push(pid);
            }
        }
        let stat = read_bounded(&e.path().join("stat"), 4096)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        // The parent pid is the second field after the parenthesised command name.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok())
        {
            parents.insert(pid, ppid);
        }
    }
    Some((monitors, parents))
}

/// liblxc's monitor leaves its own `lxc.monitor.NAME` cgroups behind on this kind of host
/// (and a crash leaves `lxc.payload.NAME`): remove both in every hierarchy, retrying while
/// the exiting monitor still sits in one (`EBUSY`), up to `limit`; what is left is logged.
pub fn remove_cgroups(name: &str, limit: Duration) {
    for cg in remove_cgroups_within(name, limit) {
        log::warn!(container = name; "cannot remove cgroup {}", cg.display());
    }
}

/// As [`remove_cgroups`], silently; returns the cgroups still there at `limit`. Under load
/// an exiting monitor can sit in its cgroup for seconds: a release retries longer behind
/// the answer rather than leave them (see `node/release.rs`).
pub fn remove_cgroups_within(name: &str, limit: Duration) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(entries) = fs::read_dir(root) {
        hierarchies.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let deadline = Instant::now() + limit;
    let mut left = Vec::new();
    for h in hierarchies {
        for prefix in ["lxc.monitor.", "lxc.payload."] {
            let cg = h.join(format!("{prefix}{name}"));
            while cg.exists() {
                match rmdir_cgroup(&cg) {
                    Ok(()) => break,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => {
                        left.push(cg.clone());
                        break;
                    }
                }
            }
        }
    }
    left
}

/// A cgroup's files are virtual: only its directories (children first) are removed.
fn rmdir_cgroup(p: &Path) -> io::Result<()> {
    for e in fs::read_dir(p)?.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            rmdir_cgroup(&e.path())?;
        }
    }
    match fs::remove_dir(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The kernel tears a network namespace down asynchronously; "nothing left" means the
/// veth is gone too, so wait for it (polling the link, with a deadline).
pub fn wait_link_gone(veth: &str, limit: Duration) {
    let p = Path::new("/sys/class/net").join(veth);
    let deadline = Instant::now() + limit;
    while p.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `rm -rf` that never crosses into another file system: if a bind mount were ever visible
/// here (the host's `/usr`!), it is left alone rather than emptied.
pub fn remove_tree(p: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_on_dev(p, meta.dev())
}

fn remove_on_dev(p: &Path, dev: u64) -> io::Result<()> {
    // liblxc's monitor may still be removing its own runtime files here: an entry that
    // vanished on the way is not an error.
    let gone = |e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    };
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) => return gone(e),
    };
    if meta.dev() != dev {
        return Err(io::Error::other(format!(
            "{} is another file system (a mount point): not removed",
            p.display()
        )));
    }
    if meta.is_dir() {
        let entries = match fs::read_dir(p) {
            Ok(e) => e,
            Err(e) => return gone(e),
        };
        for e in entries {
            match e {
                Ok(e) => remove_on_dev(&e.path(), dev)?,
                Err(e) => gone(e)?,
            }
        }
        fs::remove_dir(p).or_else(gone)
    } else {
        fs::remove_file(p).or_else(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_removes_files_and_links_but_not_link_targets() {
        let tmp = std::env::temp_dir().join(format!("ampule-rm-{}", std::process::id()));
        let keep = std::env::temp_dir().join(format!("ampule-keep-{}", std::process::id()));
        fs::create_dir_all(tmp.join("x/y")).unwrap();
        fs::create_dir_all(&keep).unwrap();
        fs::write(keep.join("f"), b"1").unwrap();
        std::os::unix::fs::symlink(&keep, tmp.join("x/link")).unwrap();
        fs::write(tmp.join("x/y/z"), b"1").unwrap();
        remove_tree(&tmp).unwrap();
        assert!(!tmp.exists());
        assert!(keep.join("f").exists());
        fs::remove_dir_all(&keep).unwrap();
        remove_tree(&tmp).unwrap();
    }
}
