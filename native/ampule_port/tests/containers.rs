//! Real containers through the real binary: boot, reach, destroy, and count what is left.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
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
    assert_eq!(get(m, "protocol"), &int(3));
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
    // No other test's port may sweep what this crash leaves before it is counted.
    let sweeps = hold_sweeps();
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

    drop(sweeps);
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
    assert_exit(&event, &node.name, int(7));
    // Told when the node is gone; the release follows.
    assert_eq!(
        eventually_empty(Duration::from_secs(5), || node.leftovers()),
        Vec::<String>::new()
    );
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

/// The attack that once left a port, a live container, veths, cgroups, leases and
/// directories behind for good: containers link their `~/exit_status` to a FIFO of their
/// own (the port used to read it, and froze), one halts, the other stays up; then the BEAM
/// goes away. Now the port reads nothing there: it reports the kernel's status, still
/// answers, and on end of input leaves nothing.
#[test]
fn fifo_links_in_containers_homes_neither_freeze_the_port_nor_outlive_it() {
    let mut port = Port::start();
    let halting = port.spawn_node(1, map(vec![]));
    let staying = port.spawn_node(2, map(vec![]));
    for n in [&halting, &staying] {
        let made = n.rpc(
            "os",
            "cmd",
            "[\"mkfifo fifo && ln -sf $HOME/fifo exit_status && ln -sf fifo boot.log && echo made\"]",
        );
        assert_eq!(made, "\"made\\n\"");
    }
    let _ = halting.rpc("erlang", "halt", "[9]");
    let event = port
        .next_frame(Duration::from_secs(10))
        .expect("exit event");
    assert_exit(&event, &halting.name, int(9));
    let answered = Instant::now();
    assert_eq!(
        unwrap_ok(port.call(3, atom("list"))),
        list(vec![bin(&staying.name)])
    );
    assert!(answered.elapsed() < Duration::from_secs(1));
    let status = port.close(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let left = eventually_empty(Duration::from_secs(5), || {
        [&halting, &staying]
            .iter()
            .flat_map(|n| n.leftovers())
            .collect()
    });
    assert_eq!(left, Vec::<String>::new());
}

/// Cgroups are shared by every state directory on a machine (other checkouts, test hosts
/// in network namespaces): a port's start-up sweep removes the leftovers of instances that
/// died in its own state directory, never another's.
#[test]
fn a_sweep_leaves_another_state_directorys_leftovers_to_that_directory() {
    let other = format!("/var/lib/ampule-sweep-{}", std::process::id());
    let mut crashed = Port::start_with(&["--state-dir", &other]);
    let n = crashed.spawn_node(1, map(vec![]));
    let mut victims = processes_mentioning(&format!("/apps {}", n.name));
    victims.extend(container_pids(&n.name));
    crashed.kill();
    for pid in victims {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    let still_running = || processes_mentioning(&format!("{}@", n.name));
    assert_eq!(
        eventually_empty(Duration::from_secs(5), || still_running()
            .iter()
            .map(|p| p.to_string())
            .collect()),
        Vec::<String>::new()
    );
    assert!(!cgroups_named(&n.name).is_empty(), "the crash left cgroups");
    // A port of the default state directory starts: not its leftovers.
    let bystander = Port::start();
    assert!(
        !cgroups_named(&n.name).is_empty(),
        "another directory's sweep took them"
    );
    drop(bystander);
    // The crashed instance's own directory's next port removes them.
    let next = Port::start_with(&["--state-dir", &other]);
    assert_eq!(cgroups_named(&n.name), Vec::<PathBuf>::new());
    drop(next);
    // The tmpfs a port mounts on STATE/apps stays (ports share it); this one is the test's.
    let _ = std::process::Command::new("umount")
        .arg(format!("{other}/apps"))
        .status();
    std::fs::remove_dir_all(&other).unwrap();
}

/// Starts a port whose stderr goes to a file; returns it with the file's path.
fn port_logging_to_file(tag: &str, args: &[&str]) -> (Port, PathBuf) {
    let log = std::env::temp_dir().join(format!("ampule-stderr-{tag}-{}", std::process::id()));
    let mut prefix = std::process::Command::new("/bin/sh");
    prefix.args([
        "-c",
        &format!("exec 2>{}; exec /bin/sh \"$@\"", log.display()),
        "wrap",
    ]);
    let mut port = Port::spawn_by(prefix, args);
    port.hello = port.next_frame(Duration::from_secs(30)).expect("no hello");
    (port, log)
}

/// A log line the port writes after its hello (refusing a sandbox socket that is not one).
fn provoke_a_warning(port: &mut Port) -> Term {
    let bad = map(vec![(
        "sandbox",
        map(vec![("socket", bin("/nonexistent/agent.sock"))]),
    )]);
    port.send(&tuple(vec![int(1), tuple(vec![atom("spawn"), bad])]));
    let event = port.next_log(Duration::from_secs(5)).expect("a log event");
    let reason = unwrap_err(port.reply(1, Duration::from_secs(5)));
    assert_eq!(get_tuple(&reason, 0), &atom("bad_option_value"));
    event
}

fn get_tuple(t: &Term, i: usize) -> &Term {
    match t {
        Term::Tuple(tu) => &tu.elements[i],
        other => panic!("not a tuple: {other}"),
    }
}

/// Each log line reaches the client once: as a `log` event after the hello, on stderr only
/// before it (or with `--log-stderr`, for a client that has no logger of its own).
#[test]
fn after_the_hello_a_log_line_is_an_event_and_not_also_on_stderr() {
    let (mut port, log) = port_logging_to_file("events", &[]);
    let event = provoke_a_warning(&mut port);
    assert!(text(get(get_tuple(&event, 2), "message")).contains("agent socket refused"));
    port.close(Duration::from_secs(10));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!stderr.contains("agent socket refused"), "{stderr}");

    let (mut port, log_too) = port_logging_to_file("both", &["--log-stderr"]);
    provoke_a_warning(&mut port);
    port.close(Duration::from_secs(10));
    let stderr = std::fs::read_to_string(&log_too).unwrap();
    assert!(stderr.contains("agent socket refused"), "{stderr}");
    let _ = std::fs::remove_file(log);
    let _ = std::fs::remove_file(log_too);
}

/// A project cloned in `/root` (mode 0700) or in a 0750 home: its code paths are below a
/// directory the container's mapped root cannot traverse. The port stages them where it
/// can, and takes the staging down when it exits.
#[test]
fn code_below_a_directory_others_cannot_traverse_runs_in_a_container() {
    use std::os::unix::fs::PermissionsExt;
    let private = std::env::temp_dir().join(format!("ampule-private-{}", std::process::id()));
    let ebin = private.join("project/_build/dev/lib/app/ebin");
    std::fs::create_dir_all(&ebin).unwrap();
    let src = private.join("hidden_code.erl");
    std::fs::write(
        &src,
        "-module(hidden_code).\n-export([hello/0]).\nhello() -> from_a_private_directory.\n",
    )
    .unwrap();
    let erlc = std::process::Command::new("erlc")
        .arg("-o")
        .arg(&ebin)
        .arg(&src)
        .status()
        .unwrap();
    assert!(erlc.success());
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();

    let mut port = Port::start();
    let ebin_s = ebin.to_string_lossy().into_owned();
    let node = port.spawn_node(1, map(vec![("code_paths", list(vec![bin(&ebin_s)]))]));
    assert_eq!(
        node.rpc("hidden_code", "hello", "[]"),
        "from_a_private_directory"
    );
    // Read-only inside, like any code path.
    let wrote = node.rpc(
        "file",
        "write_file",
        &format!("[\"{ebin_s}/x\", <<\"x\">>]"),
    );
    assert_eq!(wrote, "{error,erofs}");
    let instance = text(get(
        match &port.hello {
            Term::Tuple(t) => &t.elements[2],
            _ => panic!(),
        },
        "instance",
    ));
    let staged = Path::new(&state_dir()).join("code").join(&instance);
    assert!(staged.exists());
    port.close(Duration::from_secs(10));
    assert!(!staged.exists(), "{} is left", staged.display());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&staged.to_string_lossy().into_owned()));
    assert!(
        ebin.join("hidden_code.beam").exists(),
        "the source is untouched"
    );
    std::fs::remove_dir_all(&private).unwrap();
}

/// A node's limit of open files does not depend on the soft limit the port inherited (a
/// systemd service's is 1,024: a node under it ran out at 1,024 sockets, and then its code
/// server could not open a module to load it): soft and hard, 65,536, or the port's hard
/// limit where root cannot raise it (no `CAP_SYS_RESOURCE`, as on this test machine).
#[test]
fn a_node_gets_its_open_files_whatever_soft_limit_the_port_inherited() {
    let (_, hard) = open_files_limits("self");
    let expected = hard.min(65_536);
    assert!(
        expected > 1_024,
        "the test needs a hard limit over 1,024, not {hard}"
    );
    let mut prefix = Command::new("prlimit");
    prefix.args(["--nofile=1024:", "/bin/sh"]);
    let mut port = Port::start_by(prefix, &[]);
    let node = port.spawn_node(1, map(vec![]));
    let pids = container_pids(&node.name);
    assert!(!pids.is_empty());
    for pid in pids {
        assert_eq!(
            open_files_limits(&pid.to_string()),
            (expected, expected),
            "{pid}"
        );
    }
    drop(port);
}

/// `args` that make a node announce `what` on its ready FIFO (the Elixir library's nodes
/// run `ampule_announce` instead; an `-eval` needs nothing on the node's code path).
fn announcing(what: &str) -> Term {
    let expr = format!("ok = file:write_file(\"/run/ampule/ready\", [{what}, $\\n]).");
    list(vec![bin("-eval"), bin(expr)])
}

/// `{boot_timeout, announce, _}`, and nothing of `name` left.
fn assert_announce_timeout(port: &mut Port, tag: i32, name: &str, reply: Term) {
    let reason = unwrap_err(reply);
    let Term::Tuple(t) = &reason else {
        panic!("{reason}")
    };
    assert_eq!(t.elements[0], atom("boot_timeout"), "{reason}");
    assert_eq!(t.elements[1], atom("announce"), "{reason}");
    assert_eq!(leftovers(name, None, None), Vec::<String>::new());
    let Term::List(names) = unwrap_ok(port.call(tag, atom("list"))) else {
        panic!("list")
    };
    assert!(!names.elements.contains(&bin(name)), "{names:?}");
}

#[test]
fn a_node_that_announces_itself_is_answered_then_reached_with_its_cookie() {
    let mut port = Port::start();
    let n = port.spawn_node(
        1,
        map(vec![
            ("announce", atom("true")),
            ("args", announcing("atom_to_list(node())")),
        ]),
    );
    // The port did not handshake: the answer came on the node's word. The client's own
    // connection, with the container's cookie, is the check.
    assert_eq!(n.rpc("erlang", "node", "[]"), format!("'{}'", n.nodename));
    assert_eq!(
        port.call(2, tuple(vec![atom("destroy"), bin(&n.name)])),
        atom("ok")
    );
    let left = eventually_empty(Duration::from_secs(10), || n.leftovers());
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn a_node_that_never_announces_itself_times_out_in_the_announce_phase_and_leaves_nothing() {
    let mut port = Port::start();
    let name = format!("mute-{}", std::process::id());
    let reply = port.call(
        1,
        tuple(vec![
            atom("spawn"),
            map(vec![
                ("name", bin(&name)),
                ("announce", atom("true")),
                ("boot_timeout", int(3_000)),
            ]),
        ]),
    );
    assert_announce_timeout(&mut port, 2, &name, reply);
}

/// A container can only ever announce itself: its FIFO is its own, and a line naming any
/// other node (a sibling's name, `nonode@nohost`, a long line) is refused.
#[test]
fn a_forged_announcement_is_refused_and_the_boot_times_out() {
    let mut port = Port::start();
    let sibling = port.spawn_node(
        1,
        map(vec![
            ("announce", atom("true")),
            ("args", announcing("atom_to_list(node())")),
        ]),
    );
    let forgeries = [
        format!("\"{}\"", sibling.nodename),
        "\"nonode@nohost\"".to_string(),
        format!(
            "lists:duplicate(100000, $x), $\\n, \"{}\"",
            sibling.nodename
        ),
    ];
    for (i, forged) in forgeries.iter().enumerate() {
        let name = format!("forger-{}-{i}", std::process::id());
        let reply = port.call(
            10 + i as i32,
            tuple(vec![
                atom("spawn"),
                map(vec![
                    ("name", bin(&name)),
                    ("announce", atom("true")),
                    ("args", announcing(forged)),
                    ("boot_timeout", int(3_000)),
                ]),
            ]),
        );
        assert_announce_timeout(&mut port, 20 + i as i32, &name, reply);
    }
    // The sibling whose name was used is untouched.
    assert_eq!(
        sibling.rpc("erlang", "node", "[]"),
        format!("'{}'", sibling.nodename)
    );
}

#[test]
fn announce_is_for_distributed_nodes_only() {
    let mut port = Port::start();
    let reply = port.call(
        1,
        tuple(vec![
            atom("spawn"),
            map(vec![
                ("announce", atom("true")),
                (
                    "sandbox",
                    map(vec![("socket", bin("/nonexistent/agent.sock"))]),
                ),
            ]),
        ]),
    );
    assert_eq!(
        unwrap_err(reply),
        tuple(vec![
            atom("bad_option_value"),
            atom("announce"),
            atom("true")
        ])
    );
}
