//! Every kind of container ended every way, from one table: each row makes a container of
//! its kind with a port of its own, ends it, asserts what the client hears, and that
//! nothing of the container is left on the host.
//!
//! | ending | how | what the client hears |
//! |---|---|---|
//! | destroy | `{destroy, Name}` | `ok`, no exit event, then `not_found` |
//! | EOF | the port's input closed | the port exits 0 |
//! | crash sweep | the port killed by SIGKILL; the container runs on; a new port starts | the new port owns nothing, its start-up sweep removed it |
//! | OOM | the container's memory limit passed from inside | nodes: exit event `oom`; a system container: its hog is killed, the container runs on (then destroyed) |
//!
//! for application containers, sandboxes and system containers (busybox). The states
//! behind it are in `src/registry.rs`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::console::*;
use common::*;
use eetf::Term;

const MIB: i32 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    App,
    Sandbox,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Destroy,
    Eof,
    CrashSweep,
    Oom,
}

macro_rules! table {
    ($($test:ident: $kind:ident, $end:ident;)*) => {
        $(
            #[test]
            fn $test() {
                row(Kind::$kind, End::$end);
            }
        )*
    };
}

table! {
    an_app_container_destroyed_leaves_nothing: App, Destroy;
    an_app_container_goes_with_the_ports_input: App, Eof;
    an_app_container_of_a_killed_port_goes_with_the_next_ports_sweep: App, CrashSweep;
    an_app_container_over_its_memory_limit_ends_with_oom: App, Oom;
    a_sandbox_destroyed_leaves_nothing: Sandbox, Destroy;
    a_sandbox_goes_with_the_ports_input: Sandbox, Eof;
    a_sandbox_of_a_killed_port_goes_with_the_next_ports_sweep: Sandbox, CrashSweep;
    a_sandbox_over_its_memory_limit_ends_with_oom: Sandbox, Oom;
    a_system_container_destroyed_leaves_nothing: System, Destroy;
    a_system_container_goes_with_the_ports_input: System, Eof;
    a_system_container_of_a_killed_port_goes_with_the_next_ports_sweep: System, CrashSweep;
    a_system_container_over_its_memory_limit_loses_the_hog_not_its_init: System, Oom;
}

/// A container under test, and what finds what it could leave.
struct Made {
    name: String,
    address: Option<String>,
    veth: Option<String>,
    node: Option<Node>,
    /// A sandbox's agent socket, the client's listener on it and the node's connection.
    socket: Option<PathBuf>,
    agent: Option<(UnixListener, UnixStream)>,
}

impl Made {
    fn leftovers(&self) -> Vec<String> {
        let mut left = leftovers(&self.name, self.address.as_deref(), self.veth.as_deref());
        if let Some(s) = self.socket.as_ref().filter(|s| s.exists()) {
            left.push(format!("socket {}", s.display()));
        }
        left
    }

    fn assert_nothing_left(&self, limit: Duration) {
        let left = eventually_empty(limit, || self.leftovers());
        assert_eq!(left, Vec::<String>::new(), "{} left", self.name);
    }
}

fn row(kind: Kind, end: End) {
    let mut port = Port::start();
    let oom = end == End::Oom;
    let made = match kind {
        Kind::App => app(&mut port, oom),
        Kind::Sandbox => sandbox(&mut port, oom),
        Kind::System => system(&mut port, &format!("{end:?}").to_lowercase(), oom),
    };
    assert!(!made.leftovers().is_empty(), "{} exists", made.name);
    match end {
        End::Destroy => destroy(&mut port, &made),
        End::Eof => {
            let status = port.close(Duration::from_secs(60));
            assert_eq!(status.code(), Some(0));
        }
        End::CrashSweep => crash_sweep(port, &made),
        End::Oom if kind == Kind::System => system_oom(&mut port, &made),
        End::Oom => node_oom(&mut port, kind, &made),
    }
    made.assert_nothing_left(Duration::from_secs(15));
}

fn app(port: &mut Port, oom: bool) -> Made {
    let opts = if oom {
        map(vec![("memory", int(128 * MIB))])
    } else {
        map(vec![])
    };
    let node = port.spawn_node(1, opts);
    Made {
        name: node.name.clone(),
        address: Some(node.address.clone()),
        veth: Some(node.veth()),
        node: Some(node),
        socket: None,
        agent: None,
    }
}

/// A sandbox agent: connects, says `ready`, and on the client's next frame allocates
/// 400 MiB (over the OOM rows' limit); a closed socket ends it.
const AGENT: &str = r#"{ok, S} = gen_tcp:connect({local, "/run/ampule/agent.sock"}, 0, [binary, {packet, 4}, {active, false}]), ok = gen_tcp:send(S, <<"ready">>), {ok, _} = gen_tcp:recv(S, 0), B = binary:copy(<<0>>, 400 * 1024 * 1024), receive _ -> B end."#;

fn sandbox(port: &mut Port, oom: bool) -> Made {
    let tag = format!("lc{}", rand_suffix());
    let (listener, socket) = listen(port, &tag);
    let mut opts = sandbox_opts(&socket, AGENT);
    if oom {
        let Term::Map(m) = &mut opts else {
            unreachable!()
        };
        m.map.insert(atom("memory"), int(128 * MIB));
    }
    let info = unwrap_ok(port.call(1, tuple(vec![atom("spawn"), opts])));
    let name = text(get(&info, "name"));
    let mut conn = accept_within(&listener, Duration::from_secs(60));
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).expect("the agent's ready");
    let mut said = vec![0u8; u32::from_be_bytes(len) as usize];
    conn.read_exact(&mut said).unwrap();
    assert_eq!(said, b"ready");
    Made {
        name,
        address: None,
        veth: None,
        node: None,
        socket: Some(socket),
        agent: Some((listener, conn)),
    }
}

/// The node's connection to `listener`, polled for up to `limit`.
fn accept_within(listener: &UnixListener, limit: Duration) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("no agent connection within {limit:?}: {e}"),
        }
    }
}

fn system(port: &mut Port, end: &str, oom: bool) -> Made {
    let mut opts = vec![("name", bin(format!("lc-{end}-{}", std::process::id())))];
    if oom {
        opts.push(("memory", int(32 * MIB)));
    }
    let name = create(port, map(opts));
    Made {
        veth: Some(veth_of(&name)),
        name,
        address: None,
        node: None,
        socket: None,
        agent: None,
    }
}

/// Frames the port sent before the last reply read (those `reply` kept aside).
fn sent_before(port: &mut Port) -> Vec<Term> {
    std::iter::from_fn(|| port.next_frame(Duration::ZERO)).collect()
}

fn exit_events_of(frames: &[Term], name: &str) -> Vec<Term> {
    frames
        .iter()
        .filter(|t| {
            matches!(t, Term::Tuple(tu) if tu.elements.len() == 3
            && tu.elements[1] == atom("exit")
            && get(&tu.elements[2], "name") == &bin(name))
        })
        .cloned()
        .collect()
}

fn destroy(port: &mut Port, made: &Made) {
    let name = bin(&made.name);
    assert_eq!(
        port.call(10, tuple(vec![atom("destroy"), name.clone()])),
        atom("ok")
    );
    assert_eq!(
        unwrap_err(port.call(11, tuple(vec![atom("info"), name]))),
        atom("not_found")
    );
    let before = sent_before(port);
    assert_eq!(exit_events_of(&before, &made.name), Vec::<Term>::new());
}

fn crash_sweep(mut port: Port, made: &Made) {
    // No other row's port may sweep what the crash leaves before it is looked at.
    let sweeps = hold_sweeps();
    port.kill();
    assert!(
        !container_pids(&made.name).is_empty(),
        "{} runs on without its port",
        made.name
    );
    assert!(
        made.leftovers().iter().any(|l| l.starts_with("directory")),
        "{:?}",
        made.leftovers()
    );
    drop(sweeps);
    let mut next = Port::start();
    assert_eq!(unwrap_ok(next.call(1, atom("list"))), list(vec![]));
    made.assert_nothing_left(Duration::from_secs(15));
    drop(next);
}

fn node_oom(port: &mut Port, kind: Kind, made: &Made) {
    match kind {
        Kind::App => {
            let node = made.node.as_ref().unwrap();
            let r = node.rpc("binary", "copy", "[<<0>>, 400 * 1024 * 1024]");
            assert!(r.starts_with("{badrpc,"), "{}", &r[..r.len().min(200)]);
        }
        _ => {
            let (_, conn) = made.agent.as_ref().unwrap();
            let mut conn = conn;
            conn.write_all(&[0, 0, 0, 2, b'g', b'o']).unwrap();
        }
    }
    let event = port
        .next_frame(Duration::from_secs(60))
        .expect("exit event");
    assert_exit(&event, &made.name, atom("oom"));
    assert_eq!(
        unwrap_err(port.call(20, tuple(vec![atom("info"), bin(&made.name)]))),
        atom("not_found")
    );
}

fn system_oom(port: &mut Port, made: &Made) {
    let name = made.name.as_str();
    let info =
        |port: &mut Port, tag| unwrap_ok(port.call(tag, tuple(vec![atom("info"), bin(name)])));
    let init = get(&info(port, 20), "init_pid").clone();
    let mut console = ConsoleReader::new(name);
    login(port, &mut console, name);
    console.seen.clear();
    // dd's 64 MiB buffer, filled from /dev/zero, against a 32 MiB limit without swap.
    write(
        port,
        21,
        name,
        b"dd if=/dev/zero of=/dev/null bs=67108864 count=1; echo after-$((6*7))\n",
    );
    assert!(
        console.until(port, Duration::from_secs(30), |b| contains(b, "after-42")),
        "{:?}",
        console.text()
    );
    assert!(console.text().contains("Killed"), "{:?}", console.text());
    let after = info(port, 22);
    assert_eq!(get(&after, "state"), &atom("running"));
    assert_eq!(get(&after, "init_pid"), &init, "the same init");
    destroy(port, made);
}
