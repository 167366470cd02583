//! Entry point: move the protocol off the standard streams, check the host, say hello, serve.

use std::process::ExitCode;

use ampule_port::dispatch::Server;
use ampule_port::frame;
use ampule_port::host;
use ampule_port::outbox::{self, Outbox, Outgoing};
use ampule_port::pipe::{self, Receiver, Sender};
use ampule_port::protocol::{self, atom, bin, int, map};
use ampule_port::settings::Settings;
use ampule_port::sweep;

/// `EX_CONFIG`: the host is not ready for containers.
const EXIT_UNREADY: u8 = 78;
/// `EX_USAGE`: bad arguments, or not started as a port.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let settings = Settings::from_args(std::env::args().skip(1));
    // Before any thread exists (setting the environment is not thread-safe).
    let path = std::env::var("PATH").unwrap_or_default();
    let state_dir = settings.as_ref().ok().map(|s| s.state_dir.as_path());
    std::env::set_var("PATH", host::search_path(&path, state_dir));
    let (input, output) = match (pipe::take_private(3, false), pipe::take_private(4, true)) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ampule_port: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = pipe::detach_stdio() {
        eprintln!("ampule_port: cannot detach standard streams: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ampule_port: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    runtime.block_on(serve(input, output, settings))
}

async fn serve(
    input: std::os::fd::OwnedFd,
    output: std::os::fd::OwnedFd,
    settings: Result<Settings, String>,
) -> ExitCode {
    let (out, mut queue) = Outbox::new();
    let mut writer = match Sender::from_owned_fd(output) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ampule_port: output pipe: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let writer_task = tokio::spawn(async move {
        while let Some(Outgoing::Frame(bytes)) = queue.recv().await {
            if frame::write_frame(&mut writer, &bytes).await.is_err() {
                break;
            }
        }
    });
    let finish = |code: u8, out: Outbox| async move {
        out.close();
        let _ = writer_task.await;
        ExitCode::from(code)
    };

    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            out.event(
                "fatal",
                map(vec![
                    ("reason", atom("bad_arguments")),
                    ("message", bin(&e)),
                ]),
            );
            return finish(EXIT_USAGE, out).await;
        }
    };
    outbox::init_logging(settings.log_level, settings.log_stderr);
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log::warn!("cannot become a child subreaper ({e}); exited lxc monitors may linger");
    }
    ampule_port::cgroup::remember_home();
    let prepared = tokio::task::spawn_blocking(move || host::prepare(&settings, sweep::run)).await;
    let (host, sweep) = match prepared {
        Ok(Ok(h)) => h,
        Ok(Err(u)) => {
            log::error!("{u}");
            out.event(
                "fatal",
                map(vec![
                    ("reason", atom(u.reason)),
                    ("message", bin(&u.message)),
                ]),
            );
            return finish(EXIT_UNREADY, out).await;
        }
        Err(e) => {
            out.event(
                "fatal",
                map(vec![
                    ("reason", atom("internal")),
                    ("message", bin(e.to_string())),
                ]),
            );
            return finish(EXIT_UNREADY, out).await;
        }
    };
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
        ]),
    );
    // Log events only after the hello, which is always the first frame.
    outbox::forward_logs(out.clone());
    if sweep.instances > 0 || !sweep.containers.is_empty() || sweep.leases > 0 {
        log::warn!(
            "removed leftovers of {} crashed port instance(s): {} container(s) {:?}, {} lease(s)",
            sweep.instances,
            sweep.containers.len(),
            sweep.containers,
            sweep.leases
        );
    }
    tokio::spawn(reap_children());
    let server = match Server::new(host, out.clone()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start serving: {e}");
            return finish(EXIT_UNREADY, out).await;
        }
    };
    let input = match Receiver::from_owned_fd(input) {
        Ok(i) => i,
        Err(e) => {
            log::error!("input pipe: {e}");
            return finish(EXIT_USAGE, out).await;
        }
    };
    server.clone().run(input).await;
    drop(server);
    finish(0, out).await
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
