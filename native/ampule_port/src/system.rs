//! System containers: a whole distribution from an LXC template, booting its own init, with
//! a login on its console. Unlike application containers they persist: `stop` keeps their
//! disk, `start` boots them again, only `destroy` removes them, and a new port instance
//! adopts the ones it finds (stopped) instead of sweeping them.
//!
//! The console is streamed to the BEAM as `{event, console, {Name, Bytes}}` under a credit
//! window: the port reads at most [`WINDOW`] bytes ahead of the client's acknowledgements
//! (`{console_ack, Name, Bytes}`), so a slow reader stalls the container's console writes
//! instead of growing the port's memory. No byte is dropped or altered.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::container;
use crate::dispatch::{Entry, Server, State};
use crate::etf::Out;
use crate::host::Host;
use crate::instance::{live_instance, OWNER_FILE, PERSISTENT};
use crate::lxc::{self, Container};
use crate::names::{self, Kind};
use crate::protocol::{atom, bin, error, int, map, ok, ok_value, tuple, CreateOpts};
use crate::teardown;

/// Console bytes the port reads ahead of the client's acknowledgements.
pub const WINDOW: usize = 256 * 1024;
const CHUNK: usize = 16 * 1024;

/// Templates that download images from the internet: refused at once, never tried.
const NEEDS_INTERNET: [&str; 4] = ["download", "ubuntu", "ubuntu-cloud", "oci"];

/// The console login the seed's example expects.
pub const DEFAULT_USER: (&str, &str) = ("ubuntu", "ubuntu");

/// How long a create waits for the release of a destroyed application container of the
/// same name before the name counts as in use.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

struct Console {
    ptx: Arc<AsyncFd<OwnedFd>>,
    _sock: OwnedFd,
    credit: Arc<Credit>,
    reader: JoinHandle<()>,
}

#[derive(Default)]
struct Credit {
    unacked: Mutex<usize>,
    more: Notify,
}

/// The open consoles of this instance's system containers.
#[derive(Default)]
pub struct Consoles {
    open: Mutex<HashMap<String, Console>>,
    pub dhcp: crate::dhcp::Dhcp,
    /// liblxc's `create()` fails at once ("error 0") when two run in one process, so
    /// templates run one at a time (they are slow and rare; boots stay concurrent).
    creating: tokio::sync::Mutex<()>,
}

impl Consoles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Console>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Detaches from a container's console (its reader stops, the monitor frees the tty).
    pub fn close(&self, name: &str) {
        if let Some(c) = self.lock().remove(name) {
            c.reader.abort();
        }
    }
}

fn progress(srv: &Server, name: &str, phase: &str) {
    log::info!(container = name; "{phase}");
    srv.out.event(
        "progress",
        map(vec![("name", bin(name)), ("phase", atom(phase))]),
    );
}

fn system_config(host: &Host, name: &str, opts: &CreateOpts) -> Vec<(String, String)> {
    let veth = format!(
        "{}{}",
        crate::network::SYSTEM_VETH_PREFIX,
        names::random(names::HEX_ALPHABET, 6)
    );
    let dir = host.lxcpath.join(name);
    let mut c = container::base_config(host, name, &dir, Some(&veth), &opts.limits);
    if opts.privileged {
        c.retain(|(k, _)| k != "lxc.idmap");
    }
    // A distribution's DHCP client needs raw sockets, which application nodes never do.
    for (k, v) in c.iter_mut() {
        if k == "lxc.cap.drop" {
            *v = v.replace(" net_raw", "");
        }
    }
    // LXC's own denylist, which the debian template's common.conf loads and busybox's
    // config does not: every system container gets it (a distribution's init and services
    // use namespaces and keyrings, which Ampule's policy for nodes refuses).
    c.extend(container::seccomp_items(crate::seccomp::LXC_PROFILE));
    c.extend(opts.config.iter().cloned());
    c
}

fn template_args(opts: &CreateOpts) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(r) = &opts.release {
        args.extend(["--release".to_string(), r.clone()]);
    }
    args.extend(opts.template_args.iter().cloned());
    args
}

/// `{create, Opts}`: builds the rootfs from the template, sets the login, boots it and
/// attaches to its console.
pub async fn create(srv: Arc<Server>, opts: CreateOpts) -> Out {
    if NEEDS_INTERNET.contains(&opts.template.as_str()) {
        return error(tuple(vec![
            atom("template_unavailable"),
            bin(&opts.template),
            bin(format!(
                "the {} template downloads images from the internet, which this host does not \
                 reach; use busybox or debian (debootstrap from a Debian mirror)",
                opts.template
            )),
        ]));
    }
    if !Path::new("/usr/share/lxc/templates")
        .join(format!("lxc-{}", opts.template))
        .exists()
    {
        return error(tuple(vec![atom("unknown_template"), bin(&opts.template)]));
    }
    let seq = srv.next_seq();
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| names::generated(Kind::System, &srv.host.instance, seq));
    if let Err(e) = srv.reserve(&name, Kind::System, RELEASE_WAIT).await {
        return e;
    }
    if let Some(e) = srv.registry().get_mut(&name) {
        e.persistent = opts.persistent;
    }
    if let Err(e) = srv.system.dhcp.ensure(&srv.host) {
        srv.forget(&name);
        return error(tuple(vec![atom("dhcp"), bin(e.to_string())]));
    }
    progress(&srv, &name, "creating");
    let one_at_a_time = srv.system.creating.lock().await;
    let permit = srv.start_permit().await;
    let job = {
        let (srv, name, opts) = (srv.clone(), name.clone(), opts.clone());
        tokio::task::spawn_blocking(move || build(&srv.host, &name, &opts))
    };
    let built = match tokio::time::timeout(opts.timeout, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(io::Error::other(e.to_string())),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "template timed out",
        )),
    };
    drop(permit);
    drop(one_at_a_time);
    if let Err(e) = built {
        let detail = container::lxc_log_tail(&srv.host.lxcpath.join(&name));
        log::error!(container = name.as_str(); "creating from {} failed: {e}; {detail}", opts.template);
        remove_files(&srv, &name).await;
        srv.forget(&name);
        let reason = if e.kind() == io::ErrorKind::TimedOut {
            atom("create_timeout")
        } else {
            tuple(vec![atom("create_failed"), bin(e.to_string())])
        };
        return error(reason);
    }
    progress(&srv, &name, "starting");
    match boot(&srv, &name).await {
        Ok(pid) => {
            progress(&srv, &name, "running");
            ok_value(map(vec![
                ("name", bin(&name)),
                ("kind", atom("system")),
                ("init_pid", int(pid as i64)),
            ]))
        }
        Err(reason) => {
            remove_files(&srv, &name).await;
            srv.forget(&name);
            error(reason)
        }
    }
}

/// Runs the template and prepares the rootfs (blocking).
fn build(host: &Host, name: &str, opts: &CreateOpts) -> io::Result<()> {
    // Claimed before the template runs, so that no other instance's start-up sweep takes
    // the half-made directory for a crashed one's.
    let dir = host.lxcpath.join(name);
    fs::create_dir(&dir)?;
    fs::write(dir.join(OWNER_FILE), &host.instance)?;
    // Busybox's template shifts ownership itself; the distribution templates refuse a user
    // namespace (debootstrap needs real root), so they build as root and the rootfs is then
    // shifted into the container's id range, and the container still runs unprivileged.
    let shift_after = !opts.privileged && opts.template != "busybox";
    let config: Vec<(String, String)> = system_config(host, name, opts)
        .into_iter()
        .filter(|(k, _)| !(shift_after && k == "lxc.idmap"))
        .collect();
    run_template(host, name, opts, &config)?;
    if shift_after {
        shift_ids(&dir.join("rootfs"), (host.uids.start, host.gids.start))?;
        let c = Container::open(name, &host.lxcpath).map_err(io::Error::other)?;
        let userns = format!("/usr/share/lxc/config/{}.userns.conf", opts.template);
        let include = if Path::new(&userns).exists() {
            userns
        } else {
            "/usr/share/lxc/config/userns.conf".to_string()
        };
        c.set_config_item("lxc.include", &include)
            .map_err(io::Error::other)?;
        // The userns include resets capabilities; ours come after it, with the id map.
        for (k, v) in system_config(host, name, opts)
            .into_iter()
            .filter(|(k, _)| k == "lxc.idmap" || k == "lxc.cap.drop")
        {
            c.set_config_item(&k, &v).map_err(io::Error::other)?;
        }
        c.save_config().map_err(io::Error::other)?;
    }
    if opts.persistent {
        fs::write(
            dir.join(OWNER_FILE),
            format!("{PERSISTENT} {}", host.instance),
        )?;
    }
    let rootfs = dir.join("rootfs");
    let (user, password) = opts
        .user
        .clone()
        .unwrap_or((DEFAULT_USER.0.into(), DEFAULT_USER.1.into()));
    let ids = if opts.privileged {
        (0, 0)
    } else {
        (host.uids.start, host.gids.start)
    };
    set_login(&rootfs, &user, &password, ids)?;
    if opts.template == "busybox" {
        busybox_console_login(&rootfs, ids)?;
    }
    Ok(())
}

/// Runs the template through `lxc-create`, in its own process: liblxc's `create()` inside
/// the port fails ("error 0") and disturbs containers starting in other threads while it
/// runs, as liblxc keeps process-wide state across its forks.
fn run_template(
    host: &Host,
    name: &str,
    opts: &CreateOpts,
    config: &[(String, String)],
) -> io::Result<()> {
    use std::io::Read;
    let dir = host.lxcpath.join(name);
    let file = dir.join("create.conf");
    let text: String = config.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    fs::write(&file, text)?;
    let mut child = std::process::Command::new("lxc-create")
        .arg("-P")
        .arg(&host.lxcpath)
        .args(["-n", name, "-t", &opts.template, "-f"])
        .arg(&file)
        .arg("--")
        .args(template_args(opts))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    // The port's reaper may collect the child first (ECHILD): then the result is judged
    // by what the template left.
    let status = child.wait().ok();
    let _ = fs::remove_file(&file);
    let made = dir.join("config").exists() && dir.join("rootfs").is_dir();
    if status.is_some_and(|s| s.success()) || (status.is_none() && made) {
        Ok(())
    } else {
        let tail: String = stderr.lines().rev().take(6).collect::<Vec<_>>().join(" | ");
        Err(io::Error::other(format!("lxc-create: {tail}")))
    }
}

/// Boots a built container and attaches to its console; returns its init's pid.
async fn boot(srv: &Arc<Server>, name: &str) -> Result<i32, eetf::Term> {
    let permit = srv.start_permit().await;
    let started = {
        let (host_lxcpath, n) = (srv.host.lxcpath.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            let c = Container::open(&n, &host_lxcpath)?;
            crate::cgroup::starting(|| c.start_init())?;
            let pid = c.init_pid().ok_or_else(|| lxc::LxcError {
                call: "init_pid",
                detail: "no init".into(),
            })?;
            Ok::<_, lxc::LxcError>((pid, c.console()?))
        })
        .await
    };
    drop(permit);
    let (pid, fds) = match started {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            log::error!(container = name; "{e}");
            return Err(tuple(vec![atom("lxc"), atom(e.call)]));
        }
        Err(e) => {
            log::error!(container = name; "start task failed: {e}");
            return Err(tuple(vec![atom("lxc"), atom("start")]));
        }
    };
    if let Err(e) = attach(srv, name, fds) {
        log::error!(container = name; "console: {e}");
        return Err(tuple(vec![atom("console"), bin(e.to_string())]));
    }
    if let Some(e) = srv.registry().get_mut(name) {
        e.state = State::Running;
        e.init_pid = Some(pid);
    }
    if let Err(e) = srv.clone().watch_init(name, pid, None) {
        log::warn!(container = name; "cannot watch init: {e}");
    }
    Ok(pid)
}

fn attach(srv: &Arc<Server>, name: &str, fds: lxc::ConsoleFds) -> io::Result<()> {
    fds.make_raw()?;
    let raw = fds.ptx.as_raw_fd();
    let flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL)?);
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let ptx = Arc::new(lxc::register(
        fds.ptx,
        Interest::READABLE | Interest::WRITABLE,
    )?);
    let credit = Arc::new(Credit::default());
    let reader = tokio::spawn(read_console(
        srv.clone(),
        name.to_string(),
        ptx.clone(),
        credit.clone(),
    ));
    srv.system.close(name);
    srv.system.lock().insert(
        name.to_string(),
        Console {
            ptx,
            _sock: fds.sock,
            credit,
            reader,
        },
    );
    Ok(())
}

async fn read_console(
    srv: Arc<Server>,
    name: String,
    ptx: Arc<AsyncFd<OwnedFd>>,
    credit: Arc<Credit>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        loop {
            let waiting = credit.more.notified();
            if *credit.unacked.lock().unwrap_or_else(|p| p.into_inner()) < WINDOW {
                break;
            }
            waiting.await;
        }
        let Ok(mut guard) = ptx.readable().await else {
            return;
        };
        match guard
            .try_io(|fd| nix::unistd::read(fd.as_raw_fd(), &mut buf).map_err(io::Error::from))
        {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => {
                *credit.unacked.lock().unwrap_or_else(|p| p.into_inner()) += n;
                srv.out
                    .event("console", tuple(vec![bin(&name), bin(&buf[..n])]));
            }
            // EIO: the other side of the pty is gone (the container stopped).
            Ok(Err(_)) => return,
            Err(_would_block) => continue,
        }
    }
}

/// `{console, Name, Bytes}`: writes every byte to the console, in order.
pub async fn console_write(srv: Arc<Server>, name: &str, data: Vec<u8>) -> Out {
    let ptx = match srv.system.lock().get(name) {
        Some(c) => c.ptx.clone(),
        None => {
            return error(if srv.registry().contains_key(name) {
                atom("no_console")
            } else {
                atom("not_found")
            })
        }
    };
    let mut written = 0;
    while written < data.len() {
        let Ok(mut guard) = ptx.writable().await else {
            return error(atom("no_console"));
        };
        match guard.try_io(|fd| {
            nix::unistd::write(fd.get_ref(), &data[written..]).map_err(io::Error::from)
        }) {
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => return error(tuple(vec![atom("console"), bin(e.to_string())])),
            Err(_would_block) => continue,
        }
    }
    ok()
}

/// `{console_ack, Name, Bytes}`: the client has taken `Bytes` more console bytes.
pub fn console_ack(srv: &Server, name: &str, n: usize) -> Out {
    let open = srv.system.lock();
    let Some(c) = open.get(name) else {
        return error(atom("not_found"));
    };
    let mut unacked = c.credit.unacked.lock().unwrap_or_else(|p| p.into_inner());
    *unacked = unacked.saturating_sub(n);
    c.credit.more.notify_one();
    ok()
}

/// `{start, Name}`: boots a stopped system container again.
pub async fn start(srv: Arc<Server>, name: &str) -> Out {
    let state = srv.registry().get(name).map(|e| (e.kind, e.state));
    match state {
        None => error(atom("not_found")),
        Some((Kind::App | Kind::Sandbox, _)) => error(atom("not_system")),
        Some((_, State::Stopped)) => {
            if let Some(e) = srv.registry().get_mut(name) {
                e.state = State::Booting;
            }
            match boot(&srv, name).await {
                Ok(pid) => ok_value(map(vec![
                    ("name", bin(name)),
                    ("init_pid", int(pid as i64)),
                ])),
                Err(reason) => {
                    if let Some(e) = srv.registry().get_mut(name) {
                        e.state = State::Stopped;
                    }
                    error(reason)
                }
            }
        }
        Some(_) => error(atom("already_running")),
    }
}

/// `{stop, Name}`: asks init to power off (SIGPWR/halt signal), kills it after 10 s;
/// the disk stays.
pub async fn stop(srv: Arc<Server>, name: &str) -> Out {
    {
        let mut reg = srv.registry();
        match reg.get_mut(name) {
            Some(e) if e.state == State::Running => e.state = State::Destroying,
            Some(_) => return error(atom("not_running")),
            None => return error(atom("not_found")),
        }
    }
    srv.system.close(name);
    let lxcpath = srv.host.lxcpath.clone();
    let n = name.to_string();
    let halting = tokio::task::spawn_blocking(move || halt(&lxcpath, &n));
    // shutdown() and stop() go through the monitor's command socket; a monitor that does
    // not answer (see destroy) must not hold the request forever: kill it instead.
    if tokio::time::timeout(HALT_LIMIT, halting).await.is_err() {
        log::warn!(container = name; "no halt within {HALT_LIMIT:?}; killing its monitor");
        let (lxcpath, n) = (srv.host.lxcpath.clone(), name.to_string());
        let _ = tokio::task::spawn_blocking(move || teardown::kill_monitor(&lxcpath, &n)).await;
    }
    {
        let n = name.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            teardown::remove_cgroups(&n, Duration::from_secs(2))
        })
        .await;
    }
    if let Some(e) = srv.registry().get_mut(name) {
        e.state = State::Stopped;
        e.init_pid = None;
        e.init_fd = None;
    }
    ok()
}

/// A clean shutdown (10 s), then a stop (10 s), plus slack.
const HALT_LIMIT: Duration = Duration::from_secs(25);

fn halt(lxcpath: &Path, name: &str) {
    if let Ok(c) = Container::open(name, lxcpath) {
        if c.is_running() && c.shutdown(10).is_err() {
            let _ = c.stop();
            c.wait("STOPPED", 10);
        }
    }
}

/// Removes a system container entirely: stops it, then its rootfs, config and cgroups.
pub async fn destroy_files(srv: &Server, name: &str) {
    srv.system.close(name);
    remove_files(srv, name).await;
    srv.forget(name);
}

async fn remove_files(srv: &Server, name: &str) {
    let lxcpath = srv.host.lxcpath.clone();
    let n = name.to_string();
    let r = tokio::task::spawn_blocking(move || {
        // Not through liblxc: a monitor stalled on a console nobody reads (the credit window
        // is full) does not answer commands, and destroying must never hang.
        teardown::kill_monitor(&lxcpath, &n);
        let dir = lxcpath.join(&n);
        teardown::remove_tree(&dir)?;
        teardown::remove_cgroups(&n, Duration::from_secs(2));
        Ok::<_, io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = r {
        log::error!(container = name; "removing failed: {e}");
    }
}

/// System containers an earlier port instance made: adopted as stopped.
pub fn adopt(host: &Host) -> Vec<(String, Entry)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&host.lxcpath) else {
        return out;
    };
    for e in entries.flatten() {
        let owner = fs::read_to_string(e.path().join(OWNER_FILE)).unwrap_or_default();
        let mut f = owner.split_whitespace();
        if f.next() != Some(PERSISTENT) {
            continue;
        }
        if f.next().is_some_and(|i| live_instance(&host.state_dir, i)) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        teardown::stop(&host.lxcpath, &name);
        teardown::remove_cgroups(&name, Duration::from_secs(2));
        let claimed = format!("{PERSISTENT} {}", host.instance);
        if fs::write(e.path().join(OWNER_FILE), claimed).is_err() {
            continue;
        }
        out.push((
            name,
            Entry {
                seq: 0,
                kind: Kind::System,
                state: State::Stopped,
                nodename: None,
                address: None,
                init_pid: None,
                init_fd: None,
                lease: None,
                socket: None,
                persistent: true,
            },
        ));
    }
    out
}

/// The IPv4 address a system container's DHCP client configured, read from its network
/// namespace (`/proc/PID/net/fib_trie`: a `|-- ADDRESS` line followed by `/32 host LOCAL`).
pub fn netns_address(init_pid: i32) -> Option<String> {
    // The container's root can add addresses without end: read a bounded prefix.
    let trie = crate::untrusted::read_bounded(
        Path::new(&format!("/proc/{init_pid}/net/fib_trie")),
        1 << 20,
    )
    .ok()?;
    local_address(&String::from_utf8_lossy(&trie))
}

fn local_address(trie: &str) -> Option<String> {
    let lines: Vec<&str> = trie.lines().collect();
    lines.windows(2).find_map(|w| {
        let addr = w[0].trim().strip_prefix("|-- ")?;
        let local = w[1].trim() == "/32 host LOCAL";
        (local && !addr.starts_with("127.")).then(|| addr.to_string())
    })
}

/// Moves every uid and gid under `root` up by `by`, so that a rootfs a template built as
/// host root is owned by the container's mapped root instead. `chown` clears setuid and
/// setgid bits, so each mode is put back; ids already in the range are left alone.
pub fn shift_ids(root: &Path, by: (u32, u32)) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::symlink_metadata(root)?.dev();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p)?;
        if m.dev() != dev {
            continue;
        }
        if m.uid() < by.0 || m.gid() < by.1 {
            let uid = if m.uid() < by.0 {
                m.uid() + by.0
            } else {
                m.uid()
            };
            let gid = if m.gid() < by.1 {
                m.gid() + by.1
            } else {
                m.gid()
            };
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid))?;
            if !m.file_type().is_symlink() {
                fs::set_permissions(&p, fs::Permissions::from_mode(m.mode() & 0o7777))?;
            }
        }
        if m.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

fn write_owned(p: &Path, text: &str, mode: u32, ids: (u32, u32)) -> io::Result<()> {
    fs::write(p, text)?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(p, Some(ids.0), Some(ids.1))
}

/// Adds (or replaces) a login `user` with `password` in the rootfs' passwd, shadow and
/// group files, with a home directory; the files stay owned by the container's root.
pub fn set_login(rootfs: &Path, user: &str, password: &str, ids: (u32, u32)) -> io::Result<()> {
    let params =
        sha_crypt::Sha512Params::new(5000).map_err(|e| io::Error::other(format!("{e:?}")))?;
    let hash = sha_crypt::sha512_simple(password, &params)
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    let etc = rootfs.join("etc");
    let read = |f: &str| fs::read_to_string(etc.join(f)).unwrap_or_default();
    let without = |text: String| -> String {
        text.lines()
            .filter(|l| l.split(':').next() != Some(user))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let (uid, home) = if user == "root" {
        (0, "/root".to_string())
    } else {
        (1000, format!("/home/{user}"))
    };
    let shell = if rootfs.join("bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let passwd = if user == "root" {
        read("passwd")
    } else {
        without(read("passwd")) + &format!("{user}:x:{uid}:{uid}::{home}:{shell}\n")
    };
    let mut shadow = without(read("shadow"));
    shadow.push_str(&format!("{user}:{hash}:19000:0:99999:7:::\n"));
    write_owned(&etc.join("passwd"), &passwd, 0o644, ids)?;
    write_owned(&etc.join("shadow"), &shadow, 0o600, ids)?;
    if user != "root" {
        let group = without(read("group")) + &format!("{user}:x:{uid}:\n");
        write_owned(&etc.join("group"), &group, 0o644, ids)?;
        let h = rootfs.join(home.trim_start_matches('/'));
        fs::create_dir_all(&h)?;
        std::os::unix::fs::chown(&h, Some(ids.0 + uid), Some(ids.1 + uid))?;
    }
    Ok(())
}

/// Busybox's template opens a root shell on the console ("press Enter"); the seed's
/// example logs in, so put a getty there, and give udhcpc a script to apply its lease.
fn busybox_console_login(rootfs: &Path, ids: (u32, u32)) -> io::Result<()> {
    let inittab = "::sysinit:/etc/init.d/rcS\n\
                   console::respawn:/bin/getty -L console 115200 vt100\n\
                   ::ctrlaltdel:/bin/reboot\n\
                   ::shutdown:/bin/umount -a -r\n";
    write_owned(&rootfs.join("etc/inittab"), inittab, 0o644, ids)?;
    let rcs = "#!/bin/sh\n/bin/syslogd\n/bin/mount -a\n\
               /bin/udhcpc -b -i eth0 -s /etc/udhcpc.script -q -t 20 >/dev/null 2>&1 &\n";
    write_owned(&rootfs.join("etc/init.d/rcS"), rcs, 0o755, ids)?;
    let script = "#!/bin/sh\n\
                  case \"$1\" in\n\
                  bound|renew)\n\
                  \t/bin/ip addr flush dev \"$interface\"\n\
                  \t/bin/ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n\
                  \t[ -n \"$router\" ] && /bin/ip route add default via ${router%% *} dev \"$interface\"\n\
                  \t;;\n\
                  deconfig) /bin/ip addr flush dev \"$interface\" ;;\n\
                  esac\n\
                  exit 0\n";
    write_owned(&rootfs.join("etc/udhcpc.script"), script, 0o755, ids)?;
    Ok(())
}

/// The directory a template caches its downloads in, for the docs and `ampule.check`.
pub fn cache_dir(template: &str) -> PathBuf {
    Path::new("/var/cache/lxc").join(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_local_address_in_fib_trie() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.213.57.200\n        /32 host LOCAL\n\
                    |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(local_address(trie), Some("10.213.57.200".to_string()));
        assert_eq!(local_address("|-- 127.0.0.1\n /32 host LOCAL\n"), None);
    }

    #[test]
    fn login_lines_replace_an_existing_user() {
        let root = std::env::temp_dir().join(format!("ampule-login-{}", std::process::id()));
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nubuntu:x:5:5::/x:/bin/sh\n",
        )
        .unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let ids = (me.0.saturating_sub(1000), me.1.saturating_sub(1000));
        let ids = if me.0 == 0 { (0, 0) } else { ids };
        set_login(&root, "ubuntu", "secret", ids).unwrap();
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert_eq!(
            passwd.lines().filter(|l| l.starts_with("ubuntu:")).count(),
            1
        );
        assert!(passwd.contains("ubuntu:x:1000:1000::/home/ubuntu:/bin/sh"));
        let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
        let hash = shadow.split(':').nth(1).unwrap();
        assert!(hash.starts_with("$6$"));
        assert!(sha_crypt::sha512_check("secret", hash).is_ok());
        fs::remove_dir_all(&root).unwrap();
    }
}
