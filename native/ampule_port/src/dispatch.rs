//! The request loop: reads frames, runs each request as its own task (a slow boot never
//! delays a `list`), hands it to the room of its kind of container (`app`, `sandbox`,
//! `system`), renders the answer once, by tag, and on end of input shuts every room down
//! in order before it lets the process exit.

use std::sync::Arc;

use eetf::Term;

use crate::app::{self, Apps};
use crate::ctx::Ctx;
use crate::error::Failure;
use crate::etf::{self, EnvelopeError, Out};
use crate::frame::{self, Incoming};
use crate::host::{self, Host};
use crate::leases::Leases;
use crate::names::Kind;
use crate::node::{self, release};
use crate::outbox::Outbox;
use crate::pipe::Receiver;
use crate::protocol::{self, atom, bin, error, int, map, ok, ok_value, tuple, Request};
use crate::registry::{Detail, Entry};
use crate::sandbox::Sandboxes;
use crate::system::{self, Systems};

/// The port: what every kind shares, and each kind's room.
pub struct Server {
    ctx: Arc<Ctx>,
    apps: Apps,
    sandboxes: Sandboxes,
    systems: Systems,
}

/// `{ok, Value}` or `{error, Reason}`.
fn value(r: Result<Term, Failure>) -> Out {
    match r {
        Ok(v) => ok_value(v),
        Err(f) => error(f.reason()),
    }
}

/// `ok` or `{error, Reason}`.
fn done(r: Result<(), Failure>) -> Out {
    match r {
        Ok(()) => ok(),
        Err(f) => error(f.reason()),
    }
}

impl Server {
    pub fn new(host: Host, out: Outbox) -> std::io::Result<Arc<Server>> {
        let leases = Leases::new(&host.state_dir, host.subnet, &host.instance)?;
        let local = app::local_node(&host)?;
        let adopted = system::adopt(&host);
        let ctx = Arc::new(Ctx::new(host, leases, out, adopted));
        Ok(Arc::new(Server {
            apps: Apps::new(ctx.clone(), local),
            sandboxes: Sandboxes::new(ctx.clone()),
            systems: Systems::new(ctx.clone()),
            ctx,
        }))
    }

    /// Serves requests from `input` until end of input, then cleans up.
    pub async fn run(self: Arc<Self>, mut input: Receiver) {
        loop {
            match frame::read_frame(&mut input).await {
                Ok(Incoming::Frame(bytes)) => self.clone().handle_frame(bytes),
                Ok(Incoming::TooLarge(size)) => self.ctx.out.event(
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
            Sorted::Answer(out) => self.ctx.out.send(&out),
            Sorted::Run { tag, request } => {
                tokio::spawn(async move {
                    let result = self.execute(*request).await;
                    self.ctx.out.send(&protocol::reply(&tag, result));
                });
            }
        }
    }

    async fn execute(&self, req: Request) -> Out {
        match req {
            Request::Ping => ok_value(atom("pong")),
            Request::List => self.list(),
            Request::Info(name) => value(self.info(&name)),
            Request::LogTail(name) => value(self.log_tail(&name)),
            Request::Spawn(opts) => match opts.sandbox.as_ref().map(|s| s.socket.clone()) {
                Some(socket) => value(self.sandboxes.spawn(opts, socket).await),
                None => value(self.apps.spawn(opts).await),
            },
            Request::Destroy(name) => done(self.destroy(&name).await),
            Request::Stop(name) => match self.ctx.registry.kind_of(&name) {
                Some(Kind::System) => done(self.systems.stop(&name).await),
                _ => done(self.destroy(&name).await),
            },
            Request::Create(opts) => value(self.systems.create(opts).await),
            Request::Start(name) => value(self.systems.start(&name).await),
            Request::ConsoleWrite(name, data) => {
                done(self.systems.console_write(&name, data).await)
            }
            Request::ConsoleAck(name, n) => done(self.systems.console_ack(&name, n)),
        }
    }

    fn list(&self) -> Out {
        let reg = self.ctx.registry.lock();
        // A destroyed container whose release is still running is already gone for the
        // BEAM: `destroy` has answered.
        let mut entries: Vec<(&String, &Entry)> =
            reg.iter().filter(|(_, e)| !e.releasing()).collect();
        entries.sort_by_key(|(_, e)| e.seq);
        ok_value(protocol::list(
            entries.into_iter().map(|(n, _)| bin(n)).collect(),
        ))
    }

    /// `name`'s entry, unless it is gone for the BEAM (see [`Entry::releasing`]).
    fn entry(&self, name: &str) -> Result<Entry, Failure> {
        self.ctx
            .registry
            .lock()
            .get(name)
            .filter(|e| !e.releasing())
            .cloned()
            .ok_or(Failure::NotFound)
    }

    /// `{log_tail, Name}`: what an application container's node printed last.
    fn log_tail(&self, name: &str) -> Result<Term, Failure> {
        match self.entry(name)?.kind() {
            Kind::System => Err(Failure::NoLog),
            Kind::App | Kind::Sandbox => Ok(bin(node::log_tail(&self.ctx.host, name))),
        }
    }

    fn info(&self, name: &str) -> Result<Term, Failure> {
        let e = self.entry(name)?;
        let undefined = || atom("undefined");
        let (nodename, address) = match &e.detail {
            Detail::App { nodename, .. } => (nodename.clone(), app::address(&e)),
            Detail::Sandbox { .. } => (None, None),
            Detail::System { .. } => (None, e.init_pid.and_then(system::netns_address)),
        };
        Ok(map(vec![
            ("name", bin(name)),
            ("kind", atom(e.kind().atom())),
            ("state", atom(e.state.atom())),
            ("nodename", nodename.map(bin).unwrap_or_else(undefined)),
            ("address", address.map(bin).unwrap_or_else(undefined)),
            (
                "init_pid",
                e.init_pid.map(|p| int(p as i64)).unwrap_or_else(undefined),
            ),
        ]))
    }

    /// Claims a running or stopped container and hands it to its kind to end.
    async fn destroy(&self, name: &str) -> Result<(), Failure> {
        let entry = self.ctx.registry.claim_for_destroy(name)?;
        match entry.kind() {
            Kind::App => self.apps.destroy(name, entry).await,
            Kind::Sandbox => self.sandboxes.destroy(name, entry).await,
            Kind::System => self.systems.destroy(name).await,
        }
        Ok(())
    }

    /// End of input: no name is reserved any more, starts in flight finish, then the
    /// rooms shut down: application containers and sandboxes (and every release still
    /// running), then system containers and their dnsmasq; last the agents directory, the
    /// staged code paths and this instance's lock.
    async fn shutdown(&self) {
        self.ctx.registry.close();
        self.ctx.gate.shut().await;
        futures::future::join(self.apps.shut_down(), self.sandboxes.shut_down()).await;
        release::finish_releases(&self.ctx).await;
        self.systems.shut_down().await;
        host::release_agents_dir(&self.ctx.host);
        self.ctx.host.code.release();
        host::release_lock(&self.ctx.host);
        log::info!("input closed; every transient container is gone");
    }
}

/// What one frame from the BEAM comes to, before anything runs.
#[derive(Debug)]
pub enum Sorted {
    /// Send this at once: a `bad_frame` event, or the error reply to a bad request.
    Answer(Out),
    /// Run `request`; its result goes back with `tag`, byte for byte as the caller sent it.
    /// (Boxed: a spawn's options are large beside an answer.)
    Run { tag: Vec<u8>, request: Box<Request> },
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
            request: Box::new(request),
        },
    }
}
