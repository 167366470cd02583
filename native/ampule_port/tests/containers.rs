//! Real containers through the real binary: boot, reach, destroy, and count what is left.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn hello_is_the_first_frame_and_names_the_versions() {
    let port = Port::start();
    let h = &port.hello;
    let Term::Tuple(t) = h else {
        panic!("hello: {h}")
    };
    assert_eq!(t.elements[0], atom("event"));
    assert_eq!(t.elements[1], atom("hello"));
    let m = &t.elements[2];
    assert_eq!(get(m, "protocol"), &int(1));
    assert_eq!(text(get(m, "lxc_version")), "5.0.2");
    assert_eq!(text(get(m, "version")), env!("CARGO_PKG_VERSION"));
    assert_eq!(text(get(m, "host_address")), host_address());
}

use eetf::Term;

#[test]
fn a_node_boots_unprivileged_answers_rpc_and_leaves_nothing_when_destroyed() {
    let mut port = Port::start();
    let node = port.spawn_node(1, map(vec![]));
    assert_eq!(node.nodename, format!("{}@{}", node.name, node.address));

    assert_eq!(
        node.rpc("erlang", "node", "[]"),
        format!("'{}'", node.nodename)
    );
    let uid = node.rpc("os", "cmd", "[\"id -u\"]");
    assert_eq!(uid, "\"1000\\n\"", "the node must run as uid 1000 inside");
    // On the host, the node's processes belong to the mapped (unprivileged) range.
    let pids = processes_mentioning(&format!("{}@", node.name));
    assert!(!pids.is_empty());
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let host_uid: u32 = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            host_uid >= 100_000,
            "process {pid} runs as host uid {host_uid}"
        );
        // The cookie is in a file, never on a command line that `ps` shows.
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(!String::from_utf8_lossy(&cmd).contains(&node.cookie));
    }
    // The host's /usr is read-only inside, and the hostname is the container's name.
    assert_eq!(
        node.rpc("file", "write_file", "[\"/usr/ampule-probe\", <<\"x\">>]"),
        "{error,erofs}"
    );
    assert_eq!(
        node.rpc("inet", "gethostname", "[]"),
        format!("{{ok,\"{}\"}}", node.name)
    );

    let info = unwrap_ok(port.call(2, tuple(vec![atom("info"), bin(&node.name)])));
    assert_eq!(get(&info, "state"), &atom("running"));
    assert!(
        !node.leftovers().is_empty(),
        "a running container is visible"
    );

    let pids = processes_mentioning(&format!("{}@", node.name));
    assert_eq!(
        port.call(3, tuple(vec![atom("destroy"), bin(&node.name)])),
        atom("ok")
    );
    // When destroy answers, nothing of the container runs any more; it is gone from the
    // port's view; its veth, cgroups, files and address follow right behind.
    let running: Vec<u32> = pids.into_iter().filter(|&p| runs(p)).collect();
    assert_eq!(running, Vec::<u32>::new());
    assert_eq!(
        unwrap_err(port.call(4, tuple(vec![atom("info"), bin(&node.name)]))),
        atom("not_found")
    );
    assert_eq!(unwrap_ok(port.call(5, atom("list"))), list(vec![]));
    assert_eq!(
        unwrap_err(port.call(6, tuple(vec![atom("destroy"), bin(&node.name)]))),
        atom("not_found")
    );
    let left = eventually_empty(Duration::from_secs(2), || node.leftovers());
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(port.close(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn liblxc_writes_the_id_maps_itself_instead_of_running_newuidmap() {
    let mut port = Port::start();
    let node = port.spawn_node(1, map(vec![]));
    let log = std::fs::read_to_string(
        Path::new(&state_dir())
            .join("apps")
            .join(&node.name)
            .join("lxc.log"),
    )
    .unwrap();
    // The port's stand-ins, first on its PATH, turned shadow's tools down (host::idmap_dir).
    assert!(
        log.contains("newuidmap is lacking necessary privileges")
            && log.contains("newgidmap is lacking necessary privileges"),
        "lxc.log: {log}"
    );
    // And the node still runs as uid 1000 in its user namespace (its host uid: a_node_boots_unprivileged_...).
    assert_eq!(node.rpc("os", "cmd", "[\"id -u\"]"), "\"1000\\n\"");
}

#[test]
fn a_destroyed_containers_name_is_free_at_once_and_closing_waits_for_its_release() {
    let mut port = Port::start();
    let name = format!("reborn-{}", std::process::id());
    let first = port.spawn_node(1, map(vec![("name", bin(&name))]));
    assert_eq!(
        port.call(2, tuple(vec![atom("destroy"), bin(&name)])),
        atom("ok")
    );
    // Asked while the first one's release may still run: waits for it, never refuses.
    let second = port.spawn_node(3, map(vec![("name", bin(&name))]));
    assert_eq!(
        second.rpc("erlang", "node", "[]"),
        format!("'{}'", second.nodename)
    );
    assert_eq!(
        port.call(4, tuple(vec![atom("destroy"), bin(&name)])),
        atom("ok")
    );
    // Closing right after a destroy: the port exits only once the release is done.
    assert_eq!(port.close(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(first.leftovers(), Vec::<String>::new());
    assert_eq!(second.leftovers(), Vec::<String>::new());
}

#[test]
fn code_paths_are_mounted_read_only_and_on_the_code_path() {
    let dir = std::env::temp_dir().join(format!("ampule code {}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ampule_probe.erl"),
        "-module(ampule_probe).\n-export([hi/0]).\nhi() -> {hi, node()}.\n",
    )
    .unwrap();
    let st = std::process::Command::new("erlc")
        .arg("-o")
        .arg(&dir)
        .arg(dir.join("ampule_probe.erl"))
        .status()
        .unwrap();
    assert!(st.success());
    let mut port = Port::start();
    let node = port.spawn_node(
        1,
        map(vec![
            (
                "code_paths",
                list(vec![bin(dir.to_string_lossy().as_bytes())]),
            ),
            (
                "env",
                list(vec![tuple(vec![bin("AMPULE_TEST"), bin("yes")])]),
            ),
            (
                "config",
                list(vec![tuple(vec![
                    bin("lxc.environment"),
                    bin("RAW_ITEM=passed"),
                ])]),
            ),
        ]),
    );
    assert_eq!(
        node.rpc("ampule_probe", "hi", "[]"),
        format!("{{hi,'{}'}}", node.nodename)
    );
    let target = format!("\"{}/new\"", dir.display());
    assert_eq!(
        node.rpc("file", "write_file", &format!("[{target}, <<\"x\">>]")),
        "{error,erofs}"
    );
    assert_eq!(node.rpc("os", "getenv", "[\"AMPULE_TEST\"]"), "\"yes\"");
    assert_eq!(node.rpc("os", "getenv", "[\"RAW_ITEM\"]"), "\"passed\"");
    drop(port);
    assert_eq!(node.leftovers(), Vec::<String>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn closing_the_input_destroys_every_container_within_two_seconds() {
    let mut port = Port::start();
    let nodes: Vec<Node> = (1..=3).map(|i| port.spawn_node(i, map(vec![]))).collect();
    for n in &nodes {
        assert!(!n.leftovers().is_empty());
    }
    let closed = Instant::now();
    let status = port.close(Duration::from_secs(2));
    assert_eq!(status.code(), Some(0));
    let left = eventually_empty(
        Duration::from_secs(2).saturating_sub(closed.elapsed()),
        || nodes.iter().flat_map(|n| n.leftovers()).collect(),
    );
    assert_eq!(left, Vec::<String>::new());
}

/// A machine crash, as far as a test can make one: the port and every process of its
/// containers die by SIGKILL at once, leaving what a power cut leaves (directories,
/// address leases, the instance lock, cgroups). The next port's start-up sweep removes it
/// all before its hello.
#[test]
fn a_crash_leaves_files_that_the_next_port_removes_before_its_hello() {
    let mut port = Port::start();
    let nodes: Vec<Node> = (1..=2).map(|i| port.spawn_node(i, map(vec![]))).collect();
    port.kill();
    for n in &nodes {
        // Its liblxc monitor, "[lxc monitor] LXCPATH NAME", and what runs inside.
        let mut victims = processes_mentioning(&format!("/apps {}", n.name));
        victims.extend(container_pids(&n.name));
        assert!(victims.len() >= 2, "monitor and init of {}", n.name);
        for pid in victims {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    for n in &nodes {
        let veth = n.veth();
        let gone = eventually_empty(Duration::from_secs(5), || {
            let mut left = processes_mentioning(&format!("{}@", n.name));
            if std::path::Path::new("/sys/class/net").join(&veth).exists() {
                left.push(0);
            }
            left.into_iter().map(|p| p.to_string()).collect()
        });
        assert_eq!(gone, Vec::<String>::new(), "{} still runs", n.name);
        let left = n.leftovers();
        assert!(left.iter().any(|l| l.starts_with("directory")), "{left:?}");
        assert!(left.iter().any(|l| l.starts_with("lease")), "{left:?}");
    }

    let next = Port::start();
    for n in &nodes {
        assert_eq!(n.leftovers(), Vec::<String>::new());
    }
    drop(next);
}

/// A bridge with no MAC of its own takes its lowest port's, and containers that resolved
/// the host's address to an old one lose their replies to the host: the MAC is set once.
/// The host's neighbour entry for `address` on the bridge, if it has a MAC.
fn neighbour_mac(bridge: &str, address: &str) -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["neigh", "show", address, "dev", bridge])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_string)
}

/// A crashed port's containers were just talking to the host, so its neighbour entries are
/// fresh (REACHABLE for up to 45 s). The sweep must forget them with the leases, or the
/// next container given one of those addresses is sent frames for a vanished MAC.
#[test]
fn the_sweep_makes_the_host_forget_a_crashed_containers_mac() {
    // A container of a live port keeps the bridge's carrier up (a bridge that loses its
    // last port flushes its neighbours by itself, which would hide the bug).
    let mut bystander = Port::start();
    let _b = bystander.spawn_node(1, map(vec![]));
    let mut crashed = Port::start();
    let n = crashed.spawn_node(1, map(vec![]));
    let bridge = &bridge();
    assert!(
        neighbour_mac(bridge, &n.address).is_some(),
        "the readiness handshake resolved {}",
        n.address
    );
    crashed.kill();
    let _next = Port::start();
    assert_eq!(neighbour_mac(bridge, &n.address), None);
    assert_eq!(n.leftovers(), Vec::<String>::new());
}

#[test]
fn the_bridge_keeps_its_mac_while_veths_come_and_go() {
    let mut port = Port::start();
    let Term::Tuple(hello) = &port.hello else {
        panic!("hello: {}", port.hello)
    };
    let bridge = text(get(&hello.elements[2], "bridge"));
    let sys = std::path::Path::new("/sys/class/net").join(&bridge);
    let mac = || std::fs::read_to_string(sys.join("address")).unwrap();
    let before = mac();
    // NET_ADDR_SET: chosen, not inherited from a port.
    assert_eq!(
        std::fs::read_to_string(sys.join("addr_assign_type")).unwrap(),
        "3\n"
    );
    let a = port.spawn_node(1, map(vec![]));
    let b = port.spawn_node(2, map(vec![]));
    assert_eq!(mac(), before);
    assert_eq!(
        port.call(3, tuple(vec![atom("destroy"), bin(&a.name)])),
        atom("ok")
    );
    assert_eq!(mac(), before);
    assert_eq!(b.rpc("erlang", "node", "[]"), format!("'{}'", b.nodename));
}

#[test]
fn an_erl_that_exits_early_is_boot_failed_with_its_output_not_a_timeout() {
    let mut port = Port::start();
    let began = Instant::now();
    let reply = port.call(
        1,
        tuple(vec![
            atom("spawn"),
            map(vec![
                ("name", bin(format!("bad-boot-{}", std::process::id()))),
                ("args", list(vec![bin("-boot"), bin("/nonexistent")])),
                ("boot_timeout", int(30_000)),
            ]),
        ]),
    );
    let reason = unwrap_err(reply);
    let Term::Tuple(t) = &reason else {
        panic!("{reason}")
    };
    assert_eq!(t.elements[0], atom("boot_failed"));
    assert_eq!(t.elements[1], int(1));
    assert!(
        text(&t.elements[2]).contains("nonexistent.boot"),
        "{reason}"
    );
    // Answered on the exit, long before the 30 s boot timeout.
    assert!(began.elapsed() < Duration::from_secs(15));
    let name = format!("bad-boot-{}", std::process::id());
    assert_eq!(leftovers(&name, None, None), Vec::<String>::new());
    assert_eq!(unwrap_ok(port.call(2, atom("list"))), list(vec![]));
}

#[test]
fn a_boot_timeout_names_the_phase_and_leaves_nothing() {
    let mut port = Port::start();
    let name = format!("slow-{}", std::process::id());
    let reply = port.call(
        1,
        tuple(vec![
            atom("spawn"),
            map(vec![("name", bin(&name)), ("boot_timeout", int(60))]),
        ]),
    );
    let reason = unwrap_err(reply);
    let Term::Tuple(t) = &reason else {
        panic!("{reason}")
    };
    assert_eq!(t.elements[0], atom("boot_timeout"));
    assert!(
        [
            atom("create"),
            atom("start"),
            atom("epmd"),
            atom("handshake")
        ]
        .contains(&t.elements[1]),
        "{reason}"
    );
    assert_eq!(leftovers(&name, None, None), Vec::<String>::new());
    assert_eq!(unwrap_ok(port.call(2, atom("list"))), list(vec![]));
}

#[test]
fn list_answers_while_ten_containers_boot() {
    let mut port = Port::start();
    for i in 1..=10 {
        port.send(&tuple(vec![
            int(i),
            tuple(vec![atom("spawn"), map(vec![])]),
        ]));
    }
    port.send(&tuple(vec![int(100), atom("list")]));
    // The first reply is the list's: no boot stands in its way.
    let first = loop {
        let t = port.next_frame(Duration::from_secs(60)).expect("a reply");
        if let Term::Tuple(tu) = &t {
            if tu.elements.len() == 2 {
                break t;
            }
        }
    };
    let Term::Tuple(tu) = &first else {
        unreachable!()
    };
    assert_eq!(tu.elements[0], int(100), "first reply was {first}");
    let mut nodes = Vec::new();
    for i in 1..=10 {
        let info = unwrap_ok(port.reply(i, Duration::from_secs(60)));
        nodes.push(Node::from_info(&info));
    }
    let Term::List(names) = unwrap_ok(port.call(101, atom("list"))) else {
        panic!("list is not a list")
    };
    let mut listed: Vec<String> = names.elements.iter().map(text).collect();
    let mut booted: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    listed.sort();
    booted.sort();
    assert_eq!(listed, booted);
    let mut addresses: Vec<&str> = nodes.iter().map(|n| n.address.as_str()).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 10, "every container has its own address");
    drop(port);
    let left = eventually_empty(Duration::from_secs(5), || {
        nodes.iter().flat_map(|n| n.leftovers()).collect()
    });
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn a_name_in_use_is_refused_and_the_first_container_is_untouched() {
    let mut port = Port::start();
    let name = format!("named-{}", std::process::id());
    let node = port.spawn_node(1, map(vec![("name", bin(&name))]));
    let again = port.call(
        2,
        tuple(vec![atom("spawn"), map(vec![("name", bin(&name))])]),
    );
    assert_eq!(unwrap_err(again), atom("name_in_use"));
    assert_eq!(
        node.rpc("erlang", "node", "[]"),
        format!("'{}'", node.nodename)
    );
}

#[test]
fn a_container_whose_node_exits_is_destroyed_and_reported() {
    let mut port = Port::start();
    let node = port.spawn_node(1, map(vec![]));
    let _ = node.rpc("erlang", "halt", "[7]");
    let event = port
        .next_frame(Duration::from_secs(10))
        .expect("exit event");
    assert_eq!(
        event,
        tuple(vec![
            atom("event"),
            atom("exit"),
            map(vec![("name", bin(&node.name)), ("status", int(7))])
        ])
    );
    assert_eq!(node.leftovers(), Vec::<String>::new());
    assert_eq!(unwrap_ok(port.call(2, atom("list"))), list(vec![]));
}

#[test]
fn a_bad_argument_is_a_fatal_event_naming_it() {
    let port = Port::start_with(&["--subnet", "10.0.3.0/24"]);
    let Term::Tuple(t) = &port.hello else {
        panic!()
    };
    assert_eq!(t.elements[1], atom("fatal"));
    assert_eq!(get(&t.elements[2], "reason"), &atom("bad_arguments"));
    assert!(text(get(&t.elements[2], "message")).contains("overlaps"));
    assert_eq!(port.wait(Duration::from_secs(5)).code(), Some(64));
}
