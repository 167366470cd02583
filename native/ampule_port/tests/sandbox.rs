//! Sandboxes through the real binary: a container without distribution or network whose
//! node reaches its client only through the agent socket the client made, mounted by the
//! port. The agent here is a few lines of `-eval`; the real one is Ampule's (Elixir tests).

mod common;

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use common::*;
use eetf::Term;

/// Reads one `{packet, 4}` frame.
fn frame(s: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

/// An `-eval` agent: connects, sends what it sees of itself, then waits to be destroyed.
/// Its loopback works: a listener on 127.0.0.1 accepts a connection from itself.
const REPORTER: &str = r#"{ok, S} = gen_tcp:connect({local, "/run/ampule/agent.sock"}, 0, [binary, {packet, 4}]), {ok, Ifs} = inet:getifaddrs(), {ok, L} = gen_tcp:listen(0, [{ip, {127,0,0,1}}]), {ok, P} = inet:port(L), Lo = element(1, gen_tcp:connect({127,0,0,1}, P, [], 2000)), gen_tcp:send(S, term_to_binary({node(), [list_to_binary(I) || {I, _} <- Ifs], os:getenv("HOME"), Lo})), receive _ -> ok after 60000 -> ok end."#;

#[test]
fn a_sandbox_has_no_distribution_no_network_and_reaches_its_client_through_the_socket() {
    let mut port = Port::start();
    let (listener, socket) = listen(&port, "s1");
    let info = unwrap_ok(port.call(
        1,
        tuple(vec![atom("spawn"), sandbox_opts(&socket, REPORTER)]),
    ));
    assert_eq!(get(&info, "kind"), &atom("sandbox"));
    let name = text(get(&info, "name"));
    assert!(name.starts_with("x-"), "{name}");
    let Term::Map(m) = &info else { panic!() };
    for absent in ["nodename", "address", "cookie"] {
        assert!(!m.map.contains_key(&atom(absent)), "{absent} in {info}");
    }
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The peer is the container's node: its uid is the node's (subuid start + 1000).
    let cred =
        nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials).unwrap();
    assert!(cred.uid() >= 100_000, "peer uid {}", cred.uid());
    let seen = eetf::Term::decode(std::io::Cursor::new(frame(&mut conn))).unwrap();
    assert_eq!(
        seen,
        tuple(vec![
            atom("nonode@nohost"),
            list(vec![bin("lo")]),
            eetf::Term::from(eetf::ByteList::from(b"/home/ampule".to_vec())),
            atom("ok")
        ])
    );
    // No veth, no lease: nothing of the container is on the bridge.
    let info = unwrap_ok(port.call(2, tuple(vec![atom("info"), bin(&name)])));
    assert_eq!(get(&info, "address"), &atom("undefined"));
    let running = leftovers(&name, None, None);
    assert!(
        running.iter().any(|l| l.starts_with("directory")),
        "{running:?}"
    );
    assert_eq!(
        port.call(3, tuple(vec![atom("destroy"), bin(&name)])),
        atom("ok")
    );
    let left = eventually_empty(Duration::from_secs(5), || {
        let mut l = leftovers(&name, None, None);
        if socket.exists() {
            l.push(format!("socket {}", socket.display()));
        }
        l
    });
    assert_eq!(left, Vec::<String>::new());
    let dir = agents_dir(&port);
    port.close(Duration::from_secs(10));
    assert!(!dir.exists(), "the agents directory goes with its port");
}

#[test]
fn only_a_socket_directly_in_the_agents_directory_is_mounted() {
    let mut port = Port::start();
    let dir = agents_dir(&port);
    let file = dir.join("file.sock");
    std::fs::write(&file, b"not a socket").unwrap();
    let (_l, real) = listen(&port, "real");
    let link = dir.join("link.sock");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let elsewhere = std::env::temp_dir().join(format!("ampule-sock-{}", std::process::id()));
    let _ = std::fs::remove_file(&elsewhere);
    let _outside = UnixListener::bind(&elsewhere).unwrap();
    for (tag, path) in [
        (1, &file),
        (2, &link),
        (3, &elsewhere),
        (4, &dir.join("missing")),
    ] {
        let reason =
            unwrap_err(port.call(tag, tuple(vec![atom("spawn"), sandbox_opts(path, "ok.")])));
        assert_eq!(
            reason,
            tuple(vec![
                atom("bad_option_value"),
                atom("sandbox"),
                bin(path.to_string_lossy().as_bytes())
            ])
        );
    }
    assert_eq!(unwrap_ok(port.call(5, atom("list"))), list(vec![]));
    let _ = std::fs::remove_file(&elsewhere);
}

#[test]
fn a_sandbox_whose_node_exits_is_reported_and_its_output_can_be_read() {
    let mut port = Port::start();
    let (_listener, socket) = listen(&port, "s3");
    let eval = r#"io:format("last words~n"), erlang:halt(3)."#;
    let info = unwrap_ok(port.call(1, tuple(vec![atom("spawn"), sandbox_opts(&socket, eval)])));
    let name = text(get(&info, "name"));
    let event = port
        .next_frame(Duration::from_secs(20))
        .expect("exit event");
    // The event carries the node's last words: a client needs them for a sandbox that
    // never said hello, and the container is being removed already.
    assert_eq!(
        assert_exit(&event, &name, int(3)).as_deref(),
        Some("last words\n")
    );
    assert_eq!(
        unwrap_err(port.call(2, tuple(vec![atom("log_tail"), bin(&name)]))),
        atom("not_found"),
        "gone with its container"
    );
    let left = eventually_empty(Duration::from_secs(5), || {
        let mut l = leftovers(&name, None, None);
        if socket.exists() {
            l.push(format!("socket {}", socket.display()));
        }
        l
    });
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn log_tail_shows_what_a_running_node_printed() {
    let mut port = Port::start();
    let (_listener, socket) = listen(&port, "s4");
    let eval = r#"io:format("hello from inside~n"), receive _ -> ok after 60000 -> ok end."#;
    let info = unwrap_ok(port.call(1, tuple(vec![atom("spawn"), sandbox_opts(&socket, eval)])));
    let name = text(get(&info, "name"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tail = text(&unwrap_ok(
            port.call(2, tuple(vec![atom("log_tail"), bin(&name)])),
        ));
        if tail.contains("hello from inside") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "log tail: {tail:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 19's attack: 25 nested directories of 200-character names in the sandbox's home
/// (5 KB of path, beyond PATH_MAX), a file in the deepest, then "ready" to the client. The
/// node reaches each level by `chdir`, as a full path would fail.
const DEEP_TREE: &str = r#"{ok, S} = gen_tcp:connect({local, "/run/ampule/agent.sock"}, 0, [binary, {packet, 4}]), N = lists:duplicate(200, $d), ok = file:set_cwd(os:getenv("HOME")), lists:foreach(fun(_) -> ok = file:make_dir(N), ok = file:set_cwd(N) end, lists:seq(1, 25)), ok = file:write_file("deepest", <<"x">>), gen_tcp:send(S, term_to_binary(ready)), receive _ -> ok after 60000 -> ok end."#;

/// Spawns a sandbox that makes [`DEEP_TREE`] and waits until it is made; its name.
fn sandbox_with_a_deep_tree(port: &mut Port, sock: &str) -> String {
    let (listener, socket) = listen(port, sock);
    let opts = sandbox_opts(&socket, DEEP_TREE);
    let info = unwrap_ok(port.call(1, tuple(vec![atom("spawn"), opts])));
    let name = text(get(&info, "name"));
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let said = eetf::Term::decode(std::io::Cursor::new(frame(&mut conn))).unwrap();
    assert_eq!(said, atom("ready"));
    // `find` walks by descriptor: the host sees the deepest file, 25 levels down.
    let dir = Path::new(&state_dir()).join("apps").join(&name);
    let found = std::process::Command::new("find")
        .arg(&dir)
        .args(["-name", "deepest"])
        .output()
        .unwrap();
    assert!(found.stdout.ends_with(b"/deepest\n"), "{found:?}");
    assert_eq!(
        mounts_under(&dir).len(),
        1,
        "its rootfs is a tmpfs of its own"
    );
    name
}

/// The port's mounts at or under `dir` (the port runs in the test's mount namespace).
fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = format!("{}/", dir.display());
    info.lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&dir)))
        .map(String::from)
        .collect()
}

#[test]
fn a_tree_deeper_than_path_max_goes_with_its_sandbox() {
    let mut port = Port::start();
    let name = sandbox_with_a_deep_tree(&mut port, "deep1");
    assert_eq!(
        port.call(2, tuple(vec![atom("destroy"), bin(&name)])),
        atom("ok")
    );
    let left = eventually_empty(Duration::from_secs(5), || leftovers(&name, None, None));
    assert_eq!(left, Vec::<String>::new());
    let dir = Path::new(&state_dir()).join("apps").join(&name);
    assert_eq!(mounts_under(&dir), Vec::<String>::new());
}

#[test]
fn a_tree_deeper_than_path_max_left_by_a_crash_goes_with_the_next_ports_sweep() {
    let mut port = Port::start();
    let name = sandbox_with_a_deep_tree(&mut port, "deep2");
    // The port dies with its container running: the next port's start-up sweep kills the
    // container and removes its files before that port says hello.
    port.kill();
    let next = Port::start();
    assert_eq!(leftovers(&name, None, None), Vec::<String>::new());
    let dir = Path::new(&state_dir()).join("apps").join(&name);
    assert_eq!(mounts_under(&dir), Vec::<String>::new());
    drop(next);
}

/// A sandbox's rootfs holds at most `ROOTFS_INODES` inodes (its skeleton some of them):
/// what one container makes cannot fill the file system every other one lives on.
#[test]
fn a_sandbox_runs_out_of_inodes_of_its_own() {
    let mut port = Port::start();
    let (listener, socket) = listen(&port, "inodes");
    let eval = r#"{ok, S} = gen_tcp:connect({local, "/run/ampule/agent.sock"}, 0, [binary, {packet, 4}]), ok = file:set_cwd(os:getenv("HOME")), Make = fun M(N) when N > 70000 -> {N, too_many}; M(N) -> case file:make_dir(integer_to_list(N)) of ok -> M(N + 1); {error, E} -> {N, E} end end, gen_tcp:send(S, term_to_binary(Make(0))), receive _ -> ok after 60000 -> ok end."#;
    let opts = sandbox_opts(&socket, eval);
    let name = text(get(
        &unwrap_ok(port.call(1, tuple(vec![atom("spawn"), opts]))),
        "name",
    ));
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let Term::Tuple(made) = eetf::Term::decode(std::io::Cursor::new(frame(&mut conn))).unwrap()
    else {
        panic!("not a tuple")
    };
    assert_eq!(made.elements[1], atom("enospc"));
    let Term::FixInteger(n) = &made.elements[0] else {
        panic!("{made}")
    };
    assert!((65_000..65_536).contains(&n.value), "{n}");
    assert_eq!(
        port.call(2, tuple(vec![atom("destroy"), bin(&name)])),
        atom("ok")
    );
    let left = eventually_empty(Duration::from_secs(5), || leftovers(&name, None, None));
    assert_eq!(left, Vec::<String>::new());
}
