//! System containers (`Kind::System`): a whole distribution from an LXC template, booting
//! its own init, with a login on its console. Unlike application containers they persist:
//! `stop` keeps their disk, `start` boots them again, only `destroy` removes them.
//!
//! - States: `Booting` while the template runs and the container starts, `Running`, then
//!   `Stopped` when its init exits (a halt inside it) or `stop` halted it (`Stopping`
//!   while the halt runs), `Booting` again on `start`; `Destroying` on `destroy`.
//! - Who ends it: `destroy`, and end of input: a persistent one is stopped (its disk
//!   stays), the others are removed like application containers.
//! - What the sweep does: a dead instance's persistent containers are adopted, stopped,
//!   by the next port ([`adopt()`]); its others are removed by the start-up sweep.
//!
//! Its own: the consoles (`console.rs`), the dnsmasq that serves them DHCP (`dhcp.rs`), and
//! one template at a time.

pub mod address;
pub mod adopt;
pub mod login;
pub mod template;

pub use address::netns_address;
pub use adopt::adopt;

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eetf::Term;

use crate::config::lxc_log_tail;
use crate::console::Consoles;
use crate::ctx::Ctx;
use crate::dhcp::Dhcp;
use crate::error::Failure;
use crate::lxc::{self, Container};
use crate::names::Kind;
use crate::protocol::{atom, bin, int, map, CreateOpts};
use crate::registry::{Detail, Entry, Refusal, State};
use crate::{init, teardown};

/// How long a create waits for the release of a destroyed application container of the
/// same name before the name counts as in use.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// A clean shutdown (10 s), then a stop (10 s), plus slack.
const HALT_LIMIT: Duration = Duration::from_secs(25);

/// The system containers' room.
pub struct Systems {
    ctx: Arc<Ctx>,
    consoles: Arc<Consoles>,
    dhcp: Dhcp,
    /// liblxc's `create()` fails at once ("error 0") when two run in one process, so
    /// templates run one at a time (they are slow and rare; boots stay concurrent).
    creating: tokio::sync::Mutex<()>,
}

impl Systems {
    pub fn new(ctx: Arc<Ctx>) -> Systems {
        Systems {
            ctx,
            consoles: Arc::default(),
            dhcp: Dhcp::default(),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    fn progress(&self, name: &str, phase: &str) {
        log::info!(container = name; "{phase}");
        self.ctx.out.event(
            "progress",
            map(vec![("name", bin(name)), ("phase", atom(phase))]),
        );
    }

    /// `{create, Opts}`: builds the rootfs from the template, sets the login, boots it and
    /// attaches to its console.
    pub async fn create(&self, opts: CreateOpts) -> Result<Term, Failure> {
        template::check(&opts.template)?;
        let name = self.ctx.name_for(Kind::System, opts.name.clone());
        let detail = Detail::System {
            persistent: opts.persistent,
        };
        let reservation = self.ctx.reserve(&name, detail, RELEASE_WAIT).await?;
        if let Err(e) = self.dhcp.ensure(&self.ctx.host) {
            return Err(Failure::Dhcp(e.to_string()));
        }
        self.progress(&name, "creating");
        if let Err(failure) = self.build(&name, &opts).await {
            self.remove_files(&name).await;
            return Err(failure);
        }
        self.progress(&name, "starting");
        match self.boot(&name).await {
            Ok(pid) => {
                reservation.commit();
                self.progress(&name, "running");
                Ok(map(vec![
                    ("name", bin(&name)),
                    ("kind", atom("system")),
                    ("init_pid", int(pid as i64)),
                ]))
            }
            Err(failure) => {
                self.remove_files(&name).await;
                Err(failure)
            }
        }
    }

    /// Runs the template (one at a time, within the create's timeout).
    async fn build(&self, name: &str, opts: &CreateOpts) -> Result<(), Failure> {
        let one_at_a_time = self.creating.lock().await;
        let permit = self.ctx.gate.permit().await;
        let job = {
            let (ctx, name, opts) = (self.ctx.clone(), name.to_string(), opts.clone());
            tokio::task::spawn_blocking(move || template::build(&ctx.host, &name, &opts))
        };
        // The template's own error, its task's, or the create's timeout: each a failure of
        // its own, never an `io::Error` standing for a timeout.
        let (failure, why) = match tokio::time::timeout(opts.timeout, job).await {
            Ok(Ok(Ok(()))) => return Ok(()),
            Ok(Ok(Err(e))) => (Failure::CreateFailed(e.to_string()), e.to_string()),
            Ok(Err(e)) => (Failure::CreateFailed(e.to_string()), e.to_string()),
            Err(_) => (Failure::CreateTimeout, "template timed out".to_string()),
        };
        drop(permit);
        drop(one_at_a_time);
        let detail = lxc_log_tail(&self.ctx.host.lxcpath.join(name));
        log::error!(container = name; "creating from {} failed: {why}; {detail}", opts.template);
        Err(failure)
    }

    /// Boots a built container and attaches to its console; returns its init's pid.
    async fn boot(&self, name: &str) -> Result<i32, Failure> {
        let permit = self.ctx.gate.permit().await;
        let started = {
            let (lxcpath, n) = (self.ctx.host.lxcpath.clone(), name.to_string());
            tokio::task::spawn_blocking(move || {
                let c = Container::open(&n, &lxcpath)?;
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
                return Err(e.into());
            }
            Err(e) => {
                log::error!(container = name; "start task failed: {e}");
                return Err(Failure::Lxc("start"));
            }
        };
        if let Err(e) = self.consoles.attach(&self.ctx.out, name, fds) {
            log::error!(container = name; "console: {e}");
            return Err(Failure::Console(e.to_string()));
        }
        let running = |e: &Entry| e.state.can_run();
        let init_pid = |e: &mut Entry| e.init_pid = Some(pid);
        let _ = self
            .ctx
            .registry
            .transition(name, State::Running, running, init_pid);
        if let Err(e) = init::watch(&self.ctx, name, pid, self.on_init_exit(name)) {
            log::warn!(container = name; "cannot watch init: {e}");
        }
        Ok(pid)
    }

    /// A system container whose init exits (a halt inside it) is stopped, its disk kept.
    fn on_init_exit(&self, name: &str) -> impl Future<Output = ()> + Send + 'static {
        let (ctx, consoles, name) = (self.ctx.clone(), self.consoles.clone(), name.to_string());
        async move {
            let stopped = ctx.registry.transition(
                &name,
                State::Stopped,
                |e| e.state.can_end(),
                |e| {
                    e.init_pid = None;
                    e.init_fd = None;
                },
            );
            if stopped.is_ok() {
                consoles.close(&name);
                ctx.exit_event(&name, atom("stopped"), None);
            }
        }
    }

    /// `{start, Name}`: boots a stopped system container again.
    pub async fn start(&self, name: &str) -> Result<Term, Failure> {
        let can = |e: &Entry| e.kind() == Kind::System && e.state.can_start();
        self.ctx
            .registry
            .transition(name, State::Booting, can, |_| ())
            .map_err(|r| match r {
                Refusal::Missing => Failure::NotFound,
                Refusal::In(kind, _) if kind.is_application() => Failure::NotSystem,
                Refusal::In(..) => Failure::AlreadyRunning,
            })?;
        match self.boot(name).await {
            Ok(pid) => Ok(map(vec![
                ("name", bin(name)),
                ("init_pid", int(pid as i64)),
            ])),
            Err(failure) => {
                let failed = |e: &Entry| e.state.can_fail();
                let _ = self
                    .ctx
                    .registry
                    .transition(name, State::Stopped, failed, |_| ());
                Err(failure)
            }
        }
    }

    /// `{stop, Name}`: asks init to power off (SIGPWR/halt signal), kills it after 10 s;
    /// the disk stays.
    pub async fn stop(&self, name: &str) -> Result<(), Failure> {
        self.ctx
            .registry
            .transition(name, State::Stopping, |e| e.state.can_stop(), |_| ())
            .map_err(|r| match r {
                Refusal::Missing => Failure::NotFound,
                Refusal::In(..) => Failure::Stopped,
            })?;
        self.consoles.close(name);
        let lxcpath = self.ctx.host.lxcpath.clone();
        let n = name.to_string();
        let halting = tokio::task::spawn_blocking(move || halt(&lxcpath, &n));
        // shutdown() and stop() go through the monitor's command socket; a monitor that does
        // not answer (see destroy) must not hold the request forever: kill it instead.
        if tokio::time::timeout(HALT_LIMIT, halting).await.is_err() {
            log::warn!(container = name; "no halt within {HALT_LIMIT:?}; killing its monitor");
            let (lxcpath, n) = (self.ctx.host.lxcpath.clone(), name.to_string());
            let _ = tokio::task::spawn_blocking(move || teardown::kill_monitor(&lxcpath, &n)).await;
        }
        let n = name.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            teardown::remove_cgroups(&n, Duration::from_secs(2))
        })
        .await;
        let stopped = |e: &mut Entry| {
            e.init_pid = None;
            e.init_fd = None;
        };
        let _ = self
            .ctx
            .registry
            .transition(name, State::Stopped, |e| e.state.can_halt(), stopped);
        Ok(())
    }

    /// Removes a system container entirely (`destroy` claimed it, or the port is closing):
    /// stops it, then its rootfs, config and cgroups.
    pub async fn destroy(&self, name: &str) {
        self.consoles.close(name);
        self.remove_files(name).await;
        self.ctx.registry.forget(name);
    }

    async fn remove_files(&self, name: &str) {
        let lxcpath = self.ctx.host.lxcpath.clone();
        let n = name.to_string();
        let r = tokio::task::spawn_blocking(move || {
            // Not through liblxc: a monitor stalled on a console nobody reads (the credit
            // window is full) does not answer commands, and destroying must never hang.
            let dir = lxcpath.join(&n);
            // Its veth, from the config it was made with (the kernel deletes it with the
            // container's network namespace, after the kill: "nothing left" waits for it).
            let veth = crate::untrusted::read_tail(&dir, Path::new("config"), 64 * 1024)
                .ok()
                .and_then(|c| veth_in(&String::from_utf8_lossy(&c)));
            teardown::kill_monitor(&lxcpath, &n);
            teardown::remove_tree(&dir)?;
            if let Some(v) = veth {
                teardown::wait_link_gone(&v, Duration::from_secs(5));
            }
            teardown::remove_cgroups(&n, Duration::from_secs(2));
            Ok::<_, io::Error>(())
        })
        .await;
        if let Ok(Err(e)) = r {
            log::error!(container = name; "removing failed: {e}");
        }
    }

    /// End of input: persistent containers keep their disk, but nothing of theirs runs
    /// without a port; the others go like application containers. Then the dnsmasq this
    /// instance started stops.
    pub async fn shut_down(&self) {
        let systems: Vec<(String, bool)> = self
            .ctx
            .registry
            .lock()
            .iter()
            .filter_map(|(n, e)| match e.detail {
                Detail::System { persistent } => Some((n.clone(), persistent)),
                _ => None,
            })
            .collect();
        let ends = systems.into_iter().map(|(name, persistent)| async move {
            if persistent {
                let _ = self.stop(&name).await;
            } else {
                self.destroy(&name).await;
            }
        });
        futures::future::join_all(ends).await;
        self.dhcp.stop(&self.ctx.host.state_dir);
    }

    /// `{console, Name, Bytes}`: writes every byte to the console, in order.
    pub async fn console_write(&self, name: &str, data: Vec<u8>) -> Result<(), Failure> {
        let Some(writer) = self.consoles.writer(name) else {
            return Err(match self.ctx.registry.kind_of(name) {
                Some(_) => Failure::NoConsole,
                None => Failure::NotFound,
            });
        };
        writer.write_all(&data).await
    }

    /// `{console_ack, Name, Bytes}`: the client has taken `Bytes` more console bytes.
    pub fn console_ack(&self, name: &str, n: usize) -> Result<(), Failure> {
        self.consoles.ack(name, n)
    }
}

fn halt(lxcpath: &Path, name: &str) {
    if let Ok(c) = Container::open(name, lxcpath) {
        if c.is_running() && c.shutdown(10).is_err() {
            let _ = c.stop();
            c.wait("STOPPED", 10);
        }
    }
}

/// The host-side veth a saved container config names (`lxc.net.0.veth.pair = NAME`).
fn veth_in(config: &str) -> Option<String> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "lxc.net.0.veth.pair").then(|| v.trim().to_string())
    })
}
