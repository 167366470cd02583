//! Everything the port sends goes through one queue and one writer task, so frames never
//! interleave; the `log` facade writes here too, as `log` events, never to stdout. A line
//! goes to stderr only before the hello (when there is no one to send it to yet), or with
//! `--log-stderr`: a client that has a logger (the Elixir library's is `Logger`, with the
//! container's name as metadata and in the text) gets each line once, where its own log
//! level applies.

use std::sync::OnceLock;

use eetf::Term;
use tokio::sync::mpsc;

use crate::etf::{self, Out};
use crate::protocol::{atom, bin, event, map};

/// What the writer task receives.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Vec<u8>),
    /// Everything queued before this is written; then the writer stops.
    Close,
}

/// A handle on the send queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
}

impl Outbox {
    /// A new outbox and the receiving end that the writer task drains.
    pub fn new() -> (Outbox, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Outbox { tx }, rx)
    }

    /// Queues one term; a closed queue means the port is shutting down, and the term is
    /// dropped with nobody left to read it.
    pub fn send(&self, out: &Out) {
        let _ = self.tx.send(Outgoing::Frame(etf::encode(out)));
    }

    /// Asks the writer to stop once what is queued is written (clones held by the logger
    /// and by watcher tasks would otherwise keep it waiting forever).
    pub fn close(&self) {
        let _ = self.tx.send(Outgoing::Close);
    }

    pub fn event(&self, kind: &str, data: Term) {
        self.send(&event(kind, data));
    }
}

static LOG_OUTBOX: OnceLock<Outbox> = OnceLock::new();
static ALSO_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let container = r
            .key_values()
            .get(log::kv::Key::from("container"))
            .map(|v| v.to_string());
        let message = r.args().to_string();
        let outbox = LOG_OUTBOX.get();
        if outbox.is_none() || ALSO_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
            match &container {
                Some(c) => eprintln!("ampule_port [{}] {c}: {message}", r.level()),
                None => eprintln!("ampule_port [{}] {message}", r.level()),
            }
        }
        if let Some(out) = outbox {
            let level = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug | log::Level::Trace => "debug",
            };
            out.event(
                "log",
                map(vec![
                    ("level", atom(level)),
                    ("message", bin(&message)),
                    (
                        "container",
                        container.map(bin).unwrap_or_else(|| atom("undefined")),
                    ),
                ]),
            );
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger: stderr until [`forward_logs`] is called (and after it too when
/// `also_stderr`), `log` events from then on.
pub fn init_logging(level: log::LevelFilter, also_stderr: bool) {
    ALSO_STDERR.store(also_stderr, std::sync::atomic::Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// From now on log records also go to the BEAM.
pub fn forward_logs(out: Outbox) {
    let _ = LOG_OUTBOX.set(out);
}
