//! What the host must offer before the port can make a container (root, liblxc, an id range
//! for user namespaces, cgroups), and the state directory this instance works in: its
//! lock, the idmap stand-ins, the seccomp profile, the application containers' tmpfs and
//! the agents directory. The start-up sweep is `sweep.rs`'s.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;

use crate::cgroup::Cgroups;
use crate::instance::{self, take_lock};
use crate::lxc;
use crate::network;
use crate::settings::Settings;
use crate::staging::Staging;
use crate::subnet::Subnet;

/// A prerequisite the host lacks; the message names the fix.
#[derive(Debug)]
pub struct Unready {
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for Unready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

fn unready(reason: &'static str, message: impl Into<String>) -> Unready {
    Unready {
        reason,
        message: message.into(),
    }
}

/// A range of host ids that container ids map onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// Root's first range in an `/etc/subuid`-style file.
pub fn parse_id_range(text: &str) -> Option<IdRange> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (user, start, count) = (f.next()?, f.next()?, f.next()?);
        if user != "root" && user != "0" {
            return None;
        }
        let start = start.parse().ok()?;
        let count: u32 = count.parse().ok()?;
        (count >= 65536).then_some(IdRange { start, count })
    })
}

/// Everything fixed for the life of this port instance.
#[derive(Debug)]
pub struct Host {
    pub bridge: String,
    pub subnet: Subnet,
    pub state_dir: PathBuf,
    /// Where system containers live (on disk: they may outlive the port).
    pub lxcpath: PathBuf,
    /// Where application containers live: a tmpfs of the port's own (see [`mount_apps`]).
    pub apps: PathBuf,
    pub instance: String,
    /// Where the client makes its sandboxes' agent sockets: `STATE/agents/INSTANCE`, owned
    /// by the client's user (see [`client_uid`]), mode 0711.
    pub agents: PathBuf,
    /// Code paths staged for containers' mapped roots (see `staging.rs`).
    pub code: Staging,
    pub uids: IdRange,
    pub gids: IdRange,
    pub cgroups: Cgroups,
    pub lxc_version: String,
    /// Ampule's seccomp profile for application containers (see [`write_seccomp_profile`]).
    pub seccomp_profile: PathBuf,
    /// Every node's limit of open files, soft and hard (see [`open_files`]).
    pub nofile: u64,
    /// Held for the life of the process: a live lock is how other instances know we run.
    _lock: Flock<fs::File>,
}

/// Where the port keeps unprivileged stand-ins for shadow's `newuidmap` and `newgidmap`.
///
/// liblxc writes a container's id maps with those two setuid tools whenever it finds them
/// on `PATH`, even when it runs as root and could write `/proc/PID/{u,g}id_map` itself:
/// two `sh -c newuidmap ...` round trips, ~5 ms of every start (measured: liblxc's
/// `start()` 12.8–15.8 → 8.3–9.9 ms). It skips them when the first ones on `PATH` lack the
/// privilege, so this directory, first on the port's `PATH`, holds links to `/bin/false`
/// under their names. What shadow's tools would enforce still holds: the maps are exactly
/// root's own range from `/etc/subuid` and `/etc/subgid` (see `id_range`), and liblxc
/// notes the stand-ins as a warning in each container's `lxc.log`.
pub fn idmap_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("idmap")
}

/// The port's `PATH`: [`idmap_dir`] first, then what the BEAM gave it, then the sbin
/// directories (the BEAM's environment may lack those, where ip, nft and dnsmasq live).
pub fn search_path(inherited: &str, state_dir: Option<&Path>) -> String {
    let mut dirs: Vec<String> = state_dir
        .map(|d| idmap_dir(d).display().to_string())
        .into_iter()
        .collect();
    dirs.extend(
        inherited
            .split(':')
            .filter(|d| !d.is_empty())
            .map(String::from),
    );
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(String::from));
    dirs.join(":")
}

/// Makes `dir` (and its parents) if need be and checks that it is root's alone: a real
/// directory (not a link), owned by the port's user, writable by no one else. What the
/// port keeps there is trusted by root processes (liblxc), so anything else is refused.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} must be a directory owned by the port's user (root) and writable by it only",
            dir.display()
        )));
    }
    Ok(())
}

/// Makes [`idmap_dir`]'s two links to `/bin/false` (idempotent, and safe against another
/// port instance doing the same at once). The directory comes first on a root process's
/// `PATH`, so it must be root's alone ([`private_dir`]).
fn prepare_idmap_dir(state_dir: &Path) -> io::Result<()> {
    let dir = idmap_dir(state_dir);
    private_dir(&dir)?;
    for tool in ["newuidmap", "newgidmap"] {
        let link = dir.join(tool);
        if fs::read_link(&link).is_ok_and(|t| t == Path::new("/bin/false")) {
            continue;
        }
        // Made aside and renamed into place: a rename replaces atomically, so two
        // instances starting together both succeed.
        let aside = dir.join(format!(".{tool}.{}", std::process::id()));
        let _ = fs::remove_file(&aside);
        std::os::unix::fs::symlink("/bin/false", &aside)?;
        fs::rename(&aside, &link)?;
    }
    Ok(())
}

/// Writes Ampule's seccomp profile ([`crate::seccomp::profile`]) to `STATE/seccomp/`, a
/// [`private_dir`] (liblxc reads the file as root, and it decides what every node may
/// do), under a name that follows its content; returns its path. Written aside and
/// renamed into place, so instances starting together, or a container starting while
/// another instance writes, always see a whole file.
pub fn write_seccomp_profile(state_dir: &Path) -> io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = state_dir.join("seccomp");
    private_dir(&dir)?;
    let text = crate::seccomp::profile();
    let path = dir.join(crate::seccomp::file_name(&text));
    if fs::read(&path).is_ok_and(|t| t == text.as_bytes()) {
        return Ok(path);
    }
    let aside = dir.join(format!(".profile.{}", std::process::id()));
    let _ = fs::remove_file(&aside);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&aside)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&aside, &path)?;
    Ok(path)
}

/// The limit of open files a node gets: as many as a stock BEAM's port table.
pub const NOFILE: u64 = 65_536;

/// Raises the port's own limit of open files to [`NOFILE`] (it holds two descriptors a
/// sandbox, and a systemd service's soft limit is 1,024) and returns the nodes' limit:
/// [`NOFILE`], or the port's hard limit if that is lower and cannot be raised (a root
/// without `CAP_SYS_RESOURCE`, as in some VMs): liblxc cannot give a container more.
pub fn open_files() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, mut hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return NOFILE;
    };
    if hard < NOFILE && setrlimit(Resource::RLIMIT_NOFILE, soft.min(NOFILE), NOFILE).is_ok() {
        hard = NOFILE;
    }
    let limit = NOFILE.min(hard);
    if soft < limit {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, limit, hard) {
            log::warn!("cannot raise the limit of open files from {soft} to {limit}: {e}");
        }
    }
    if limit < NOFILE {
        log::debug!("nodes get {limit} open files, not {NOFILE}: the port's hard limit");
    }
    limit
}

/// Checks the host, prepares the bridge and the state directory, and takes this instance's
/// lock. `sweep` runs as soon as the lock is held (see `sweep.rs`; it takes dead instances'
/// locks, never this one's), before this instance makes its agents directory.
pub fn prepare<S>(
    settings: &Settings,
    sweep: impl FnOnce(&Host) -> S,
) -> Result<(Host, S), Unready> {
    let checked = check(settings)?;
    let state_dir = settings.state_dir.clone();
    let (lxcpath, apps, instances) = (
        state_dir.join("lxc"),
        state_dir.join("apps"),
        state_dir.join("instances"),
    );
    let seccomp_profile = prepare_state_dir(&state_dir, &[&lxcpath, &apps, &instances])?;
    mount_apps(&state_dir, &apps);
    let (instance, lock) = take_lock(&instances).map_err(|e| {
        unready(
            "no_state_dir",
            format!("cannot lock in {}: {e}", instances.display()),
        )
    })?;
    let host = Host {
        bridge: settings.bridge.clone(),
        subnet: settings.subnet,
        agents: state_dir.join("agents").join(&instance),
        code: Staging::new(&state_dir, &instance),
        state_dir,
        lxcpath,
        apps,
        instance,
        uids: checked.uids,
        gids: checked.gids,
        cgroups: checked.cgroups,
        lxc_version: checked.lxc_version,
        seccomp_profile,
        nofile: open_files(),
        _lock: lock,
    };
    let swept = sweep(&host);
    prepare_agents_dir(&host.agents).map_err(|e| {
        unready(
            "no_state_dir",
            format!("cannot create {}: {e}", host.agents.display()),
        )
    })?;
    Ok((host, swept))
}

/// What [`check`] found.
struct Checked {
    lxc_version: String,
    uids: IdRange,
    gids: IdRange,
    cgroups: Cgroups,
}

/// The prerequisites: root, an id range, cgroups, and the bridge made ready.
fn check(settings: &Settings) -> Result<Checked, Unready> {
    if !nix::unistd::geteuid().is_root() {
        return Err(unready(
            "not_root",
            "ampule_port must run as root (it makes bridges, mounts and user namespaces): \
             run it through sudo, or set `config :ampule, sudo: true`",
        ));
    }
    let lxc_version = lxc::version();
    let uids = id_range("/etc/subuid")?;
    let gids = id_range("/etc/subgid")?;
    let cgroups = Cgroups::detect().ok_or_else(|| {
        unready(
            "no_cgroups",
            "no cgroup hierarchy under /sys/fs/cgroup: mount cgroup2 there",
        )
    })?;
    network::ensure_bridge(&settings.bridge, &settings.subnet).map_err(|e| {
        unready(
            "no_bridge",
            format!(
                "cannot prepare bridge {} ({e}): install iproute2 and nftables",
                settings.bridge
            ),
        )
    })?;
    Ok(Checked {
        lxc_version,
        uids,
        gids,
        cgroups,
    })
}

/// Makes the state directory's parts: the idmap stand-ins, the seccomp profile (its path
/// returned) and the directories `dirs`.
fn prepare_state_dir(state_dir: &Path, dirs: &[&PathBuf; 3]) -> Result<PathBuf, Unready> {
    prepare_idmap_dir(state_dir).map_err(|e| {
        unready(
            "no_state_dir",
            format!("cannot create {}: {e}", idmap_dir(state_dir).display()),
        )
    })?;
    let seccomp_profile = write_seccomp_profile(state_dir).map_err(|e| {
        unready(
            "no_state_dir",
            format!(
                "cannot write the seccomp profile under {}: {e}",
                state_dir.join("seccomp").display()
            ),
        )
    })?;
    for d in dirs {
        fs::create_dir_all(d).map_err(|e| {
            unready(
                "no_state_dir",
                format!("cannot create {}: {e}", d.display()),
            )
        })?;
    }
    // The rootfs of a user-namespaced container is reached through these directories by
    // mapped ids, which are "other" to them.
    for d in [state_dir, dirs[0], dirs[1]] {
        set_mode(d, 0o711);
    }
    Ok(seccomp_profile)
}

/// The user on the other end of the protocol: the one `sudo` ran the port for
/// (`SUDO_UID`), or the port's own. Its sandboxes' agent sockets are its to make.
pub fn client_uid() -> u32 {
    std::env::var("SUDO_UID")
        .ok()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| nix::unistd::geteuid().as_raw())
}

fn prepare_agents_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
        set_mode(parent, 0o711);
    }
    fs::create_dir(dir)?;
    // 0711: the container's mapped root must traverse it to bind-mount a socket from it;
    // nobody else can list it, and a socket is only for the uid the port gives it to.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711))?;
    let uid = client_uid();
    std::os::unix::fs::chown(dir, Some(uid), None)
}

/// Removes this instance's lock file, the last step of its shutdown (the lock itself is
/// held until the process exits).
pub fn release_lock(host: &Host) {
    let _ = fs::remove_file(instance::lock_file(&host.state_dir, &host.instance));
}

/// Removes this instance's agents directory (the sockets in it belong to containers that
/// are gone by now).
pub fn release_agents_dir(host: &Host) {
    let _ = crate::teardown::remove_tree(&host.agents);
}

/// Application containers are transient and their directories tiny (a rootfs skeleton, a
/// config, a log), but a disk file system can make each of their few dozen creations and
/// removals cost milliseconds (ext4 with `discard` here: ~30 ms to remove one container's
/// directory). They live on a tmpfs mounted at `STATE/apps`, made once and shared by every
/// port instance (it stays mounted, like the bridge). Without it (no permission to mount,
/// say) they stay on the state directory's file system, which only costs time.
///
/// It is made private (here and when an earlier port mounted it): each node's rootfs is a
/// tmpfs mounted under it (see `node/rootfs.rs`), and on a host whose `/` is shared (a
/// systemd one) those mounts would otherwise be copied into, and unmounted from, every
/// namespace that is a peer or slave of the host's, for each container.
fn mount_apps(state_dir: &Path, apps: &Path) {
    use nix::mount::{mount, MsFlags};
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
    let private = || {
        let none = None::<&str>;
        if let Err(e) = mount(none, apps, none, MsFlags::MS_PRIVATE, none) {
            log::warn!("cannot make {} private: {e}", apps.display());
        }
    };
    if dev(apps) != dev(state_dir) {
        private();
        return;
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(
        Some("ampule"),
        apps,
        Some("tmpfs"),
        flags,
        Some(APPS_TMPFS_OPTIONS),
    ) {
        log::warn!(
            "cannot mount a tmpfs on {} ({e}); application containers stay on disk",
            apps.display()
        );
    } else {
        private();
    }
}

/// The tmpfs of application containers' directories: each one's config, owner and liblxc
/// log, and the mount point of its rootfs, a tmpfs of its own (see `node/rootfs.rs`), so
/// that what one container writes (its home, its node's `boot.log`) cannot fill this one.
pub const APPS_TMPFS_OPTIONS: &str = "mode=0711,size=50%";

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode));
}

fn id_range(file: &str) -> Result<IdRange, Unready> {
    let text = fs::read_to_string(file).unwrap_or_default();
    parse_id_range(&text).ok_or_else(|| {
        unready(
            "no_subid_range",
            format!(
                "{file} has no range of at least 65536 ids for root: add `root:1000000:65536` \
                 (the README's setup does), or run `usermod --add-subuids 1000000-1065535 \
                 --add-subgids 1000000-1065535 root`"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idmap_stand_ins_come_first_on_path_and_sbin_is_always_there() {
        assert_eq!(
            search_path(
                "/usr/local/bin:/usr/bin",
                Some(Path::new("/var/lib/ampule"))
            ),
            "/var/lib/ampule/idmap:/usr/local/bin:/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        );
        assert_eq!(search_path("", None), "/usr/sbin:/usr/bin:/sbin:/bin");
    }

    #[test]
    fn the_idmap_stand_ins_are_links_to_false_and_made_idempotently() {
        let dir = std::env::temp_dir().join(format!("ampule-idmap-{}", std::process::id()));
        prepare_idmap_dir(&dir).unwrap();
        prepare_idmap_dir(&dir).unwrap();
        for tool in ["newuidmap", "newgidmap"] {
            let link = idmap_dir(&dir).join(tool);
            assert_eq!(fs::read_link(&link).unwrap(), Path::new("/bin/false"));
            // Unprivileged: no setuid bit, so liblxc will not use it.
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&link).unwrap().permissions().mode() & 0o4000,
                0
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_idmap_dir_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ampule-idmap-w-{}", std::process::id()));
        prepare_idmap_dir(&dir).unwrap();
        fs::set_permissions(idmap_dir(&dir), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(prepare_idmap_dir(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_seccomp_profile_is_written_once_whole_and_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ampule-seccomp-{}", std::process::id()));
        let path = write_seccomp_profile(&dir).unwrap();
        assert_eq!(write_seccomp_profile(&dir).unwrap(), path);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            crate::seccomp::profile()
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // Nothing left aside.
        assert_eq!(fs::read_dir(dir.join("seccomp")).unwrap().count(), 1);
        fs::set_permissions(dir.join("seccomp"), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(write_seccomp_profile(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The optional fields of the mount at `target` in this process's mountinfo
    /// (`shared:N`, `master:N`; none for a private mount).
    fn propagation(target: &Path) -> Option<String> {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let target = target.to_str().unwrap();
        info.lines().rev().find_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            (fields[4] == target).then(|| {
                let end = fields.iter().position(|f| *f == "-").unwrap();
                fields[6..end].join(" ")
            })
        })
    }

    /// Under a shared mount (a systemd host's `/`), a new mount is shared too: the apps
    /// tmpfs, under which every node's rootfs tmpfs is mounted, is made private.
    #[test]
    fn the_apps_tmpfs_is_private_even_under_a_shared_mount() {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let state = std::env::temp_dir().join(format!("ampule-apps-{}", std::process::id()));
        fs::create_dir_all(&state).unwrap();
        let none = None::<&str>;
        mount(Some("t"), &state, Some("tmpfs"), MsFlags::empty(), none).unwrap();
        mount(none, &state, none, MsFlags::MS_SHARED, none).unwrap();
        let apps = state.join("apps");
        fs::create_dir(&apps).unwrap();
        mount_apps(&state, &apps);
        let apps_prop = propagation(&apps);
        let state_prop = propagation(&state);
        umount2(&apps, MntFlags::MNT_DETACH).unwrap();
        umount2(&state, MntFlags::MNT_DETACH).unwrap();
        fs::remove_dir(&state).unwrap();
        assert!(state_prop.is_some_and(|p| p.starts_with("shared:")));
        assert_eq!(apps_prop.as_deref(), Some(""));
    }

    #[test]
    fn finds_roots_range() {
        let text = "alice:100000:65536\nroot:1000000:65536\n";
        assert_eq!(
            parse_id_range(text),
            Some(IdRange {
                start: 1_000_000,
                count: 65536
            })
        );
        assert_eq!(parse_id_range("root:1000:10\n"), None);
        assert_eq!(parse_id_range(""), None);
    }
}
