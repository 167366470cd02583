//! Entry point: move the protocol off the standard streams, check the host, say hello, serve.

use std::os::fd::OwnedFd;
use std::process::ExitCode;

use ampule_port::dispatch::Server;
use ampule_port::frame;
use ampule_port::host::{self, Host};
use ampule_port::outbox::{self, Outbox, Outgoing};
use ampule_port::pipe::{self, Receiver, Sender};
use ampule_port::protocol::{self, atom, bin, int, map};
use ampule_port::settings::Settings;
use ampule_port::sweep::{self, Sweep};

/// `EX_CONFIG`: the host is not ready for containers.
const EXIT_UNREADY: u8 = 78;
/// `EX_USAGE`: bad arguments, or not started as a port.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    // Not a port run: the tables the client's tests compare with their own (src/tables.rs).
    if std::env::args().nth(1).as_deref() == Some("--print-tables") {
        print!("{}", ampule_port::tables::render());
        return ExitCode::SUCCESS;
    }
    let settings = Settings::from_args(std::env::args().skip(1));
    // Before any thread exists (setting the environment is not thread-safe).
    let path = std::env::var("PATH").unwrap_or_default();
    let state_dir = settings.as_ref().ok().map(|s| s.state_dir.as_path());
    std::env::set_var("PATH", host::search_path(&path, state_dir));
    let (input, output) = match (pipe::take_private(3, false), pipe::take_private(4, true)) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => return unusable(e),
    };
    if let Err(e) = pipe::detach_stdio() {
        return unusable(format!("cannot detach standard streams: {e}"));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return unusable(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(serve(input, output, settings))
}

/// Not started as a port (or unable to be one): said on stderr, as there is no protocol.
fn unusable(why: impl std::fmt::Display) -> ExitCode {
    eprintln!("ampule_port: {why}");
    ExitCode::from(EXIT_USAGE)
}

async fn serve(input: OwnedFd, output: OwnedFd, settings: Result<Settings, String>) -> ExitCode {
    let (out, mut queue) = Outbox::new();
    let mut writer = match Sender::from_owned_fd(output) {
        Ok(w) => w,
        Err(e) => return unusable(format!("output pipe: {e}")),
    };
    let writer_task = tokio::spawn(async move {
        while let Some(Outgoing::Frame(bytes)) = queue.recv().await {
            if frame::write_frame(&mut writer, &bytes).await.is_err() {
                break;
            }
        }
    });
    let code = run(input, &out, settings).await;
    out.close();
    let _ = writer_task.await;
    ExitCode::from(code)
}

/// Checks the host, says hello and serves until end of input; the exit code.
async fn run(input: OwnedFd, out: &Outbox, settings: Result<Settings, String>) -> u8 {
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            fatal(out, "bad_arguments", e);
            return EXIT_USAGE;
        }
    };
    outbox::init_logging(settings.log_level, settings.log_stderr);
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log::warn!("cannot become a child subreaper ({e}); exited lxc monitors may linger");
    }
    ampule_port::cgroup::remember_home();
    let (host, sweep) = match prepare(out, settings).await {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    hello(out, &host);
    // Log events only after the hello, which is always the first frame.
    outbox::forward_logs(out.clone());
    report(&sweep);
    tokio::spawn(reap_children());
    let server = match Server::new(host, out.clone()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start serving: {e}");
            return EXIT_UNREADY;
        }
    };
    let input = match Receiver::from_owned_fd(input) {
        Ok(i) => i,
        Err(e) => {
            log::error!("input pipe: {e}");
            return EXIT_USAGE;
        }
    };
    server.clone().run(input).await;
    0
}

/// Prepares the host and sweeps what crashed instances left (blocking work, off the async
/// threads); a host that is not ready is the port's fatal event.
async fn prepare(out: &Outbox, settings: Settings) -> Result<(Host, Sweep), u8> {
    match tokio::task::spawn_blocking(move || host::prepare(&settings, sweep::run)).await {
        Ok(Ok(prepared)) => Ok(prepared),
        Ok(Err(u)) => {
            log::error!("{u}");
            fatal(out, u.reason, u.message);
            Err(EXIT_UNREADY)
        }
        Err(e) => {
            fatal(out, "internal", e.to_string());
            Err(EXIT_UNREADY)
        }
    }
}

/// `{event, fatal, #{reason, message}}`: why this port cannot serve, its last frame.
fn fatal(out: &Outbox, reason: &str, message: impl AsRef<[u8]>) {
    out.event(
        "fatal",
        map(vec![("reason", atom(reason)), ("message", bin(message))]),
    );
}

/// `{event, hello, ...}`: the first frame, once the host is ready.
fn hello(out: &Outbox, host: &Host) {
    out.event(
        "hello",
        map(vec![
            ("protocol", int(protocol::PROTOCOL_VERSION as i64)),
            ("version", bin(env!("CARGO_PKG_VERSION"))),
            ("lxc_version", bin(&host.lxc_version)),
            ("bridge", bin(&host.bridge)),
            ("host_address", bin(host.subnet.host().to_string())),
            ("subnet", bin(host.subnet.to_string())),
            ("instance", bin(&host.instance)),
            ("agents_dir", bin(host.agents.to_string_lossy().as_bytes())),
            // The host uid a node runs as: a sandbox's agent socket's peer must have it.
            (
                "node_uid",
                int((host.uids.start + ampule_port::node::NODE_UID) as i64),
            ),
        ]),
    );
}

/// Says what the start-up sweep removed, if anything.
fn report(sweep: &Sweep) {
    if sweep.instances > 0 || !sweep.containers.is_empty() || sweep.leases > 0 {
        log::warn!(
            "removed leftovers of {} crashed port instance(s): {} container(s) {:?}, {} lease(s)",
            sweep.instances,
            sweep.containers.len(),
            sweep.containers,
            sweep.leases
        );
    }
}

/// As a child subreaper the port inherits liblxc's double-forked monitors; reap them (and
/// anything else orphaned below us) so no zombie outlives its container.
async fn reap_children() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut sigchld) = signal(SignalKind::child()) else {
        log::warn!("cannot watch SIGCHLD; exited children will not be reaped");
        return;
    };
    loop {
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
        if sigchld.recv().await.is_none() {
            return;
        }
    }
}
