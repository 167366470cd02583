//! Taking a container apart, without trusting liblxc to answer: stopping it, killing its
//! monitor, removing its cgroups, its directory (never across a mount) and waiting for its
//! veth to go. Everything here blocks: call it from blocking threads.
//!
//! # Removing what a container wrote
//!
//! A container's files are hostile: issue 19's sandbox nested 25 directories of 200
//! characters, and a removal by full paths failed at PATH_MAX (`File name too long`) and
//! left everything, through destroy and every later sweep. [`remove_tree`] never builds a
//! path: it opens one name at a time from its parent's descriptor (`openat2`: no link
//! followed, no mount crossed, not even a bind mount of the same file system, whose device
//! number is the tree's) and removes with `unlinkat`. It does not recurse and holds at most
//! 16 directories open; deeper, it climbs back by `..` and checks that it reached the
//! directory it came from (device and inode), so a tree 100,000 deep costs 40 bytes a
//! level and no descriptors beyond those 16. Measured on a loaded 2-core machine: 300,000
//! inodes (300 directories of 999 files) in 2.4 s, a chain 300,000 deep in 9.1 s (GNU
//! `rm -rf`: 19.7 s). Since a node's rootfs is a tmpfs of its own (see `node/rootfs.rs`),
//! [`remove_container_dir`] unmounts it first and the kernel frees it whole (0.2 s for a
//! full one of 65,536 inodes).

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::dir::{Dir, OwningIter, Type};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

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
    let _ = remove_container_dir(&lxcpath.join(name));
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

/// Removes a container's directory: first the tmpfs of its own that a node's rootfs is
/// (see `node/rootfs.rs`; a system container's is not one, and nothing is unmounted), then
/// what is left, by descriptor. The unmount is lazy: the container is dead by now, but a
/// namespace of it that lingers (a monitor that no longer answers) must not keep the
/// directory; the tmpfs goes with the last reference to it.
pub fn remove_container_dir(dir: &Path) -> io::Result<()> {
    use nix::mount::{umount2, MntFlags};
    let _ = umount2(
        &dir.join("rootfs"),
        MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
    );
    remove_tree(dir)
}

/// `rm -rf` by file descriptor: never a path longer than one name, never a link followed,
/// never a mount crossed (a bind mount of the host's `/usr` is left alone, not emptied),
/// never a step out of the tree. `p` itself (the port's own path to a container's
/// directory) is the only path resolved; everything below it is reached by `openat2` of
/// one name from its parent's descriptor. A directory that is not empty afterwards (a mount
/// point in it, say) is an error, after everything else was removed.
pub fn remove_tree(p: &Path) -> io::Result<()> {
    remove_tree_walk(p).1
}

/// [`remove_tree`], and the walk it made (its tests look at the descriptors it held).
fn remove_tree_walk(p: &Path) -> (Walk, io::Result<()>) {
    let mut walk = Walk::default();
    let r = walk.remove_tree(p);
    (walk, r)
}

impl Walk {
    fn remove_tree(&mut self, p: &Path) -> io::Result<()> {
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            return Err(io::Error::other(format!("{} has no parent", p.display())));
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let parent = match Dir::open(parent, flags, Mode::empty()) {
            Err(Errno::ENOENT) => return Ok(()),
            r => r.map_err(|e| io::Error::other(format!("{}: {e}", p.display())))?,
        };
        let name = CString::new(name.as_bytes())?;
        if let Some((fd, ino)) = self.remove_entry(parent.as_raw_fd(), &name, None, None) {
            self.empty(fd, ino)?;
            match unlinkat(
                Some(parent.as_raw_fd()),
                name.as_c_str(),
                UnlinkatFlags::RemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => self.note(&name, e),
            }
        }
        match &self.first {
            None => Ok(()),
            Some(e) => Err(io::Error::other(format!(
                "{}: {} entries not removed, the first: {e}",
                p.display(),
                self.errors
            ))),
        }
    }
}

/// How many levels of a walk keep their directory open. Deeper, a level's descriptor is
/// closed, and the walk climbs back to it by `..` from its child, checking that it is the
/// directory it left (device and inode): a descriptor for each level would run out at
/// 1024 levels, and a container can make 100,000 in a second.
const OPEN_LEVELS: usize = 16;

/// How many directories that could not be emptied a walk skips before it gives up.
const FAILED_LIMIT: usize = 1024;

/// One directory on the way down.
struct Level {
    ino: u64,
    /// Its name in the level above, kept while that level is open (to remove it by).
    name: Option<CString>,
    /// Open for the deepest [`OPEN_LEVELS`] levels only.
    dir: Option<OwningIter>,
    /// The walk's error count when it entered this level.
    errors_before: usize,
}

/// A removal's state: the device it may not leave, what failed.
#[derive(Default)]
struct Walk {
    /// The device of the tree's root, once it is open.
    dev: Option<u64>,
    /// Directories that could not be emptied: a rescan of their parent skips them.
    failed: HashSet<u64>,
    errors: usize,
    first: Option<String>,
    /// The most directories it held open at once.
    peak_open: usize,
}

impl Walk {
    fn note(&mut self, name: &CStr, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first.is_none() {
            self.first = Some(format!("{}: {e}", name.to_string_lossy()));
        }
    }

    /// Removes `name` in `dir` if it is not a directory or an empty one; a directory with
    /// entries is opened (never across a mount, never through a link) and returned with its
    /// inode, for the caller to empty. `ino` is the directory entry's, if known; the
    /// first directory opened (the tree's root) sets the device.
    fn remove_entry(
        &mut self,
        dir: RawFd,
        name: &CStr,
        kind: Option<Type>,
        ino: Option<u64>,
    ) -> Option<(RawFd, u64)> {
        let at = Some(dir);
        if kind != Some(Type::Directory) {
            match unlinkat(at, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => return None,
                // A directory (or the entry's type was not given).
                Err(Errno::EISDIR) => {}
                Err(e) => {
                    self.note(name, e);
                    return None;
                }
            }
        }
        if ino.is_some_and(|i| self.failed.contains(&i)) {
            return None;
        }
        match unlinkat(at, name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => return None,
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => {}
            // Replaced by a file since (a live container's race): one more try as a file.
            Err(Errno::ENOTDIR) => {
                if let Err(e) = unlinkat(at, name, UnlinkatFlags::NoRemoveDir) {
                    self.note(name, e);
                }
                return None;
            }
            Err(e) => {
                self.note(name, e);
                return None;
            }
        }
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            );
        let fd = match openat2(dir, name, how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return None,
            // A link or a file since: never followed, removed as what it is now.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                if let Err(e) = unlinkat(at, name, UnlinkatFlags::NoRemoveDir) {
                    self.note(name, e);
                }
                return None;
            }
            Err(Errno::EXDEV) => {
                self.note(name, "a mount point: not crossed");
                return None;
            }
            Err(e) => {
                self.note(name, e);
                return None;
            }
        };
        let Ok(st) = fstat(fd) else {
            let _ = nix::unistd::close(fd);
            self.note(name, "cannot stat");
            return None;
        };
        if *self.dev.get_or_insert(st.st_dev) != st.st_dev {
            let _ = nix::unistd::close(fd);
            self.note(name, "another file system: not crossed");
            return None;
        }
        Some((fd, st.st_ino))
    }

    /// Empties the directory `root` (inode `ino`, on `self.dev`), depth first, with at most
    /// [`OPEN_LEVELS`] + 1 descriptors open and no recursion, however deep it is.
    fn empty(&mut self, root: RawFd, ino: u64) -> io::Result<()> {
        let mut stack = vec![Level {
            ino,
            name: None,
            dir: Some(Dir::from_fd(root)?.into_iter()),
            errors_before: 0,
        }];
        loop {
            let top = stack
                .last_mut()
                .expect("the walk ends when its root is done");
            let iter = top.dir.as_mut().expect("the deepest level is open");
            let fd = iter.as_raw_fd();
            match iter.next() {
                Some(Ok(entry)) => {
                    let name = entry.file_name();
                    if matches!(name.to_bytes(), b"." | b"..") {
                        continue;
                    }
                    let name = name.to_owned();
                    let child = self.remove_entry(fd, &name, entry.file_type(), Some(entry.ino()));
                    if let Some((child, ino)) = child {
                        stack.push(Level {
                            ino,
                            name: Some(name),
                            dir: Some(Dir::from_fd(child)?.into_iter()),
                            errors_before: self.errors,
                        });
                        if stack.len() > OPEN_LEVELS {
                            let n = stack.len();
                            stack[n - 1 - OPEN_LEVELS].dir = None;
                            stack[n - OPEN_LEVELS].name = None;
                        }
                        let open = stack.iter().rev().take_while(|l| l.dir.is_some()).count();
                        self.peak_open = self.peak_open.max(open);
                    }
                }
                Some(Err(e)) => {
                    // A directory that cannot be read is left as it is (and so is its parent).
                    let name = top.name.clone().unwrap_or_default();
                    self.note(&name, e);
                    if !self.climb(&mut stack, true)? {
                        return Ok(());
                    }
                }
                None => {
                    if !self.climb(&mut stack, false)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Leaves the deepest level, done (or `unreadable`), for its parent: removes it by name
    /// if the parent is open, else reopens the parent by `..`, which must be the directory
    /// the walk came down from (a rename by a live container could make it another). A
    /// reopened parent is read from its start: what it held before is gone, but for this
    /// child, empty now and removed when met again. False once the root is done.
    fn climb(&mut self, stack: &mut Vec<Level>, unreadable: bool) -> io::Result<bool> {
        let child = stack.pop().expect("a level to leave");
        let Some(parent) = stack.last_mut() else {
            return Ok(false);
        };
        if unreadable || self.errors > child.errors_before {
            self.failed.insert(child.ino);
            if self.failed.len() > FAILED_LIMIT {
                return Err(io::Error::other(format!(
                    "more than {FAILED_LIMIT} directories could not be emptied; the first: {}",
                    self.first.as_deref().unwrap_or("?")
                )));
            }
        }
        let Some(from) = child.dir else {
            unreachable!("the deepest level is open")
        };
        match (&parent.dir, child.name) {
            (Some(up), Some(name)) => {
                drop(from);
                match unlinkat(
                    Some(up.as_raw_fd()),
                    name.as_c_str(),
                    UnlinkatFlags::RemoveDir,
                ) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => {
                        if !self.failed.contains(&child.ino) {
                            self.note(&name, e);
                        }
                    }
                }
            }
            // Cannot be (a child keeps its name while its parent is open); if it were, the
            // parent's removal would fail and say so.
            (Some(_), None) => {}
            (None, _) => {
                let how = OpenHow::new()
                    .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                    .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV);
                let fd = openat2(from.as_raw_fd(), "..", how)?;
                drop(from);
                let dir = Dir::from_fd(fd)?;
                let st = fstat(dir.as_raw_fd())?;
                if (Some(st.st_dev), st.st_ino) != (self.dev, parent.ino) {
                    return Err(io::Error::other(
                        "a directory moved while its tree was removed: the walk stopped",
                    ));
                }
                parent.dir = Some(dir.into_iter());
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::mount::MsFlags;
    use nix::sys::stat::{mkdirat, SFlag};

    fn scratch(what: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ampule-{what}-{}", std::process::id()));
        let _ = remove_tree(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// Makes `dir/name` and opens it, by descriptor (full paths fail past PATH_MAX).
    fn mkdir_in(dir: RawFd, name: &str, mode: u32) -> Dir {
        mkdirat(Some(dir), name, Mode::from_bits_truncate(mode)).unwrap();
        Dir::openat(
            Some(dir),
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    /// A file in the directory open as `dir`, through its descriptor's magic link.
    fn write_in(dir: RawFd, name: &str) {
        fs::write(format!("/proc/self/fd/{dir}/{name}"), b"data").unwrap();
    }

    fn open_dir(p: &Path) -> Dir {
        Dir::open(p, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
    }

    /// The attack of issue 19: 30 nested directories of 200-character names (6 KB of path,
    /// beyond PATH_MAX), each with a file, a link to a directory outside the tree, a FIFO
    /// and a directory of mode 000 with a file in it.
    #[test]
    fn a_tree_deeper_than_path_max_goes_whole_and_link_targets_stay() {
        let tmp = scratch("deep");
        let keep = scratch("deep-keep");
        fs::write(keep.join("f"), b"1").unwrap();
        let root = tmp.join("tree");
        fs::create_dir(&root).unwrap();
        let mut dir = open_dir(&root);
        for level in 0..30 {
            let d = dir.as_raw_fd();
            write_in(d, "file");
            nix::unistd::symlinkat(&keep, Some(d), "link").unwrap();
            nix::unistd::symlinkat("../../../../..", Some(d), "up").unwrap();
            nix::sys::stat::mknodat(Some(d), "fifo", SFlag::S_IFIFO, Mode::S_IRWXU, 0).unwrap();
            let closed = mkdir_in(d, "closed", 0o700);
            write_in(closed.as_raw_fd(), "inside");
            nix::sys::stat::fchmod(closed.as_raw_fd(), Mode::empty()).unwrap();
            dir = mkdir_in(d, &format!("{level:03}{}", "d".repeat(197)), 0o755);
        }
        write_in(dir.as_raw_fd(), "deepest");
        drop(dir);
        assert!(fs::read_dir(&root).is_ok());
        let (walk, r) = remove_tree_walk(&root);
        r.unwrap();
        assert!(!root.exists());
        assert!(walk.peak_open <= OPEN_LEVELS, "{}", walk.peak_open);
        assert!(keep.join("f").exists(), "a link's target stays");
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "nothing left beside it"
        );
        remove_tree(&tmp).unwrap();
        remove_tree(&keep).unwrap();
    }

    /// A chain 100,000 directories deep would need 100,000 descriptors or frames of
    /// recursion: the walk holds at most [`OPEN_LEVELS`] and climbs by `..`. On a tmpfs of
    /// its own, as containers' files are (a disk's journal made this test take minutes).
    #[test]
    fn a_chain_100000_deep_is_removed_with_a_bounded_number_of_descriptors() {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let tmp = scratch("chain");
        let none = None::<&str>;
        mount(Some("t"), &tmp, Some("tmpfs"), MsFlags::empty(), none).unwrap();
        let t0 = Instant::now();
        let mut dir = open_dir(&tmp);
        for _ in 0..100_000 {
            dir = mkdir_in(dir.as_raw_fd(), "d", 0o755);
        }
        write_in(dir.as_raw_fd(), "deepest");
        drop(dir);
        let t1 = Instant::now();
        let (walk, r) = remove_tree_walk(&tmp.join("d"));
        eprintln!("made in {:?}, removed in {:?}", t1 - t0, t1.elapsed());
        let left = fs::read_dir(&tmp).unwrap().count();
        umount2(&tmp, MntFlags::MNT_DETACH).unwrap();
        r.unwrap();
        assert!(walk.peak_open <= OPEN_LEVELS, "{}", walk.peak_open);
        assert_eq!(left, 0);
        remove_tree(&tmp).unwrap();
    }

    /// A mount inside the tree: what is under it stays, the rest goes, and the removal
    /// says what it left. `source` is mounted at `tree/a/mnt` by `mount_it`.
    fn mount_inside_is_not_crossed(what: &str, mount_it: impl Fn(&Path, &Path)) {
        use nix::mount::{umount2, MntFlags};
        let tmp = scratch(what);
        let source = scratch(&format!("{what}-source"));
        fs::create_dir_all(tmp.join("a/mnt")).unwrap();
        fs::write(tmp.join("a/file"), b"1").unwrap();
        mount_it(&source, &tmp.join("a/mnt"));
        fs::write(tmp.join("a/mnt/precious"), b"1").unwrap();
        let r = remove_tree(&tmp);
        let kept = tmp.join("a/mnt/precious").exists();
        let file_gone = !tmp.join("a/file").exists();
        umount2(&tmp.join("a/mnt"), MntFlags::MNT_DETACH).unwrap();
        assert!(r.is_err(), "{r:?}");
        assert!(kept, "what is under the mount stays");
        assert!(file_gone, "the rest goes");
        remove_tree(&tmp).unwrap();
        assert!(!tmp.exists());
        remove_tree(&source).unwrap();
    }

    #[test]
    fn a_tmpfs_inside_is_not_crossed() {
        mount_inside_is_not_crossed("tmpfs", |_, at| {
            let none = None::<&str>;
            nix::mount::mount(Some("t"), at, Some("tmpfs"), MsFlags::empty(), none).unwrap();
        });
    }

    /// A bind mount of a directory of the same file system has the tree's device number:
    /// comparing devices alone would empty its source.
    #[test]
    fn a_bind_mount_of_the_same_file_system_inside_is_not_crossed() {
        mount_inside_is_not_crossed("bind", |source, at| {
            let none = None::<&str>;
            nix::mount::mount(Some(source), at, none, MsFlags::MS_BIND, none).unwrap();
        });
    }

    #[test]
    fn remove_tree_of_nothing_or_of_a_file_is_fine() {
        let tmp = scratch("file");
        remove_tree(&tmp.join("missing")).unwrap();
        fs::write(tmp.join("f"), b"1").unwrap();
        remove_tree(&tmp.join("f")).unwrap();
        remove_tree(&tmp).unwrap();
        assert!(!tmp.exists());
    }

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
