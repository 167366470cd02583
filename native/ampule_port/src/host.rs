//! What the host must offer before the port can make a container (root, liblxc, an id range
//! for user namespaces, cgroups), this instance's identity and lock, and the start-up sweep
//! of what crashed instances left behind.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::lxc;
use crate::network::{self, Subnet};

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

/// Which cgroup hierarchy limits go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    V1,
    V2,
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
    pub code: crate::staging::Staging,
    pub uids: IdRange,
    pub gids: IdRange,
    pub cgroups: Cgroups,
    pub lxc_version: String,
    /// Ampule's seccomp profile for application containers (see [`write_seccomp_profile`]).
    pub seccomp_profile: PathBuf,
    /// Held for the life of the process: a live lock is how other instances know we run.
    _lock: Flock<fs::File>,
}

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bridge: String,
    pub subnet: Subnet,
    pub state_dir: PathBuf,
    pub log_level: log::LevelFilter,
    /// Log lines also to stderr after the hello (`--log-stderr`).
    pub log_stderr: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            bridge: "ampule0".into(),
            subnet: "10.213.57.0/24".parse().expect("default subnet"),
            state_dir: PathBuf::from("/var/lib/ampule"),
            log_level: log::LevelFilter::Info,
            log_stderr: false,
        }
    }
}

impl Settings {
    /// Parses `--bridge`, `--subnet`, `--state-dir`, `--log-level`, `--log-stderr`.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Settings, String> {
        let mut s = Settings::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bridge" => {
                    let b = value()?;
                    if b.is_empty()
                        || b.len() > 15
                        || !b
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                    {
                        return Err(format!("--bridge {b}: not an interface name"));
                    }
                    s.bridge = b;
                }
                "--subnet" => {
                    let n: Subnet = value()?.parse()?;
                    if let Some(r) = network::reserved_subnets().iter().find(|r| r.overlaps(&n)) {
                        return Err(format!(
                            "--subnet {n} overlaps {r}, which LXC or Docker use"
                        ));
                    }
                    s.subnet = n;
                }
                "--state-dir" => {
                    let d = PathBuf::from(value()?);
                    if !d.is_absolute() {
                        return Err("--state-dir must be absolute".into());
                    }
                    s.state_dir = d;
                }
                "--log-level" => {
                    // Erlang's Logger says `warning`, the log crate `warn`: both are taken.
                    let v = value()?;
                    let v = if v == "warning" {
                        "warn".to_string()
                    } else {
                        v
                    };
                    s.log_level = v.parse().map_err(|_| {
                        "--log-level: error, warning (or warn), info or debug".to_string()
                    })?
                }
                "--log-stderr" => s.log_stderr = true,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(s)
    }
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

fn random_id(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Checks the host, prepares the bridge, takes this instance's lock and sweeps leftovers.
pub fn prepare(settings: &Settings) -> Result<(Host, Sweep), Unready> {
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
    let cgroups = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Cgroups::V2
    } else if Path::new("/sys/fs/cgroup/memory").exists() {
        Cgroups::V1
    } else {
        return Err(unready(
            "no_cgroups",
            "no cgroup hierarchy under /sys/fs/cgroup: mount cgroup2 there",
        ));
    };
    network::ensure_bridge(&settings.bridge, &settings.subnet).map_err(|e| {
        unready(
            "no_bridge",
            format!(
                "cannot prepare bridge {} ({e}): install iproute2 and nftables",
                settings.bridge
            ),
        )
    })?;
    let state_dir = settings.state_dir.clone();
    let lxcpath = state_dir.join("lxc");
    let apps = state_dir.join("apps");
    let instances = state_dir.join("instances");
    prepare_idmap_dir(&state_dir).map_err(|e| {
        unready(
            "no_state_dir",
            format!("cannot create {}: {e}", idmap_dir(&state_dir).display()),
        )
    })?;
    let seccomp_profile = write_seccomp_profile(&state_dir).map_err(|e| {
        unready(
            "no_state_dir",
            format!(
                "cannot write the seccomp profile under {}: {e}",
                state_dir.join("seccomp").display()
            ),
        )
    })?;
    for d in [&lxcpath, &apps, &instances] {
        fs::create_dir_all(d).map_err(|e| {
            unready(
                "no_state_dir",
                format!("cannot create {}: {e}", d.display()),
            )
        })?;
    }
    // The rootfs of a user-namespaced container is reached through these directories by
    // mapped ids, which are "other" to them.
    for d in [&state_dir, &lxcpath, &apps] {
        set_mode(d, 0o711);
    }
    mount_apps(&state_dir, &apps);
    let (instance, lock) = take_lock(&instances).map_err(|e| {
        unready(
            "no_state_dir",
            format!("cannot lock in {}: {e}", instances.display()),
        )
    })?;
    let sweep = sweep(&state_dir, &[&lxcpath, &apps], settings, &instance);
    let agents = state_dir.join("agents").join(&instance);
    let code = crate::staging::Staging::new(&state_dir, &instance);
    prepare_agents_dir(&agents).map_err(|e| {
        unready(
            "no_state_dir",
            format!("cannot create {}: {e}", agents.display()),
        )
    })?;
    Ok((
        Host {
            bridge: settings.bridge.clone(),
            subnet: settings.subnet,
            state_dir,
            lxcpath,
            apps,
            code,
            instance,
            agents,
            uids,
            gids,
            cgroups,
            lxc_version,
            seccomp_profile,
            _lock: lock,
        },
        sweep,
    ))
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

/// Removes this instance's agents directory (the sockets in it belong to containers that
/// are gone by now).
pub fn release_agents_dir(host: &Host) {
    let _ = fs::remove_dir_all(&host.agents);
}

/// Application containers are transient and their directories tiny (a rootfs skeleton, a
/// config, a log), but a disk file system can make each of their few dozen creations and
/// removals cost milliseconds (ext4 with `discard` here: ~30 ms to remove one container's
/// directory). They live on a tmpfs mounted at `STATE/apps`, made once and shared by every
/// port instance (it stays mounted, like the bridge). Without it (no permission to mount,
/// say) they stay on the state directory's file system, which only costs time.
fn mount_apps(state_dir: &Path, apps: &Path) {
    use nix::mount::{mount, MsFlags};
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
    if dev(apps) != dev(state_dir) {
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
    }
}

/// The tmpfs of application containers: each container's skeleton, its home and its
/// node's `boot.log`. Its pages are charged to the memory cgroup of the container that
/// writes them, so each container's share is bounded by its memory limit; the cap on the
/// whole (tmpfs's usual half of RAM) bounds the sum.
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

/// Takes this instance's lock. The file is locked under a private name and only then
/// linked to `ID.lock`: a sweep that could lock a visible lock file before its owner did
/// would take a live instance for a dead one (and hand its addresses out again).
fn take_lock(dir: &Path) -> io::Result<(String, Flock<fs::File>)> {
    loop {
        let id = random_id(6);
        let private = dir.join(format!(".{id}.{}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&private)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| io::Error::from(e))?;
        let linked = fs::hard_link(&private, dir.join(format!("{id}.lock")));
        let _ = fs::remove_file(&private);
        match linked {
            Ok(()) => return Ok((id, lock)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What the start-up sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub instances: usize,
    pub containers: Vec<String>,
    pub leases: usize,
}

/// The owner file written into each container directory.
pub const OWNER_FILE: &str = "ampule-owner";

/// Containers marked persistent survive their port (system containers): the owner file
/// reads `persistent INSTANCE`, and only a dead instance's containers are adopted.
pub const PERSISTENT: &str = "persistent";

/// Instances whose lock nobody holds are dead: their containers, leases and locks go.
fn sweep(state_dir: &Path, lxcpaths: &[&Path], settings: &Settings, me: &str) -> Sweep {
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
    let is_dead = |owner: &str| {
        owner != me && !owner.starts_with(PERSISTENT) && !live_instance(state_dir, owner)
    };
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
                crate::container::remove_leftover(lxcpath, &name);
                containers.push(name);
            }
        }
    }
    // Cgroups liblxc left for containers whose directory is already gone (a crash between
    // the two removals): attributable by the generated names, `a-`, `x-` or `s-INSTANCE-N`.
    // Cgroups are shared by every state directory on the machine (other checkouts, hosts
    // in network namespaces): only instances this directory saw die count.
    let ours_dead = |owner: &str| !owner.is_empty() && tombstone(state_dir, owner).exists();
    let owner_of = |cg: &str| -> Option<String> {
        let mut parts = cg.splitn(3, '-');
        let (kind, owner) = (parts.next()?, parts.next()?);
        ["a", "s", "x"].contains(&kind).then(|| owner.to_string())
    };
    for cg in orphan_cgroups(lxcpaths) {
        if owner_of(&cg).is_some_and(|o| ours_dead(&o)) {
            crate::container::remove_cgroups(&cg, std::time::Duration::from_millis(200));
        }
    }
    let still: std::collections::HashSet<String> = orphan_cgroups(lxcpaths)
        .iter()
        .filter_map(|cg| owner_of(cg))
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
    crate::staging::sweep(state_dir, &|id| id != me && !live_instance(state_dir, id));
    // Agent sockets of dead instances: their sandboxes are gone.
    for e in fs::read_dir(state_dir.join("agents"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = e.file_name().to_string_lossy().into_owned();
        if id != me && !live_instance(state_dir, &id) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let leases = network::Leases::sweep(state_dir, &settings.subnet, &is_dead, &|ip| {
        network::forget_address(ip, &settings.bridge)
    });
    crate::dhcp::sweep(state_dir, &|owner| {
        !live_instance(state_dir, owner) && owner != me
    });
    Sweep {
        instances: dead.len(),
        containers,
        leases,
    }
}

/// Where a sweep records an instance it found dead, until nothing of it is left.
fn tombstone(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("instances").join(format!("{id}.dead"))
}

/// Container names that have `lxc.monitor.`/`lxc.payload.` cgroups but no directory.
fn orphan_cgroups(lxcpaths: &[&Path]) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
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
        .is_some_and(|age| age < std::time::Duration::from_secs(60))
}

/// Whether the port instance `id` is alive (its lock file exists; a dead instance's lock is
/// removed by the first sweep that manages to take it).
pub fn live_instance(state_dir: &Path, id: &str) -> bool {
    !id.is_empty()
        && state_dir
            .join("instances")
            .join(format!("{id}.lock"))
            .exists()
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

    #[test]
    fn settings_from_args() {
        let s = Settings::from_args(
            ["--bridge", "br9", "--subnet", "10.99.0.0/24"]
                .iter()
                .map(|s| s.to_string()),
        )
        .unwrap();
        assert_eq!(s.bridge, "br9");
        assert_eq!(s.subnet.to_string(), "10.99.0.0/24");
        let lxc = Settings::from_args(["--subnet", "10.0.3.0/24"].iter().map(|s| s.to_string()));
        assert!(lxc.unwrap_err().contains("overlaps"));
        assert!(Settings::from_args(["--nope".to_string()]).is_err());
        let w = Settings::from_args(["--log-level", "warning"].iter().map(|s| s.to_string()));
        assert_eq!(w.unwrap().log_level, log::LevelFilter::Warn);
        assert!(!Settings::default().log_stderr);
        assert!(
            Settings::from_args(["--log-stderr".to_string()])
                .unwrap()
                .log_stderr
        );
        assert!(Settings::from_args(["--bridge".to_string()]).is_err());
    }
}
