//! The request loop: reads frames, runs each request as its own task (a slow boot never
//! delays a `list`), answers by tag, and on end of input destroys every container this
//! instance made before it lets the process exit.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use eetf::Term;
use erl_dist::node::NodeName;
use tokio::io::unix::AsyncFd;
use tokio::sync::{watch, Notify, RwLock};

use crate::boot::{self, Phase, PhaseCell};
use crate::container::{self, AppSpec, Reach, StartError};
use crate::etf::{self, EnvelopeError, Out};
use crate::exits::{Ended, Exits};
use crate::frame::{self, Incoming};
use crate::host::Host;
use crate::leases::{self, Lease, Leases};
use crate::lxc;
use crate::names::{self, Kind};
use crate::oom;
use crate::outbox::Outbox;
use crate::pipe::Receiver;
use crate::protocol::{self, atom, bin, error, int, map, ok, ok_value, tuple, Request, SpawnOpts};
use crate::system;
use crate::teardown;
use crate::timeline::Timeline;

/// How long `destroy` waits for a killed init to exit before it falls back to liblxc's
/// full, synchronous stop.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long an exit's status may lag behind the exit itself (the kernel reports it first;
/// this only covers the port's reader being busy).
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(1);
/// How long the final sweep waits for releases still running (each normally takes tens of
/// milliseconds); past it, their monitors are killed and the files left to the next
/// port's start-up sweep.
const RELEASE_LIMIT: Duration = Duration::from_secs(30);

/// What waiting for a distributed node's readiness needs from the spawn before it.
struct Ready {
    pid: i32,
    began: Instant,
    deadline: tokio::time::Instant,
    phase: Arc<PhaseCell>,
    timeline: Arc<Timeline>,
    exited: watch::Receiver<bool>,
    oom: Option<Arc<oom::Watch>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Booting,
    Running,
    Stopped,
    Destroying,
}

impl State {
    fn atom(self) -> &'static str {
        match self {
            State::Booting => "booting",
            State::Running => "running",
            State::Stopped => "stopped",
            State::Destroying => "destroying",
        }
    }
}

/// One container this instance owns.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub kind: Kind,
    pub state: State,
    pub nodename: Option<String>,
    pub address: Option<Ipv4Addr>,
    pub init_pid: Option<i32>,
    /// A pidfd on the init, from its exit watch: `destroy` kills through it, so that it can
    /// never reach a process that reused the pid.
    pub init_fd: Option<Arc<AsyncFd<OwnedFd>>>,
    pub lease: Option<Lease>,
    /// A sandbox's agent socket (the client's, in `agents_dir`), removed with it.
    pub socket: Option<std::path::PathBuf>,
    /// Kept (stopped, disk intact) when the port exits, and adopted by the next one.
    pub persistent: bool,
}

impl Entry {
    /// An application container that `destroy` has answered for and whose veth, cgroups,
    /// files and address are still being released: gone for the BEAM, not yet for the port.
    fn releasing(&self) -> bool {
        self.kind.is_application() && self.state == State::Destroying
    }
}

/// The port's state shared by every request task.
pub struct Server {
    pub host: Host,
    pub leases: Leases,
    pub out: Outbox,
    /// How inits ended, from the kernel.
    pub exits: Arc<Exits>,
    registry: Mutex<HashMap<String, Entry>>,
    /// Starts hold it shared; shutdown takes it exclusively, so that no container can be
    /// started behind the back of the final sweep.
    gate: Arc<RwLock<()>>,
    local: NodeName,
    seq: AtomicU64,
    /// Woken whenever a name is forgotten: a spawn that wants the name of a container still
    /// being released, and the final sweep, wait on it.
    released: Notify,
    /// Set when input ends: no name is reserved any more.
    closing: AtomicBool,
    pub system: system::Consoles,
}

impl Server {
    pub fn new(host: Host, out: Outbox) -> std::io::Result<Arc<Server>> {
        let leases = Leases::new(&host.state_dir, host.subnet, &host.instance)?;
        let local = NodeName::new(
            &format!("ampule_port_{}", host.instance),
            &host.subnet.host().to_string(),
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        let adopted: HashMap<String, Entry> = system::adopt(&host).into_iter().collect();
        Ok(Arc::new(Server {
            host,
            leases,
            out,
            exits: Exits::start(),
            registry: Mutex::new(adopted),
            gate: Arc::new(RwLock::new(())),
            local,
            seq: AtomicU64::new(0),
            released: Notify::new(),
            closing: AtomicBool::new(false),
            system: system::Consoles::default(),
        }))
    }

    pub fn registry(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock would be a bug in this file; the map itself stays
        // consistent (every update is a single insert/remove/field write), so keep serving.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Claims `name` for a new container, or says why not. A destroyed container's name is
    /// free as soon as `destroy` answered: if its release is still running, this waits
    /// for it (up to `limit`, then the name is in use) rather than refusing the name.
    pub async fn reserve(&self, name: &str, kind: Kind, limit: Duration) -> Result<u64, Out> {
        let wait = self.after_releases(|| match self.try_reserve(name, kind) {
            Err(None) => None,
            Err(Some(out)) => Some(Err(out)),
            Ok(seq) => Some(Ok(seq)),
        });
        tokio::time::timeout(limit, wait)
            .await
            .unwrap_or_else(|_| Err(error(atom("name_in_use"))))
    }

    /// Runs `check` now and again after every release until it gives an answer. The wake-up
    /// is armed before each check, so a release between the two is never missed.
    async fn after_releases<T>(&self, mut check: impl FnMut() -> Option<T>) -> T {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(answer) = check() {
                return answer;
            }
            released.await;
        }
    }

    /// `Err(None)`: the name belongs to an application container being released.
    fn try_reserve(&self, name: &str, kind: Kind) -> Result<u64, Option<Out>> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(Some(error(atom("closing"))));
        }
        let mut reg = self.registry();
        if reg.get(name).is_some_and(Entry::releasing) {
            return Err(None);
        }
        if reg.contains_key(name)
            || container::dir(&self.host, name).exists()
            || self.host.lxcpath.join(name).exists()
        {
            return Err(Some(error(atom("name_in_use"))));
        }
        let seq = self.next_seq();
        reg.insert(
            name.to_string(),
            Entry {
                seq,
                kind,
                state: State::Booting,
                nodename: None,
                address: None,
                init_pid: None,
                init_fd: None,
                lease: None,
                socket: None,
                persistent: false,
            },
        );
        Ok(seq)
    }

    pub fn forget(&self, name: &str) {
        self.registry().remove(name);
        self.released.notify_waiters();
    }

    /// Waits until no application container is still being released.
    async fn releases_done(&self) {
        self.after_releases(|| (!self.registry().values().any(Entry::releasing)).then_some(()))
            .await
    }

    /// Shared hold on the start gate (see `gate`).
    pub async fn start_permit(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.gate.clone().read_owned().await
    }

    /// Serves requests from `input` until end of input, then cleans up.
    pub async fn run(self: Arc<Self>, mut input: Receiver) {
        loop {
            match frame::read_frame(&mut input).await {
                Ok(Incoming::Frame(bytes)) => self.clone().handle_frame(bytes),
                Ok(Incoming::TooLarge(size)) => self.out.event(
                    "bad_frame",
                    tuple(vec![atom("frame_too_large"), int(size as i64)]),
                ),
                Ok(Incoming::Eof) => break,
                Err(e) => {
                    log::error!("reading the protocol pipe failed: {e}");
                    break;
                }
            }
        }
        self.shutdown().await;
    }

    fn handle_frame(self: Arc<Self>, bytes: Vec<u8>) {
        match sort_frame(&bytes) {
            Sorted::Answer(out) => self.out.send(&out),
            Sorted::Run { tag, request } => {
                tokio::spawn(async move {
                    let result = self.clone().execute(request).await;
                    self.out.send(&protocol::reply(&tag, result));
                });
            }
        }
    }

    async fn execute(self: Arc<Self>, req: Request) -> Out {
        match req {
            Request::Ping => ok_value(atom("pong")),
            Request::List => self.list(),
            Request::Info(name) => self.info(&name),
            Request::LogTail(name) => self.log_tail(&name),
            Request::Spawn(opts) => self.spawn(opts).await,
            Request::Destroy(name) => self.destroy(&name).await,
            Request::Stop(name) => {
                let kind = self.registry().get(&name).map(|e| e.kind);
                match kind {
                    Some(Kind::System) => system::stop(self, &name).await,
                    _ => self.destroy(&name).await,
                }
            }
            Request::Create(opts) => system::create(self, opts).await,
            Request::Start(name) => system::start(self, &name).await,
            Request::ConsoleWrite(name, data) => system::console_write(self, &name, data).await,
            Request::ConsoleAck(name, n) => system::console_ack(&self, &name, n),
        }
    }

    fn list(&self) -> Out {
        let reg = self.registry();
        // A destroyed container whose release is still running is already gone for the
        // BEAM: `destroy` has answered.
        let mut entries: Vec<(&String, &Entry)> =
            reg.iter().filter(|(_, e)| !e.releasing()).collect();
        entries.sort_by_key(|(_, e)| e.seq);
        ok_value(protocol::list(
            entries.into_iter().map(|(n, _)| bin(n)).collect(),
        ))
    }

    /// `{log_tail, Name}`: what an application container's node printed last.
    fn log_tail(&self, name: &str) -> Out {
        match self.registry().get(name).filter(|e| !e.releasing()) {
            None => error(atom("not_found")),
            Some(e) if !e.kind.is_application() => error(atom("no_log")),
            Some(_) => ok_value(bin(container::log_tail(&self.host, name))),
        }
    }

    fn info(&self, name: &str) -> Out {
        let reg = self.registry();
        let Some(e) = reg.get(name).filter(|e| !e.releasing()) else {
            return error(atom("not_found"));
        };
        let undefined = || atom("undefined");
        ok_value(map(vec![
            ("name", bin(name)),
            ("kind", atom(e.kind.atom())),
            ("state", atom(e.state.atom())),
            (
                "nodename",
                e.nodename.as_deref().map(bin).unwrap_or_else(undefined),
            ),
            (
                "address",
                match e.kind {
                    Kind::App => e.address.map(|a| a.to_string()),
                    Kind::Sandbox => None,
                    Kind::System => e.init_pid.and_then(system::netns_address),
                }
                .map(bin)
                .unwrap_or_else(undefined),
            ),
            (
                "init_pid",
                e.init_pid.map(|p| int(p as i64)).unwrap_or_else(undefined),
            ),
        ]))
    }

    /// `{spawn, Opts}`, in phases: reserve the name, take what the mode needs (an address,
    /// or the client's agent socket), prepare and start the container, watch its init, and
    /// for a distributed node wait until it is ready. A sandbox is answered once its init
    /// runs: its readiness is its agent's hello, which only the client sees.
    async fn spawn(self: Arc<Self>, opts: SpawnOpts) -> Out {
        let kind = if opts.sandbox.is_some() {
            Kind::Sandbox
        } else {
            Kind::App
        };
        let seq = self.next_seq();
        let name = opts
            .name
            .clone()
            .unwrap_or_else(|| names::generated(kind, &self.host.instance, seq));
        // The boot timeout covers the whole spawn, a wait for a same-named release too.
        let began = Instant::now();
        let deadline = tokio::time::Instant::from_std(began + opts.boot_timeout);
        if let Err(e) = self.reserve(&name, kind, opts.boot_timeout).await {
            return e;
        }
        let reach = match self.reach_for(&name, &opts) {
            Ok(r) => r,
            Err(out) => {
                self.forget(&name);
                return out;
            }
        };
        let spec = AppSpec { name, reach, opts };
        let timeline = Arc::new(Timeline::new(began));
        let phase = Arc::new(PhaseCell::default());
        let pid = match self.start(&spec, &phase, &timeline, deadline).await {
            Ok(pid) => pid,
            Err(reason) => return self.fail_boot(&spec, reason).await,
        };
        let oom = match oom::Watch::register(self.host.cgroups, &spec.name) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                log::warn!(container = spec.name.as_str(); "cannot watch for OOM kills: {e}");
                None
            }
        };
        let exited = match self.clone().watch_init(&spec.name, pid, oom.clone()) {
            Ok(rx) => rx,
            Err(e) => {
                log::error!(container = spec.name.as_str(); "cannot watch init {pid}: {e}");
                return self
                    .fail_boot(&spec, tuple(vec![atom("lxc"), atom("init_pid")]))
                    .await;
            }
        };
        match &spec.reach {
            Reach::Agent { .. } => self.answer_sandbox(&spec, pid, began, &exited),
            Reach::Dist { lease, cookie } => {
                let (lease, cookie) = (lease.clone(), cookie.clone());
                let ready = Ready {
                    pid,
                    began,
                    deadline,
                    phase,
                    timeline,
                    exited,
                    oom,
                };
                self.await_node(&spec, &lease, &cookie, ready).await
            }
        }
    }

    /// What the mode needs: an address and a cookie for a distributed node; for a sandbox,
    /// the client's agent socket, checked and handed to the node's uid.
    fn reach_for(&self, name: &str, opts: &SpawnOpts) -> Result<Reach, Out> {
        if let Some(sandbox) = &opts.sandbox {
            return match container::claim_agent_socket(&self.host, &sandbox.socket) {
                Ok(()) => {
                    if let Some(e) = self.registry().get_mut(name) {
                        e.socket = Some(sandbox.socket.clone());
                    }
                    Ok(Reach::Agent {
                        socket: sandbox.socket.clone(),
                    })
                }
                Err(e) => {
                    log::warn!(container = name; "agent socket refused: {e}");
                    Err(error(tuple(vec![
                        atom("bad_option_value"),
                        atom("sandbox"),
                        bin(sandbox.socket.to_string_lossy().as_bytes()),
                    ])))
                }
            };
        }
        let lease = match self.leases.acquire(name) {
            Ok(Some(l)) => l,
            Ok(None) => return Err(error(atom("no_address"))),
            Err(e) => return Err(error(tuple(vec![atom("leases"), bin(e.to_string())]))),
        };
        if let Some(e) = self.registry().get_mut(name) {
            e.address = Some(lease.address);
            e.lease = Some(lease.clone());
        }
        Ok(Reach::Dist {
            lease,
            cookie: boot::random_cookie(),
        })
    }

    /// Prepares the rootfs and starts the container within the deadline; its init's pid.
    async fn start(
        self: &Arc<Self>,
        spec: &AppSpec,
        phase: &Arc<PhaseCell>,
        timeline: &Arc<Timeline>,
        deadline: tokio::time::Instant,
    ) -> Result<i32, Term> {
        let permit = self.start_permit().await;
        let mut job = {
            let (srv, sp, ph, tl) = (self.clone(), spec.clone(), phase.clone(), timeline.clone());
            tokio::task::spawn_blocking(move || {
                container::prepare(&srv.host, &sp)?;
                tl.mark("prepare");
                ph.set(Phase::Start);
                container::start_app(&srv.host, &sp, &tl)
            })
        };
        let started = tokio::select! {
            r = &mut job => r,
            _ = tokio::time::sleep_until(deadline) => {
                let stuck = phase.get();
                let _ = job.await;
                return Err(boot_timeout(stuck, self, &spec.name));
            }
        };
        drop(permit);
        let pid = match started {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => return Err(start_error(e, self, &spec.name)),
            Err(join) => {
                log::error!(container = spec.name.as_str(); "start task failed: {join}");
                return Err(tuple(vec![atom("lxc"), atom("start")]));
            }
        };
        if let Some(e) = self.registry().get_mut(&spec.name) {
            e.init_pid = Some(pid);
            e.nodename = spec.nodename();
        }
        Ok(pid)
    }

    /// A sandbox runs once its init does (unless that exited already).
    fn answer_sandbox(
        &self,
        spec: &AppSpec,
        pid: i32,
        began: Instant,
        exited: &watch::Receiver<bool>,
    ) -> Out {
        let mut reg = self.registry();
        if !*exited.borrow() {
            if let Some(e) = reg.get_mut(&spec.name) {
                e.state = State::Running;
            }
        }
        drop(reg);
        ok_value(map(vec![
            ("name", bin(&spec.name)),
            ("kind", atom("sandbox")),
            ("init_pid", int(pid as i64)),
            ("boot_ms", int(began.elapsed().as_millis() as i64)),
        ]))
    }

    /// Waits until a distributed node is ready (found in its EPMD, handshake done), then
    /// answers; a node that exits or does not get there in time is destroyed.
    async fn await_node(&self, spec: &AppSpec, lease: &Lease, cookie: &str, r: Ready) -> Out {
        let Ready {
            pid,
            began,
            deadline,
            phase,
            timeline,
            mut exited,
            oom,
        } = r;
        phase.set(Phase::Epmd);
        enum Outcome {
            Ready,
            Exited,
            Timeout,
        }
        let outcome = tokio::select! {
            _ = boot::wait_ready(lease.address, &spec.name, cookie, &self.local, &phase, &timeline) => Outcome::Ready,
            _ = exited.wait_for(|e| *e) => Outcome::Exited,
            _ = tokio::time::sleep_until(deadline) => Outcome::Timeout,
        };
        let name = &spec.name;
        let reason = match outcome {
            Outcome::Ready => {
                let mut reg = self.registry();
                if *exited.borrow() {
                    None
                } else {
                    if let Some(e) = reg.get_mut(name) {
                        e.state = State::Running;
                    }
                    drop(reg);
                    let ms = began.elapsed().as_millis() as i64;
                    log::debug!(container = name.as_str(); "ready in {}", timeline.summary());
                    return ok_value(map(vec![
                        ("name", bin(name)),
                        ("nodename", bin(spec.nodename().unwrap_or_default())),
                        ("address", bin(lease.address.to_string())),
                        ("cookie", bin(cookie)),
                        ("init_pid", int(pid as i64)),
                        ("boot_ms", int(ms)),
                    ]));
                }
            }
            Outcome::Exited => None,
            Outcome::Timeout => Some(boot_timeout(phase.get(), self, name)),
        };
        let reason = match reason {
            Some(r) => r,
            None => tuple(vec![
                atom("boot_failed"),
                self.exit_reason(pid, oom.as_deref()).await,
                bin(container::log_tail(&self.host, name)),
            ]),
        };
        self.fail_boot(spec, reason).await
    }

    /// Why an application container's node exited, from the kernel: `oom`, the node's exit
    /// status, `killed` (a signal), or `unknown` when the kernel's report was not seen.
    async fn exit_reason(&self, pid: i32, oom: Option<&oom::Watch>) -> Term {
        let ended = self.exits.of(pid, EXIT_REPORT_WAIT).await;
        if oom.is_some_and(|w| w.killed_by_oom(ended)) {
            return atom("oom");
        }
        match ended {
            Ended::Exited(status) => int(status as i64),
            Ended::Signaled(_) => atom("killed"),
            Ended::Unknown => atom("unknown"),
        }
    }

    /// Destroys a container that did not boot, then answers with `reason`.
    async fn fail_boot(&self, spec: &AppSpec, reason: Term) -> Out {
        if let Some(e) = self.registry().get_mut(&spec.name) {
            e.state = State::Destroying;
        }
        self.remove(&spec.name, spec.lease().cloned()).await;
        error(reason)
    }

    /// Removes a container's files, veth and lease, and forgets it.
    pub async fn remove(&self, name: &str, lease: Option<Lease>) {
        let host_name = name.to_string();
        let veth = lease.as_ref().map(|l| l.veth());
        let lxcpath = self.host.apps.clone();
        let dir = container::dir(&self.host, name);
        let address = lease.as_ref().map(|l| l.address);
        let bridge = self.host.bridge.clone();
        let r = tokio::task::spawn_blocking(move || {
            let timeline = Timeline::new(Instant::now());
            teardown::stop(&lxcpath, &host_name);
            timeline.mark("lxc_stop");
            teardown::remove_tree(&dir)?;
            timeline.mark("remove_tree");
            if let Some(v) = veth {
                teardown::wait_link_gone(&v, std::time::Duration::from_secs(5));
            }
            teardown::remove_cgroups(&host_name, std::time::Duration::from_secs(2));
            timeline.mark("veth_cgroups");
            if let Some(ip) = address {
                leases::forget_address(ip, &bridge);
            }
            timeline.mark("forget_address");
            log::debug!(container = host_name.as_str(); "removed in {}", timeline.summary());
            Ok::<_, std::io::Error>(())
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!(container = name; "removing failed: {e}"),
            Err(e) => log::error!(container = name; "removal task failed: {e}"),
        }
        if let Some(l) = lease {
            self.leases.release(&l);
        }
        let socket = self.registry().get(name).and_then(|e| e.socket.clone());
        if let Some(s) = socket {
            let _ = std::fs::remove_file(s);
        }
        self.forget(name);
    }

    /// Watches a container's init; when it exits on its own after boot, the container is
    /// destroyed and the BEAM told. The receiver turns `true` at exit.
    pub fn watch_init(
        self: Arc<Self>,
        name: &str,
        pid: i32,
        oom: Option<Arc<oom::Watch>>,
    ) -> std::io::Result<watch::Receiver<bool>> {
        let fd = Arc::new(lxc::watch_exit(pid)?);
        if let Some(e) = self.registry().get_mut(name) {
            e.init_fd = Some(fd.clone());
        }
        let (tx, rx) = watch::channel(false);
        let name = name.to_string();
        tokio::spawn(async move {
            let _ = fd.readable().await;
            let _ = tx.send(true);
            let lease = {
                let mut reg = self.registry();
                match reg.get_mut(&name) {
                    Some(e) if e.state == State::Running && e.kind.is_application() => {
                        e.state = State::Destroying;
                        e.lease.clone()
                    }
                    Some(e) if e.state == State::Running => {
                        e.state = State::Stopped;
                        e.init_pid = None;
                        e.init_fd = None;
                        drop(reg);
                        self.system.close(&name);
                        self.out.event(
                            "exit",
                            map(vec![("name", bin(&name)), ("status", atom("stopped"))]),
                        );
                        return;
                    }
                    _ => return,
                }
            };
            let status = self.exit_reason(pid, oom.as_deref()).await;
            log::info!(container = name.as_str(); "init exited ({status}); destroying");
            self.remove(&name, lease).await;
            self.out
                .event("exit", map(vec![("name", bin(&name)), ("status", status)]));
        });
        Ok(rx)
    }

    /// Answers once every process of the container has exited. An application container's
    /// veth, cgroups, files and address are released right behind, off the caller's path
    /// (liblxc's teardown is ~40 ms, most of it the kernel deleting the veth): the name is
    /// reusable at once (see `reserve`) and the final sweep waits for every release.
    async fn destroy(self: &Arc<Self>, name: &str) -> Out {
        let (kind, lease, init) = {
            let mut reg = self.registry();
            match reg.get_mut(name) {
                None => return error(atom("not_found")),
                Some(e) if e.state == State::Booting => return error(atom("booting")),
                Some(e) if e.state == State::Destroying => return error(atom("not_found")),
                Some(e) => {
                    e.state = State::Destroying;
                    (e.kind, e.lease.clone(), e.init_fd.clone())
                }
            }
        };
        if kind == Kind::System {
            system::destroy_files(self, name).await;
            return ok();
        }
        if self.kill(name, init).await {
            let srv = self.clone();
            let name = name.to_string();
            tokio::spawn(async move { srv.remove(&name, lease).await });
        } else {
            // The promise is "nothing runs when destroy answers": without a confirmed
            // exit, answer only after liblxc's own stop and the whole release.
            self.remove(name, lease).await;
        }
        ok()
    }

    /// Kills an application container's init and waits until it has exited: the kernel
    /// kills the rest of a pid namespace and reaps it before its init is gone, so nothing
    /// of the container runs any more when this returns. The init is killed directly,
    /// not through liblxc's `stop()`, which only returns once the monitor has finished
    /// the whole teardown; the monitor sees the exit and tears down as it always does.
    /// Returns whether the exit was seen.
    async fn kill(&self, name: &str, init: Option<Arc<AsyncFd<OwnedFd>>>) -> bool {
        let began = Instant::now();
        let Some(init) = init else {
            return false;
        };
        if let Err(e) = lxc::kill_pidfd(&init) {
            log::warn!(container = name; "cannot kill init: {e}");
        }
        if tokio::time::timeout(KILL_WAIT, init.readable())
            .await
            .is_err()
        {
            log::warn!(container = name; "init still running {KILL_WAIT:?} after the kill");
            return false;
        }
        log::debug!(container = name; "dead in {:.1} ms", began.elapsed().as_secs_f64() * 1000.0);
        true
    }

    /// Releases that did not finish within [`RELEASE_LIMIT`] (a monitor that no longer
    /// answers liblxc): their monitors are killed, so that nothing of them runs, and what
    /// is left on disk belongs to this instance, whose lock goes at exit: the next port's
    /// start-up sweep removes it.
    async fn abandon_releases(&self) {
        let stuck: Vec<String> = self
            .registry()
            .iter()
            .filter(|(_, e)| e.releasing())
            .map(|(n, _)| n.clone())
            .collect();
        log::warn!(
            "releases not done after {RELEASE_LIMIT:?}: {stuck:?}; left to the next port's sweep"
        );
        let lxcpath = self.host.apps.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for name in stuck {
                teardown::kill_monitor(&lxcpath, &name);
            }
        })
        .await;
    }

    /// End of input: wait for starts in flight, then destroy every transient container.
    /// The gate stays shut for good, so a request still in flight can never start a
    /// container after the sweep (it waits until the process exits).
    async fn shutdown(self: &Arc<Self>) {
        self.closing.store(true, Ordering::SeqCst);
        // A spawn waiting for a release must not take the name (and an address) now.
        self.released.notify_waiters();
        std::mem::forget(self.gate.clone().write_owned().await);
        let victims: Vec<(String, Entry)> = self
            .registry()
            .iter_mut()
            .filter(|(_, e)| e.kind.is_application() && e.state != State::Destroying)
            .map(|(n, e)| {
                e.state = State::Destroying;
                (n.clone(), e.clone())
            })
            .collect();
        let jobs = victims.into_iter().map(|(name, e)| async move {
            self.remove(&name, e.lease).await;
        });
        futures::future::join_all(jobs).await;
        if tokio::time::timeout(RELEASE_LIMIT, self.releases_done())
            .await
            .is_err()
        {
            self.abandon_releases().await;
        }
        let systems: Vec<(String, bool)> = self
            .registry()
            .iter()
            .filter(|(_, e)| e.kind == Kind::System)
            .map(|(n, e)| (n.clone(), e.persistent))
            .collect();
        // Persistent containers keep their disk, but nothing of theirs runs without a port;
        // the others go like application containers.
        let ends = systems.into_iter().map(|(name, persistent)| {
            let srv = self.clone();
            async move {
                if persistent {
                    system::stop(srv, &name).await;
                } else {
                    system::destroy_files(&srv, &name).await;
                }
            }
        });
        futures::future::join_all(ends).await;
        self.system.dhcp.stop(&self.host.state_dir);
        crate::host::release_agents_dir(&self.host);
        self.host.code.release();
        crate::host::release_lock(&self.host);
        log::info!("input closed; every transient container is gone");
    }
}

/// What one frame from the BEAM comes to, before anything runs.
#[derive(Debug)]
pub enum Sorted {
    /// Send this at once: a `bad_frame` event, or the error reply to a bad request.
    Answer(Out),
    /// Run `request`; its result goes back with `tag`, byte for byte as the caller sent it.
    Run { tag: Vec<u8>, request: Request },
}

/// Checks, decodes and parses one frame, without side effects: every frame gets exactly
/// one answer, either here or from running the request (the property test's subject).
pub fn sort_frame(bytes: &[u8]) -> Sorted {
    let env = match etf::envelope(bytes) {
        Ok(env) => env,
        Err(EnvelopeError::Term(e)) => {
            return Sorted::Answer(protocol::event(
                "bad_frame",
                tuple(vec![
                    atom("bad_term"),
                    tuple(vec![atom(e.atom()), bin(e.to_string())]),
                ]),
            ))
        }
        Err(EnvelopeError::NotEnvelope) => {
            return Sorted::Answer(protocol::event("bad_frame", atom("bad_envelope")))
        }
    };
    let request = etf::decode_body(env.body)
        .map_err(|_| protocol::RequestError::Bad)
        .and_then(|t| protocol::parse(&t));
    match request {
        Err(e) => Sorted::Answer(protocol::reply(env.tag, e.to_reply(env.body))),
        Ok(request) => Sorted::Run {
            tag: env.tag.to_vec(),
            request,
        },
    }
}

fn boot_timeout(phase: Phase, srv: &Server, name: &str) -> Term {
    tuple(vec![
        atom("boot_timeout"),
        atom(phase.atom()),
        bin(container::log_tail(&srv.host, name)),
    ])
}

fn start_error(e: StartError, srv: &Server, name: &str) -> Term {
    match e {
        StartError::Io(e) if e.kind() == std::io::ErrorKind::AlreadyExists => atom("name_in_use"),
        StartError::Io(e) => {
            log::error!(container = name; "preparing the rootfs failed: {e}");
            tuple(vec![atom("rootfs"), bin(e.to_string())])
        }
        StartError::Lxc(e) => {
            log::error!(container = name; "{e}; {}", container::lxc_log_tail(&container::dir(&srv.host, name)));
            tuple(vec![atom("lxc"), atom(e.call)])
        }
        StartError::NoInit => tuple(vec![atom("lxc"), atom("init_pid")]),
    }
}
