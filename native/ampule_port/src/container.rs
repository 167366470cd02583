//! One application container's files, configuration and lifecycle. Everything here blocks
//! (file system work and liblxc): the dispatcher calls it from blocking threads.
//!
//! An application container is transient: its directory is `LXCPATH/NAME/` with
//! `rootfs/` (a skeleton: merged-usr links, a tiny `/etc`, a home holding the cookie), the
//! saved `config`, and `ampule-owner` naming the port instance that made it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cgroup::Cgroups;
use crate::host::Host;
use crate::instance::OWNER_FILE;
use crate::leases::Lease;
use crate::lxc::{Container, LxcError};
use crate::protocol::{Limits, Seccomp, SpawnOpts};
use crate::timeline::Timeline;

/// The unprivileged user the node runs as, inside the container.
pub const NODE_UID: u32 = 1000;
/// The node's home inside the container.
pub const HOME: &str = "/home/ampule";
/// The distribution port every node listens on (each container has its own address).
pub const DIST_PORT: u16 = 9100;

/// Where the socket of a sandbox's agent appears inside it.
pub const AGENT_SOCKET: &str = "/run/ampule/agent.sock";

/// How the client reaches the node of an application container.
#[derive(Debug, Clone)]
pub enum Reach {
    /// Erlang distribution: a veth on the bridge with this address, and this cookie.
    Dist { lease: Lease, cookie: String },
    /// A sandbox: no network but loopback; the client's agent socket, mounted at
    /// [`AGENT_SOCKET`].
    Agent { socket: PathBuf },
}

/// Everything needed to start one application container (either mode).
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub name: String,
    pub reach: Reach,
    pub opts: SpawnOpts,
}

impl AppSpec {
    pub fn lease(&self) -> Option<&Lease> {
        match &self.reach {
            Reach::Dist { lease, .. } => Some(lease),
            Reach::Agent { .. } => None,
        }
    }

    /// The distributed node's name, `NAME@ADDRESS`; a sandbox has none.
    pub fn nodename(&self) -> Option<String> {
        self.lease().map(|l| format!("{}@{}", self.name, l.address))
    }
}

/// An application container's directory (under [`Host::apps`]).
pub fn dir(host: &Host, name: &str) -> PathBuf {
    host.apps.join(name)
}

pub fn rootfs(host: &Host, name: &str) -> PathBuf {
    dir(host, name).join("rootfs")
}

/// The node's last output lines (what `erl` printed before it died or hung). `boot.log` is
/// in the node's home, the container's to replace with anything: read as untrusted.
pub fn log_tail(host: &Host, name: &str) -> String {
    const MAX: usize = 2048;
    let rel = Path::new("rootfs")
        .join(HOME.trim_start_matches('/'))
        .join("boot.log");
    match crate::untrusted::read_tail(&dir(host, name), &rel, MAX) {
        Ok(text) => String::from_utf8_lossy(&text).into_owned(),
        Err(e) => format!("(boot.log not read: {e})"),
    }
}

/// The last lines liblxc logged for the container whose directory is `dir` (warnings and
/// errors).
pub fn lxc_log_tail(dir: &Path) -> String {
    let text = crate::untrusted::read_tail(dir, Path::new("lxc.log"), 1500).unwrap_or_default();
    String::from_utf8_lossy(&text).into_owned()
}

fn chown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
}

fn write_file(p: &Path, contents: &[u8], mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(p)?;
    f.write_all(contents)?;
    chown(p, uid, gid)
}

/// Writes the container's directory: claims the name (the directory must not exist yet),
/// records the owner, builds the rootfs skeleton and the cookie.
pub fn prepare(host: &Host, spec: &AppSpec) -> io::Result<()> {
    let d = dir(host, &spec.name);
    fs::create_dir(&d)?;
    fs::write(d.join(OWNER_FILE), &host.instance)?;
    let root = rootfs(host, &spec.name);
    let (ru, rg) = (host.uids.start, host.gids.start);
    let (nu, ng) = (ru + NODE_UID, rg + NODE_UID);
    fs::create_dir(&root)?;
    for sub in ["usr", "proc", "sys", "dev", "tmp", "etc", "home", "run"] {
        fs::create_dir(root.join(sub))?;
    }
    // The host's merged-usr links (bin -> usr/bin, ...), copied as they are.
    for link in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        if let Ok(target) = fs::read_link(Path::new("/").join(link)) {
            std::os::unix::fs::symlink(target, root.join(link))?;
        }
    }
    let etc = root.join("etc");
    let hosts = match &spec.reach {
        Reach::Dist { lease, .. } => format!(
            "127.0.0.1 localhost\n{} {}\n{} ampule-host\n",
            lease.address,
            spec.name,
            host.subnet.host()
        ),
        Reach::Agent { .. } => format!("127.0.0.1 localhost {}\n", spec.name),
    };
    let files: [(&str, String); 5] = [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/bin/sh\nampule:x:{NODE_UID}:{NODE_UID}::{HOME}:/bin/sh\n"
            ),
        ),
        ("group", format!("root:x:0:\nampule:x:{NODE_UID}:\n")),
        ("hosts", hosts),
        ("hostname", format!("{}\n", spec.name)),
        ("nsswitch.conf", "hosts: files\n".to_string()),
    ];
    for (f, text) in files {
        write_file(&etc.join(f), text.as_bytes(), 0o644, ru, rg)?;
    }
    let home = root.join(HOME.trim_start_matches('/'));
    fs::create_dir(&home)?;
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
    if let Reach::Dist { cookie, .. } = &spec.reach {
        write_file(
            &home.join(".erlang.cookie"),
            cookie.as_bytes(),
            0o400,
            nu,
            ng,
        )?;
    }
    if let Reach::Agent { .. } = &spec.reach {
        // The mount point of the agent's socket, the container root's like the rest.
        let run = root.join("run/ampule");
        fs::create_dir(&run)?;
        fs::write(run.join("agent.sock"), b"")?;
        chown(&run.join("agent.sock"), ru, rg)?;
        chown(&run, ru, rg)?;
    }
    chown(&home, nu, ng)?;
    for sub in ["etc", "home", "usr", "proc", "sys", "dev", "tmp", "run"] {
        chown(&root.join(sub), ru, rg)?;
    }
    chown(&root, ru, rg)?;
    fs::set_permissions(&d, fs::Permissions::from_mode(0o711))?;
    Ok(())
}

/// Checks that a sandbox's agent socket is the client's to hand over, then gives it to the
/// node's uid alone: a socket (not a link, not a file to expose) directly in this
/// instance's `agents_dir`, which only the client's user can write.
pub fn claim_agent_socket(host: &Host, socket: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if socket.parent() != Some(host.agents.as_path()) {
        return Err(io::Error::other(format!(
            "{} is not directly in {}",
            socket.display(),
            host.agents.display()
        )));
    }
    let meta = fs::symlink_metadata(socket)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::other(format!(
            "{} is not a socket",
            socket.display()
        )));
    }
    let (nu, ng) = (host.uids.start + NODE_UID, host.gids.start + NODE_UID);
    std::os::unix::fs::lchown(socket, Some(nu), Some(ng))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600))
}

/// `fstab` fields are separated by white space; LXC reads octal escapes in paths.
fn fstab_escape(p: &str) -> String {
    p.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}

/// Code paths to bind-mount: absolute, outside `/usr` (mounted whole already), existing
/// directories, and none inside another one on the list.
pub fn mounts_for(code_paths: &[String]) -> Vec<String> {
    let mut paths: Vec<&String> = code_paths
        .iter()
        .filter(|p| !p.starts_with("/usr/") && Path::new(p).is_dir())
        .collect();
    paths.sort();
    paths.dedup();
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        let p = p.trim_end_matches('/');
        if !out
            .iter()
            .any(|o| p.starts_with(&format!("{o}/")) || p == o)
        {
            out.push(p.to_string());
        }
    }
    out
}

/// The CFS period of a CPU quota: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

fn limit_items(cg: Cgroups, l: &Limits) -> Vec<(String, String)> {
    let quota_us = l.cpu_millis.map(|m| m * CPU_PERIOD_US / 1000);
    let mut items: Vec<(String, String)> = match cg {
        Cgroups::V1 => vec![
            (
                "lxc.cgroup.memory.limit_in_bytes".into(),
                l.memory.to_string(),
            ),
            ("lxc.cgroup.pids.max".into(), l.pids.to_string()),
            ("lxc.cgroup.cpu.shares".into(), l.cpu_shares.to_string()),
        ],
        Cgroups::V2 => vec![
            ("lxc.cgroup2.memory.max".into(), l.memory.to_string()),
            ("lxc.cgroup2.memory.swap.max".into(), "0".into()),
            ("lxc.cgroup2.pids.max".into(), l.pids.to_string()),
            (
                "lxc.cgroup2.cpu.weight".into(),
                (l.cpu_shares * 100 / 1024).clamp(1, 10000).to_string(),
            ),
        ],
    };
    match (cg, quota_us) {
        (_, None) => {}
        (Cgroups::V1, Some(q)) => items.extend([
            (
                "lxc.cgroup.cpu.cfs_period_us".into(),
                CPU_PERIOD_US.to_string(),
            ),
            ("lxc.cgroup.cpu.cfs_quota_us".into(), q.to_string()),
        ]),
        (Cgroups::V2, Some(q)) => {
            items.push(("lxc.cgroup2.cpu.max".into(), format!("{q} {CPU_PERIOD_US}")))
        }
    }
    items
}

/// The items that load seccomp profile `path`. Stacked on any filter the port itself runs
/// under (liblxc would otherwise skip loading it, silently, if the port were confined).
pub fn seccomp_items(path: &str) -> [(String, String); 2] {
    [
        ("lxc.seccomp.profile".into(), path.into()),
        ("lxc.seccomp.allow_nesting".into(), "1".into()),
    ]
}

/// The items common to every container Ampule makes: id map, network, limits, and
/// capabilities that no container needs. `dir` is the container's directory (its log's).
pub fn base_config(
    host: &Host,
    name: &str,
    dir: &Path,
    veth: Option<&str>,
    limits: &Limits,
) -> Vec<(String, String)> {
    let mut c: Vec<(String, String)> = vec![
        ("lxc.uts.name".into(), name.into()),
        (
            "lxc.log.file".into(),
            dir.join("lxc.log").display().to_string(),
        ),
        ("lxc.log.level".into(), "WARN".into()),
        (
            "lxc.idmap".into(),
            format!("u 0 {} {}", host.uids.start, host.uids.count.min(65536)),
        ),
        (
            "lxc.idmap".into(),
            format!("g 0 {} {}", host.gids.start, host.gids.count.min(65536)),
        ),
        (
            "lxc.cap.drop".into(),
            "sys_module sys_rawio sys_time sys_boot mac_admin mac_override net_raw".into(),
        ),
    ];
    match veth {
        Some(veth) => c.extend([
            ("lxc.net.0.type".into(), "veth".into()),
            ("lxc.net.0.link".into(), host.bridge.clone()),
            ("lxc.net.0.flags".into(), "up".into()),
            ("lxc.net.0.veth.pair".into(), veth.into()),
        ]),
        // A network namespace with only loopback in it.
        None => c.push(("lxc.net.0.type".into(), "empty".into())),
    }
    c.extend(limit_items(host.cgroups, limits));
    c
}

/// The full configuration of an application container, raw `lxc.*` items from the request
/// applied last.
pub fn app_config(host: &Host, spec: &AppSpec) -> Vec<(String, String)> {
    let root = rootfs(host, &spec.name);
    let veth = spec.lease().map(Lease::veth);
    let mut c = base_config(
        host,
        &spec.name,
        &dir(host, &spec.name),
        veth.as_deref(),
        &spec.opts.limits,
    );
    match &spec.reach {
        Reach::Dist { lease, .. } => c.extend([
            (
                "lxc.net.0.ipv4.address".into(),
                format!("{}/{}", lease.address, host.subnet.prefix),
            ),
            (
                "lxc.net.0.ipv4.gateway".into(),
                host.subnet.host().to_string(),
            ),
        ]),
        Reach::Agent { socket } => c.push((
            "lxc.mount.entry".into(),
            format!(
                "{} {} none bind,nodev,nosuid,noexec 0 0",
                fstab_escape(&socket.to_string_lossy()),
                &AGENT_SOCKET[1..]
            ),
        )),
    }
    c.extend([
        ("lxc.rootfs.path".into(), format!("dir:{}", root.display())),
        ("lxc.mount.auto".into(), "proc:mixed sys:ro".into()),
        ("lxc.autodev".into(), "1".into()),
        ("lxc.tty.max".into(), "0".into()),
        ("lxc.pty.max".into(), "8".into()),
        ("lxc.console.path".into(), "none".into()),
        (
            "lxc.mount.entry".into(),
            "/usr usr none ro,bind,nodev,nosuid 0 0".into(),
        ),
        (
            "lxc.mount.entry".into(),
            "tmpfs tmp tmpfs rw,nosuid,nodev,mode=1777,size=256m 0 0".into(),
        ),
        // Nothing in the container can gain privileges (setuid binaries, file capabilities)
        // on top of the nosuid mounts.
        ("lxc.no_new_privs".into(), "1".into()),
        ("lxc.init.uid".into(), NODE_UID.to_string()),
        ("lxc.init.gid".into(), NODE_UID.to_string()),
        ("lxc.init.cwd".into(), HOME.into()),
        ("lxc.environment".into(), format!("HOME={HOME}")),
        (
            "lxc.environment".into(),
            "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
        ),
        ("lxc.environment".into(), "LANG=C.UTF-8".into()),
    ]);
    let profile = match &spec.opts.seccomp {
        Seccomp::Ampule => Some(host.seccomp_profile.display().to_string()),
        Seccomp::Lxc => Some(crate::seccomp::LXC_PROFILE.to_string()),
        Seccomp::Profile(p) => Some(p.clone()),
        Seccomp::Off => None,
    };
    if let Some(p) = profile {
        c.extend(seccomp_items(&p));
    }
    for p in mounts_for(&spec.opts.code_paths) {
        let source = host.code.source_for(Path::new(&p)).unwrap_or_else(|e| {
            log::warn!(container = spec.name.as_str(); "cannot stage {p}: {e}");
            PathBuf::from(&p)
        });
        let target = fstab_escape(&p);
        c.push((
            "lxc.mount.entry".into(),
            format!(
                "{} {} none ro,bind,nodev,nosuid,create=dir 0 0",
                fstab_escape(&source.to_string_lossy()),
                &target[1..]
            ),
        ));
    }
    for (k, v) in &spec.opts.env {
        c.push(("lxc.environment".into(), format!("{k}={v}")));
    }
    c.extend(spec.opts.config.iter().cloned());
    c
}

/// The init command: a shell that runs `erl` with its output in `~/boot.log` (so a failed
/// boot can say why) and exits with `erl`'s status, which the port learns from the kernel
/// (see `exits.rs`). The shell stays as the container's init, reaping orphans. The cookie
/// is in `~/.erlang.cookie`, never here: this command line is visible to every host user.
pub fn app_argv(spec: &AppSpec) -> Vec<String> {
    let mut argv: Vec<String> = [
        "/bin/sh",
        "-c",
        "\"$@\" >boot.log 2>&1; exit $?",
        "ampule-init",
        "/usr/bin/erl",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match spec.nodename() {
        Some(nodename) => {
            let port = DIST_PORT.to_string();
            argv.extend(
                [
                    "-name",
                    &nodename,
                    "-noshell",
                    "-noinput",
                    "-kernel",
                    "inet_dist_listen_min",
                    &port,
                    "inet_dist_listen_max",
                    &port,
                ]
                .iter()
                .map(|s| s.to_string()),
            );
        }
        // Not distributed: no name, no EPMD, no listener.
        None => argv.extend(["-noshell".to_string(), "-noinput".to_string()]),
    }
    let code: Vec<&String> = spec
        .opts
        .code_paths
        .iter()
        .filter(|p| Path::new(p).is_dir())
        .collect();
    if !code.is_empty() {
        argv.push("-pa".into());
        argv.extend(code.into_iter().cloned());
    }
    argv.extend(spec.opts.args.iter().cloned());
    argv
}

/// Why a container could not be started.
#[derive(Debug)]
pub enum StartError {
    Io(io::Error),
    Lxc(LxcError),
    NoInit,
}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> StartError {
        StartError::Io(e)
    }
}

impl From<LxcError> for StartError {
    fn from(e: LxcError) -> StartError {
        StartError::Lxc(e)
    }
}

/// Configures and starts an application container whose directory [`prepare`] wrote;
/// returns its init's host pid.
pub fn start_app(host: &Host, spec: &AppSpec, timeline: &Timeline) -> Result<i32, StartError> {
    let c = Container::open(&spec.name, &host.apps)?;
    for (k, v) in app_config(host, spec) {
        c.set_config_item(&k, &v)?;
    }
    c.save_config()?;
    timeline.mark("config");
    crate::cgroup::starting(|| {
        timeline.mark("start_lock");
        c.start(&app_argv(spec))
    })?;
    timeline.mark("lxc_start");
    c.init_pid().ok_or(StartError::NoInit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_path_mounts_skip_usr_missing_and_nested() {
        let tmp = std::env::temp_dir().join(format!("ampule-mounts-{}", std::process::id()));
        let a = tmp.join("a");
        let ab = a.join("b");
        fs::create_dir_all(&ab).unwrap();
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let got = mounts_for(&[
            s(&ab),
            s(&a),
            "/usr/lib/erlang/lib/stdlib-4.0/ebin".into(),
            s(&tmp.join("missing")),
        ]);
        assert_eq!(got, vec![s(&a)]);
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn fstab_paths_escape_white_space() {
        assert_eq!(fstab_escape("/a b/c\td"), "/a\\040b/c\\011d");
    }
}
