//! Code paths a container's mapped root cannot reach. liblxc bind-mounts a container's code
//! paths from inside its user namespace, as the container's root, an unprivileged uid of
//! the host: a path below a directory that others may not traverse (a project cloned in
//! `/root`, mode 0700, or in a 0750 home) failed with "Permission denied" and the container
//! did not start. The port is root: it bind-mounts such a path once per instance under
//! `STATE/code/INSTANCE/`, which others may traverse, and the container mounts it from
//! there. What is mounted is still only the directory asked for, read-only in the
//! container; the staging mounts go when the port exits (or with its start-up sweep, if it
//! crashed), and are never removed but by unmounting: a bind mount of a directory on the
//! same file system has the same device number, so a recursive removal could not tell it
//! from a directory of the port's own.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// This instance's staged code paths.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    staged: Mutex<HashMap<PathBuf, PathBuf>>,
}

impl Staging {
    pub fn new(state_dir: &Path, instance: &str) -> Staging {
        Staging {
            dir: state_dir.join("code").join(instance),
            staged: Mutex::new(HashMap::new()),
        }
    }

    /// Where a container should mount `path` from: the path itself if others may
    /// traverse every directory above it, else its staged bind mount (made now if new).
    pub fn source_for(&self, path: &Path) -> io::Result<PathBuf> {
        if traversable_by_others(path) {
            return Ok(path.to_path_buf());
        }
        let mut staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = staged.get(path) {
            return Ok(s.clone());
        }
        if !self.dir.exists() {
            fs::create_dir_all(&self.dir)?;
            for d in [self.dir.parent().unwrap_or(&self.dir), &self.dir] {
                fs::set_permissions(d, fs::Permissions::from_mode(0o711))?;
            }
        }
        let target = self.dir.join(staged.len().to_string());
        fs::create_dir(&target)?;
        if let Err(e) = mount(
            Some(path),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            let _ = fs::remove_dir(&target);
            return Err(e.into());
        }
        staged.insert(path.to_path_buf(), target.clone());
        Ok(target)
    }

    /// Unmounts every staged path and removes the mount points (at the port's exit).
    pub fn release(&self) {
        let mut staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        staged.clear();
        unstage(&self.dir);
    }
}

/// Unmounts and removes what `dir` (one instance's staging directory) holds, never
/// recursively: a mount point that does not come off stays, with what is under it.
fn unstage(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let _ = umount2(&e.path(), MntFlags::MNT_DETACH);
        if let Err(err) = fs::remove_dir(e.path()) {
            log::warn!(
                "cannot remove the staged code path {}: {err}",
                e.path().display()
            );
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The start-up sweep's part: the staged code paths of instances that are dead.
pub fn sweep(state_dir: &Path, dead: &dyn Fn(&str) -> bool) {
    for e in fs::read_dir(state_dir.join("code"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if dead(&e.file_name().to_string_lossy()) {
            unstage(&e.path());
        }
    }
}

/// Whether every directory above `path` lets others through (mode `o+x`), as the
/// container's mapped root needs to reach it.
pub fn traversable_by_others(path: &Path) -> bool {
    path.ancestors().skip(1).all(|d| {
        fs::metadata(d)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_below_a_private_directory_is_not_traversable() {
        let tmp = std::env::temp_dir().join(format!("ampule-stage-{}", std::process::id()));
        let code = tmp.join("private/project/ebin");
        fs::create_dir_all(&code).unwrap();
        assert!(traversable_by_others(&code));
        fs::set_permissions(tmp.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!traversable_by_others(&code));
        // The directory itself may be private: what matters is the way to it.
        assert!(traversable_by_others(&tmp.join("private")));
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn staging_mounts_once_and_unmounts_without_touching_the_source() {
        let tmp = std::env::temp_dir().join(format!("ampule-stage-m-{}", std::process::id()));
        let code = tmp.join("private/ebin");
        fs::create_dir_all(&code).unwrap();
        fs::write(code.join("m.beam"), b"beam").unwrap();
        fs::set_permissions(tmp.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
        let staging = Staging::new(&tmp.join("state"), "inst");
        let s = staging.source_for(&code).unwrap();
        assert_eq!(staging.source_for(&code).unwrap(), s);
        assert_eq!(fs::read(s.join("m.beam")).unwrap(), b"beam");
        assert!(traversable_by_others(&s));
        staging.release();
        assert!(!s.exists());
        assert_eq!(fs::read(code.join("m.beam")).unwrap(), b"beam");
        fs::remove_dir_all(&tmp).unwrap();
    }
}
