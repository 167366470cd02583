//! A real `ampule_port` behind real pipes (fds 3/4, as the BEAM's `nouse_stdio` gives it),
//! a real `erl` to reach the nodes, and counters of what a container can leave behind.
#![allow(dead_code)]

pub mod console;
pub mod lab;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use eetf::{Atom, Binary, FixInteger, List, Map, Term, Tuple};

/// Where the ports under test keep their state, which bridge and subnet they use: the
/// defaults, or `AMPULE_STATE_DIR`, `AMPULE_BRIDGE` and `AMPULE_SUBNET` (a `/24` ending in
/// `.0`), so that two checkouts can run their suites on one machine without meeting.
pub fn state_dir() -> String {
    std::env::var("AMPULE_STATE_DIR").unwrap_or_else(|_| "/var/lib/ampule".into())
}
pub fn bridge() -> String {
    std::env::var("AMPULE_BRIDGE").unwrap_or_else(|_| "ampule0".into())
}
pub fn subnet() -> String {
    std::env::var("AMPULE_SUBNET").unwrap_or_else(|_| "10.213.57.0/24".into())
}
/// The host's address on the bridge: the subnet's first.
pub fn host_address() -> String {
    let net = subnet();
    let base = net.split('/').next().unwrap_or("").trim_end_matches(".0");
    format!("{base}.1")
}
/// The arguments that point a port at [`state_dir`], [`bridge`] and [`subnet`].
pub fn settings_args() -> Vec<String> {
    vec![
        "--state-dir".into(),
        state_dir(),
        "--bridge".into(),
        bridge(),
        "--subnet".into(),
        subnet(),
    ]
}

pub fn atom(s: &str) -> Term {
    Term::from(Atom::from(s))
}
pub fn bin(s: impl AsRef<[u8]>) -> Term {
    Term::from(Binary::from(s.as_ref()))
}
pub fn int(i: i32) -> Term {
    Term::from(FixInteger::from(i))
}
pub fn tuple(v: Vec<Term>) -> Term {
    Term::from(Tuple::from(v))
}
pub fn list(v: Vec<Term>) -> Term {
    Term::from(List::from(v))
}
pub fn map(pairs: Vec<(&str, Term)>) -> Term {
    Term::from(Map::from(
        pairs
            .into_iter()
            .map(|(k, v)| (atom(k), v))
            .collect::<std::collections::HashMap<_, _>>(),
    ))
}

pub fn encode(t: &Term) -> Vec<u8> {
    let mut v = Vec::new();
    t.encode(&mut v).unwrap();
    v
}

/// Looks up an atom-keyed field of a map term.
pub fn get<'a>(t: &'a Term, key: &str) -> &'a Term {
    match t {
        Term::Map(m) => m
            .map
            .get(&atom(key))
            .unwrap_or_else(|| panic!("no {key} in {t}")),
        _ => panic!("not a map: {t}"),
    }
}

pub fn text(t: &Term) -> String {
    match t {
        Term::Binary(b) => String::from_utf8_lossy(&b.bytes).into_owned(),
        Term::Atom(a) => a.name.clone(),
        other => panic!("not text: {other}"),
    }
}

/// Checks that `event` is `{event, exit, #{name, status, ...}}` for `name` with `status`;
/// returns its `log` (the node's last output), if it has one.
pub fn assert_exit(event: &Term, name: &str, status: Term) -> Option<String> {
    let Term::Tuple(t) = event else {
        panic!("not an event: {event}")
    };
    assert_eq!(&t.elements[..2], &[atom("event"), atom("exit")], "{event}");
    let m = &t.elements[2];
    assert_eq!(get(m, "name"), &bin(name), "{event}");
    assert_eq!(get(m, "status"), &status, "{event}");
    match m {
        Term::Map(map) => map.map.get(&atom("log")).map(text),
        _ => None,
    }
}

/// `{ok, V}` -> V, or panic with the reply.
pub fn unwrap_ok(t: Term) -> Term {
    match &t {
        Term::Tuple(tu) if tu.elements.len() == 2 && tu.elements[0] == atom("ok") => {
            tu.elements[1].clone()
        }
        _ => panic!("expected {{ok, _}}, got {t}"),
    }
}

/// The reason of `{error, Reason}`, or panic.
pub fn unwrap_err(t: Term) -> Term {
    match &t {
        Term::Tuple(tu) if tu.elements.len() == 2 && tu.elements[0] == atom("error") => {
            tu.elements[1].clone()
        }
        _ => panic!("expected {{error, _}}, got {t}"),
    }
}

/// A port's start-up sweep removes what dead instances of the same state directory left,
/// so a test that looks at what a crash leaves behind must not let another test's port
/// start meanwhile: ports start under the read side, [`hold_sweeps`] takes the write side.
static SWEEPS: RwLock<()> = RwLock::new(());

/// Keeps every port of this test binary from starting (and sweeping) until dropped.
pub fn hold_sweeps() -> RwLockWriteGuard<'static, ()> {
    SWEEPS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Port {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: mpsc::Receiver<Vec<u8>>,
    pending: VecDeque<Term>,
    pub hello: Term,
}

impl Port {
    pub fn start() -> Port {
        Port::start_with(&[])
    }

    /// Starts the binary with the protocol on fds 3 (in) and 4 (out), like the BEAM does.
    pub fn start_with(args: &[&str]) -> Port {
        Port::start_by(Command::new("/bin/sh"), args)
    }

    /// [`Port::start_with`] through `prefix` (see [`Port::spawn_by`]).
    pub fn start_by(prefix: Command, args: &[&str]) -> Port {
        let _sweeps = SWEEPS
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut p = Port::spawn_by(prefix, args);
        p.hello = p.next_frame(Duration::from_secs(30)).expect("no hello");
        p
    }

    pub fn spawn(args: &[&str]) -> Port {
        Port::spawn_by(Command::new("/bin/sh"), args)
    }

    /// [`Port::spawn`] through `prefix` (e.g. `ip netns exec NS`), which execs what follows.
    pub fn spawn_by(mut prefix: Command, args: &[&str]) -> Port {
        let mut child = prefix
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >&2"#)
            .arg(env!("CARGO_BIN_EXE_ampule_port"))
            .args(settings_args())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ampule_port");
        let mut out = child.stdout.take().unwrap();
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || loop {
            let mut len = [0u8; 4];
            if out.read_exact(&mut len).is_err() {
                return;
            }
            let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
            if out.read_exact(&mut buf).is_err() || tx.send(buf).is_err() {
                return;
            }
        });
        Port {
            stdin: child.stdin.take(),
            child,
            frames,
            pending: VecDeque::new(),
            hello: atom("none"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next frame that is not a `log` event, decoded.
    /// The next `log` event (which [`Port::next_frame`] skips); other frames are kept.
    pub fn next_log(&mut self, timeout: Duration) -> Option<Term> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let bytes = self.frames.recv_timeout(left).ok()?;
            let t = Term::decode(&bytes[..]).expect("the port sent a term eetf cannot read");
            match &t {
                Term::Tuple(tu) if tu.elements.len() == 3 && tu.elements[1] == atom("log") => {
                    return Some(t)
                }
                _ => self.pending.push_back(t),
            }
        }
    }

    pub fn next_frame(&mut self, timeout: Duration) -> Option<Term> {
        if let Some(t) = self.pending.pop_front() {
            return Some(t);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let bytes = self.frames.recv_timeout(left).ok()?;
            let t = Term::decode(&bytes[..]).expect("the port sent a term eetf cannot read");
            if let Term::Tuple(tu) = &t {
                if tu.elements.len() == 3 && tu.elements[1] == atom("log") {
                    continue;
                }
            }
            return Some(t);
        }
    }

    pub fn send_raw(&mut self, body: &[u8]) {
        let stdin = self.stdin.as_mut().expect("input closed");
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        stdin.write_all(&buf).unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, t: &Term) {
        self.send_raw(&encode(t));
    }

    /// Waits for the reply tagged `tag`, keeping every other frame for later.
    pub fn reply(&mut self, tag: i32, timeout: Duration) -> Term {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        let mut found = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(t) = self.next_frame(left) else {
                break;
            };
            if let Term::Tuple(tu) = &t {
                if tu.elements.len() == 2 && tu.elements[0] == int(tag) {
                    found = Some(tu.elements[1].clone());
                    break;
                }
            }
            skipped.push(t);
        }
        for t in skipped.into_iter().rev() {
            self.pending.push_front(t);
        }
        found.unwrap_or_else(|| panic!("no reply tagged {tag} within {timeout:?}"))
    }

    pub fn call(&mut self, tag: i32, req: Term) -> Term {
        self.send(&tuple(vec![int(tag), req]));
        self.reply(tag, Duration::from_secs(60))
    }

    /// Spawns with `opts` and returns the reply map.
    pub fn spawn_node(&mut self, tag: i32, opts: Term) -> Node {
        let info = unwrap_ok(self.call(tag, tuple(vec![atom("spawn"), opts])));
        Node::from_info(&info)
    }

    /// Closes the port's input and waits for it to exit.
    pub fn close(mut self, timeout: Duration) -> ExitStatus {
        drop(self.stdin.take());
        wait_exit(&mut self.child, timeout)
    }

    /// SIGKILL, as a crash would; the process is reaped before this returns.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill the port");
        let _ = self.child.wait();
    }

    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        wait_exit(&mut self.child, timeout)
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = wait_exit_opt(&mut self.child, Duration::from_secs(30));
    }
}

fn wait_exit_opt(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    wait_exit_opt(child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the port did not exit within {timeout:?}")
    })
}

/// A booted node as the spawn reply describes it.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub nodename: String,
    pub address: String,
    pub cookie: String,
}

impl Node {
    pub fn from_info(info: &Term) -> Node {
        Node {
            name: text(get(info, "name")),
            nodename: text(get(info, "nodename")),
            address: text(get(info, "address")),
            cookie: text(get(info, "cookie")),
        }
    }

    /// The host-side veth: `amp` and the whole address in hex.
    pub fn veth(&self) -> String {
        let ip: std::net::Ipv4Addr = self.address.parse().unwrap();
        format!("amp{:08x}", u32::from(ip))
    }

    /// Runs `expr` (an Erlang expression using `Node`) on a fresh host `erl` that connects
    /// with the node's cookie; returns what it printed with `~p`.
    pub fn eval(&self, expr: &str) -> String {
        eval_with_cookie(&self.nodename, &self.cookie, expr)
    }

    pub fn rpc(&self, m: &str, f: &str, args: &str) -> String {
        self.eval(&format!("rpc:call(Node, {m}, {f}, {args}, 10000)"))
    }

    /// Everything this container could leave on the host, described; empty means clean.
    pub fn leftovers(&self) -> Vec<String> {
        leftovers(&self.name, Some(&self.address), Some(&self.veth()))
    }
}

pub fn eval_with_cookie(nodename: &str, cookie: &str, expr: &str) -> String {
    let probe = format!(
        "probe_{}_{}@{}",
        std::process::id(),
        rand_suffix(),
        host_address()
    );
    let script = format!(
        "Node = '{nodename}', erlang:set_cookie(Node, '{cookie}'), \
         R = ({expr}), io:format(\"~p\", [R]), halt()."
    );
    let out = Command::new("erl")
        .args(["-noshell", "-noinput", "-name", &probe, "-eval", &script])
        .stdin(Stdio::null())
        .output()
        .expect("run erl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A probe `erl` that neither listens nor registers (so it starts no EPMD), for `eval`s
/// from places where nothing may be left running: `prefix` runs it (e.g. in a netns).
pub fn eval_by(
    mut prefix: Command,
    host: &str,
    nodename: &str,
    cookie: &str,
    expr: &str,
) -> String {
    let probe = format!("probe_{}_{}@{host}", std::process::id(), rand_suffix());
    let script = format!(
        "Node = '{nodename}', erlang:set_cookie(Node, '{cookie}'), \
         R = ({expr}), io:format(\"~p\", [R]), halt()."
    );
    let out = prefix
        .args(["erl", "-noshell", "-noinput", "-start_epmd", "false"])
        .args(["-dist_listen", "false", "-name", &probe, "-eval", &script])
        .stdin(Stdio::null())
        .output()
        .expect("run erl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos ^ (N.fetch_add(1, Ordering::Relaxed) << 32)
}

/// What a container named `name` may have left: its directory, address lease, veth,
/// cgroups in any hierarchy, and processes whose command line names it.
pub fn leftovers(name: &str, address: Option<&str>, veth: Option<&str>) -> Vec<String> {
    let mut found = Vec::new();
    // System containers live under lxc/, application containers under apps/ (a tmpfs).
    for sub in ["lxc", "apps"] {
        let dir = Path::new(&state_dir()).join(sub).join(name);
        if dir.exists() {
            found.push(format!("directory {}", dir.display()));
        }
    }
    if let Some(a) = address {
        let lease = Path::new(&state_dir()).join("leases").join(a);
        if let Ok(owner) = std::fs::read_to_string(&lease) {
            if owner.contains(name) {
                found.push(format!("lease {}", lease.display()));
            }
        }
    }
    if let Some(v) = veth {
        if Path::new("/sys/class/net").join(v).exists() {
            // Another test's container may hold the same address by now; only count the
            // veth if no live container owns its lease.
            let lease_owner = address
                .and_then(|a| {
                    std::fs::read_to_string(Path::new(&state_dir()).join("leases").join(a)).ok()
                })
                .unwrap_or_default();
            if lease_owner.is_empty() || lease_owner.contains(name) {
                found.push(format!("veth {v}"));
            }
        }
    }
    for cg in cgroups_named(name) {
        found.push(format!("cgroup {}", cg.display()));
    }
    for pid in processes_mentioning(&format!("{name}@")) {
        found.push(format!("process {pid}"));
    }
    found
}

pub fn cgroups_named(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        dirs.extend(rd.flatten().map(|e| e.path()));
    }
    for d in dirs {
        for prefix in ["lxc.monitor.", "lxc.payload."] {
            let p = d.join(format!("{prefix}{name}"));
            if p.exists() {
                out.push(p);
            }
        }
    }
    out
}

/// The directory of container `name`'s cgroup that holds `controller`'s files: on cgroup
/// v2 one directory has them all (`/sys/fs/cgroup/lxc.payload.NAME`), on v1 each
/// controller has its own hierarchy (`/sys/fs/cgroup/pids/lxc.payload.NAME`).
pub fn cgroup_dir(name: &str, controller: &str) -> PathBuf {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        root.join(format!("lxc.payload.{name}"))
    } else {
        root.join(controller).join(format!("lxc.payload.{name}"))
    }
}

/// Host PIDs of the processes in container `name`: those of its pids cgroup and of the
/// cgroups below it (a distribution's init makes its own).
pub fn container_pids(name: &str) -> Vec<u32> {
    fn below(dir: &Path, out: &mut Vec<u32>) {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(
                procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                below(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    below(&cgroup_dir(name, "pids"), &mut out);
    out
}

/// Whether process `pid` exists and is not a zombie (exited, waiting for its parent).
pub fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                if String::from_utf8_lossy(&cmd).contains(needle) {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}

/// Polls `f` until it returns an empty list or `limit` passes; returns the last list.
pub fn eventually_empty(limit: Duration, f: impl Fn() -> Vec<String>) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = f();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The soft and hard limits of open files of process `pid` ("Max open files" in its
/// `/proc/PID/limits`).
pub fn open_files_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

/// The agents directory the port's hello names (clients make sandbox sockets in it).
pub fn agents_dir(port: &Port) -> PathBuf {
    let Term::Tuple(t) = &port.hello else {
        panic!("hello: {}", port.hello)
    };
    PathBuf::from(text(get(&t.elements[2], "agents_dir")))
}

/// A listener in the port's agents directory, as a client makes one per sandbox.
pub fn listen(port: &Port, name: &str) -> (UnixListener, PathBuf) {
    let path = agents_dir(port).join(format!("{name}.sock"));
    (UnixListener::bind(&path).unwrap(), path)
}

/// `{spawn, Opts}` options of a sandbox whose node runs `eval`, reaching `socket`.
pub fn sandbox_opts(socket: &Path, eval: &str) -> Term {
    map(vec![
        (
            "sandbox",
            map(vec![("socket", bin(socket.to_string_lossy().as_bytes()))]),
        ),
        ("args", list(vec![bin("-eval"), bin(eval)])),
    ])
}
