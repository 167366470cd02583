//! What liblxc is given for a node's container: its full configuration (the shared items
//! of `config.rs`, then the node's own, the raw `lxc.*` items of the request last) and its
//! init's command line.

use std::path::{Path, PathBuf};

use super::{
    dir, ready_fifo, rootfs, NodeSpec, Reach, AGENT_SOCKET, DIST_PORT, HOME, NODE_UID, READY_FIFO,
};
use crate::config::{base_config, seccomp_items};
use crate::host::Host;
use crate::leases::Lease;
use crate::protocol::Seccomp;

type Items = Vec<(String, String)>;

/// The full configuration of a node's container, raw `lxc.*` items from the request
/// applied last.
pub fn node_config(host: &Host, spec: &NodeSpec) -> Items {
    let veth = spec.lease().map(Lease::veth);
    let mut c = base_config(
        host,
        &spec.name,
        &dir(host, &spec.name),
        veth.as_deref(),
        &spec.opts.limits,
    );
    c.extend(reach_items(host, spec));
    c.extend(fixed_items(&rootfs(host, &spec.name)));
    // The node's open files do not depend on what started the BEAM (a systemd service's
    // soft limit is 1,024: a node under it ran out at 1,024 sockets, and its code server
    // could no longer open a module to load it). See `host::open_files`.
    c.push(("lxc.prlimit.nofile".into(), host.nofile.to_string()));
    // Queued signals count against the host root's RLIMIT_SIGPENDING too (the ucount chain
    // goes up to the owner of the container's user namespace, root): one sandbox that
    // blocked SIGRTMIN and kill()ed itself 200,000 times held all 96,370 of root's, and
    // root's own sigqueue() got EAGAIN. See `SIGPENDING`.
    c.push(("lxc.prlimit.sigpending".into(), SIGPENDING.to_string()));
    let profile = match &spec.opts.seccomp {
        Seccomp::Ampule => Some(host.seccomp_profile.display().to_string()),
        Seccomp::Lxc => Some(crate::seccomp::LXC_PROFILE.to_string()),
        Seccomp::Profile(p) => Some(p.clone()),
        Seccomp::Off => None,
    };
    if let Some(p) = profile {
        c.extend(seccomp_items(&p));
    }
    c.extend(code_mounts(host, spec));
    if let Some(erts) = erts() {
        c.extend(erts.environment());
    }
    for (k, v) in &spec.opts.env {
        c.push(("lxc.environment".into(), format!("{k}={v}")));
    }
    c.extend(spec.opts.config.iter().cloned());
    c
}

/// A distributed node's address on the bridge, or a sandbox's agent socket.
fn reach_items(host: &Host, spec: &NodeSpec) -> Items {
    match &spec.reach {
        Reach::Dist {
            lease, announce, ..
        } => {
            let mut items = vec![
                (
                    "lxc.net.0.ipv4.address".into(),
                    format!("{}/{}", lease.address, host.subnet.prefix),
                ),
                (
                    "lxc.net.0.ipv4.gateway".into(),
                    host.subnet.host().to_string(),
                ),
            ];
            if *announce {
                items.push(bind_mount(
                    &ready_fifo(host, &spec.name).to_string_lossy(),
                    READY_FIFO,
                    "bind,nodev,nosuid,noexec",
                ));
            }
            items
        }
        Reach::Agent { socket } => vec![bind_mount(
            &socket.to_string_lossy(),
            AGENT_SOCKET,
            "bind,nodev,nosuid,noexec",
        )],
    }
}

/// What every node's container has: its skeleton as rootfs, the host's `/usr`, a `/tmp`,
/// no privileges to gain, and the node's user, home and environment.
fn fixed_items(root: &Path) -> Items {
    vec![
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
    ]
}

/// Read-only bind mounts of the code paths, from their staged copies where the container's
/// mapped root could not reach them (see `staging.rs`).
fn code_mounts(host: &Host, spec: &NodeSpec) -> Items {
    let mut c = Items::new();
    for p in mounts_for(&spec.opts.code_paths) {
        let source = host.code.source_for(Path::new(&p)).unwrap_or_else(|e| {
            log::warn!(container = spec.name.as_str(); "cannot stage {p}: {e}");
            PathBuf::from(&p)
        });
        c.push(bind_mount(
            &source.to_string_lossy(),
            &p,
            "ro,bind,nodev,nosuid,create=dir",
        ));
    }
    c
}

/// An `lxc.mount.entry` that binds the host's `source` at `target` (an absolute path in
/// the container; LXC takes it relative to the rootfs).
fn bind_mount(source: &str, target: &str, options: &str) -> (String, String) {
    let target = fstab_escape(target);
    (
        "lxc.mount.entry".into(),
        format!(
            "{} {} none {options} 0 0",
            fstab_escape(source),
            &target[1..]
        ),
    )
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

/// Signals a node may have queued per user (`RLIMIT_SIGPENDING`). The kernel's default,
/// and root's, is `threads-max / 2`: one per 256 KiB of the host's memory (96,370 on 24
/// GiB). A node takes at least 15 MiB (PSS of an idle sandbox), 60 × 256 KiB, so with 32
/// each (and two users, the init's and the node's), a host full of containers holds at
/// most about half of root's share, whatever its memory. A node uses none of them: the
/// BEAM queues no real-time signals, and a pending standard signal is one entry.
pub const SIGPENDING: u32 = 32;

/// The init command: a shell that runs `erl` with its output in `~/boot.log` (so a failed
/// boot can say why) and exits with `erl`'s status, which the port learns from the kernel
/// (see `exits.rs`). The shell stays as the container's init, reaping orphans. The cookie
/// is in `~/.erlang.cookie`, never here: this command line is visible to every host user.
pub fn argv(spec: &NodeSpec) -> Vec<String> {
    let erl = match erts() {
        Some(erts) => erts.erlexec(),
        None => "/usr/bin/erl".to_string(),
    };
    let mut argv: Vec<String> = [
        "/bin/sh",
        "-c",
        "\"$@\" >boot.log 2>&1; exit $?",
        "ampule-init",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(erl);
    argv.extend(distribution_args(spec));
    let code: Vec<&String> = spec
        .opts
        .code_paths
        .iter()
        .filter(|p| Path::new(p).is_dir())
        .collect();
    if !code.is_empty() {
        argv.push("-pz".into());
        argv.extend(code.into_iter().cloned());
    }
    argv.extend(spec.opts.args.iter().cloned());
    argv
}

/// The host's Erlang runtime system, which every node runs (the host's `/usr` is theirs):
/// its `erlexec` is started directly, with the four variables `/usr/bin/erl` would set.
/// That script runs `dirname` three times, `basename` and `dyn_erl --realpath` before it
/// execs `erlexec`: five processes on every boot's path, in the container's one CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erts {
    root: String,
    version: String,
}

/// Where Debian's (and OTP's `make install`'s) `erl` puts the runtime.
const ERLANG_ROOT: &str = "/usr/lib/erlang";

impl Erts {
    /// The runtime `ROOT/releases/start_erl.data` names (`ERTS_VSN OTP_VSN`), if its
    /// `erlexec` is there.
    pub fn find(root: &str) -> Option<Erts> {
        let data = std::fs::read_to_string(Path::new(root).join("releases/start_erl.data")).ok()?;
        let version = data.split_whitespace().next()?.to_string();
        let valid = version.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let erts = Erts {
            root: root.to_string(),
            version,
        };
        (valid && Path::new(&erts.erlexec()).is_file()).then_some(erts)
    }

    fn bindir(&self) -> String {
        format!("{}/erts-{}/bin", self.root, self.version)
    }

    pub fn erlexec(&self) -> String {
        format!("{}/erlexec", self.bindir())
    }

    /// What `erl` exports before it execs `erlexec`.
    fn environment(&self) -> Items {
        [
            ("ROOTDIR", self.root.clone()),
            ("BINDIR", self.bindir()),
            ("EMU", "beam".to_string()),
            ("PROGNAME", "erl".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| ("lxc.environment".to_string(), format!("{k}={v}")))
        .collect()
    }
}

/// The host's runtime, looked up once; `None` (nodes start through `/usr/bin/erl`) when it
/// is not where `erl` keeps it.
fn erts() -> Option<&'static Erts> {
    static ERTS: std::sync::OnceLock<Option<Erts>> = std::sync::OnceLock::new();
    ERTS.get_or_init(|| Erts::find(ERLANG_ROOT)).as_ref()
}

/// A distributed node's name and its one listening port; a sandbox's node has neither.
fn distribution_args(spec: &NodeSpec) -> Vec<String> {
    match spec.nodename() {
        Some(nodename) => {
            let port = DIST_PORT.to_string();
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
            .map(|s| s.to_string())
            .collect()
        }
        // Not distributed: no name, no EPMD, no listener.
        None => vec!["-noshell".to_string(), "-noinput".to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
    fn the_runtime_is_found_from_start_erl_data_and_refused_without_erlexec() {
        let tmp = std::env::temp_dir().join(format!("ampule-erts-{}", std::process::id()));
        let bin = tmp.join("erts-13.1.5/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(tmp.join("releases")).unwrap();
        let root = tmp.to_string_lossy().into_owned();
        fs::write(tmp.join("releases/start_erl.data"), "13.1.5 25\n").unwrap();
        assert_eq!(Erts::find(&root), None, "no erlexec yet");
        fs::write(bin.join("erlexec"), b"").unwrap();
        let erts = Erts::find(&root).unwrap();
        assert_eq!(erts.erlexec(), format!("{root}/erts-13.1.5/bin/erlexec"));
        assert!(erts.environment().contains(&(
            "lxc.environment".into(),
            format!("BINDIR={root}/erts-13.1.5/bin")
        )));
        fs::write(tmp.join("releases/start_erl.data"), "../../x 25\n").unwrap();
        assert_eq!(Erts::find(&root), None, "a version that is a path");
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn fstab_paths_escape_white_space() {
        assert_eq!(fstab_escape("/a b/c\td"), "/a\\040b/c\\011d");
    }
}
