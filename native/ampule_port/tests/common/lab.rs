//! A test's own host: a network namespace with its own bridge, state directory and port,
//! joined by a veth to a second namespace that stands for the outside world. Forwarding is
//! on inside it (so only Ampule's rules stop routed traffic) and bridge filtering
//! (`br_netfilter`'s `bridge-nf-call-iptables`, per namespace) is on or off as asked, so
//! that a test can show which rule holds on which kind of host.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{eval_by, Node, Port};

pub const BRIDGE: &str = "labbr0";
pub const SUBNET: &str = "10.213.60.0/24";
pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 213, 60, 1);
/// The host's end of the veth to the outside: an address of the host that is not the
/// bridge's.
pub const HOST_OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 213, 59, 1);
pub const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 213, 59, 2);

/// The one recipe for running a program in a lab's namespace, shared with the Elixir
/// cluster lab (`test/support/cluster_lab.ex`).
const NETNS_EXEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../test/support/netns_exec.sh"
);

pub struct Lab {
    pub host: String,
    pub outside: String,
    pub state_dir: String,
    extra: Vec<String>,
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .expect("run a command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run a command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Lab {
    /// A fresh lab; `bridge_filtering` sets `net.bridge.bridge-nf-call-iptables` in it.
    pub fn new(tag: &str, bridge_filtering: bool) -> Lab {
        let id = format!("{tag}{}", std::process::id());
        let lab = Lab {
            host: format!("amplab-h-{id}"),
            outside: format!("amplab-o-{id}"),
            state_dir: format!("/var/lib/ampule-lab-{id}"),
            extra: Vec::new(),
        };
        let (h, o) = (lab.host.as_str(), lab.outside.as_str());
        // Bridge filtering is br_netfilter's, a module a stock Debian host has not loaded
        // (this test machine has it built in). Loading it turns bridge filtering on in
        // the host's own namespace too, as it always does: Ampule's rules hold either way
        // (which these tests show).
        if !std::path::Path::new("/proc/sys/net/bridge").exists() {
            run(&["modprobe", "br_netfilter"]);
        }
        run(&["ip", "netns", "add", h]);
        run(&["ip", "netns", "add", o]);
        run(&["ip", "-n", h, "link", "set", "lo", "up"]);
        run(&["ip", "-n", o, "link", "set", "lo", "up"]);
        let nf = if bridge_filtering { "1" } else { "0" };
        run(&[
            "ip",
            "netns",
            "exec",
            h,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            h,
            "sysctl",
            "-qw",
            &format!("net.bridge.bridge-nf-call-iptables={nf}"),
        ]);
        run(&[
            "ip",
            "-n",
            h,
            "link",
            "add",
            "tooutside",
            "type",
            "veth",
            "peer",
            "name",
            "toinside",
            "netns",
            o,
        ]);
        run(&[
            "ip",
            "-n",
            h,
            "addr",
            "add",
            "10.213.59.1/30",
            "dev",
            "tooutside",
        ]);
        run(&["ip", "-n", h, "link", "set", "tooutside", "up"]);
        run(&[
            "ip",
            "-n",
            o,
            "addr",
            "add",
            "10.213.59.2/30",
            "dev",
            "toinside",
        ]);
        run(&["ip", "-n", o, "link", "set", "toinside", "up"]);
        run(&["ip", "-n", o, "route", "add", SUBNET, "via", "10.213.59.1"]);
        lab
    }

    /// A port in the lab's host namespace, on the lab's bridge and state directory.
    ///
    /// Not through `ip netns exec`: it mounts a sysfs of the namespace over `/sys`, which
    /// hides what is mounted below it (the cgroup hierarchies, and on a host with AppArmor
    /// the securityfs through which liblxc confines each container). The recipe that keeps
    /// them is `test/support/netns_exec.sh`, which the Elixir cluster lab runs too; its
    /// aside directory is [`Lab::aside`]. It execs `/bin/sh`, to which `Port::spawn_by`
    /// appends `-c 'exec "$0" "$@" ...' PORT ARGS`.
    pub fn port(&self) -> Port {
        let aside = self.aside();
        std::fs::create_dir_all(&aside).expect("make the lab's aside directory");
        let mut prefix = Command::new(NETNS_EXEC);
        prefix.args([self.host.as_str(), aside.as_str(), "/bin/sh"]);
        let mut p = Port::spawn_by(
            prefix,
            &[
                "--state-dir",
                &self.state_dir,
                "--bridge",
                BRIDGE,
                "--subnet",
                SUBNET,
            ],
        );
        p.hello = p.next_frame(Duration::from_secs(30)).expect("no hello");
        p
    }

    /// The empty directory `netns_exec.sh` mounts its tmpfs on, in the port's mount
    /// namespace only (here it stays empty); removed with the lab.
    fn aside(&self) -> String {
        format!("{}.aside", self.state_dir)
    }

    /// Runs `expr` (using `Node`) on a probe `erl` in the lab's host namespace.
    pub fn eval(&self, node: &Node, expr: &str) -> String {
        let mut prefix = Command::new("ip");
        prefix.args(["netns", "exec", &self.host]);
        eval_by(
            prefix,
            &HOST.to_string(),
            &node.nodename,
            &node.cookie,
            expr,
        )
    }

    /// A TCP connection attempt from inside `node`'s container: `true` if it connected.
    pub fn tcp_from(&self, node: &Node, to: Ipv4Addr, port: u16) -> bool {
        let [a, b, c, d] = to.octets();
        let r = self.eval(
            node,
            &format!(
                "rpc:call(Node, gen_tcp, connect, [{{{a},{b},{c},{d}}}, {port}, [], 1500], 10000)"
            ),
        );
        assert!(r.starts_with("{ok,") || r.starts_with("{error,"), "{r}");
        r.starts_with("{ok,")
    }

    /// Sends a few UDP datagrams from inside `node`'s container (from source port `from`,
    /// or any when 0) to `to:port`.
    pub fn udp_from(&self, node: &Node, from: u16, to: Ipv4Addr, port: u16) {
        let [a, b, c, d] = to.octets();
        let r = self.eval(
            node,
            &format!(
                "rpc:call(Node, erlang, apply, [fun() -> \
                 {{ok, S}} = gen_udp:open({from}, [binary, {{broadcast, true}}]), \
                 [begin gen_udp:send(S, {{{a},{b},{c},{d}}}, {port}, <<\"probe\">>), \
                 timer:sleep(20) end || _ <- lists:seq(1, 10)], \
                 gen_udp:close(S) end, []], 10000)"
            ),
        );
        assert_eq!(r, "ok", "sending UDP from {}", node.name);
    }

    /// Whether a datagram reaches `node`'s UDP port `port`: its container listens for 4 s
    /// while `send` is called again and again (each call sends a few), so that sends
    /// happen while it listens whatever the timing.
    pub fn udp_reaches(&self, node: &Node, port: u16, send: impl Fn() + Sync) -> bool {
        let r = std::thread::scope(|s| {
            let recv = s.spawn(|| {
                self.eval(
                    node,
                    &format!(
                        "rpc:call(Node, erlang, apply, [fun() -> \
                         {{ok, S}} = gen_udp:open({port}, [binary, {{active, false}}]), \
                         R = gen_udp:recv(S, 0, 4000), gen_udp:close(S), R end, []], 10000)"
                    ),
                )
            });
            let deadline = Instant::now() + Duration::from_secs(15);
            while !recv.is_finished() && Instant::now() < deadline {
                send();
            }
            recv.join().unwrap()
        });
        assert!(r.starts_with("{ok,") || r == "{error,timeout}", "{r}");
        r.starts_with("{ok,")
    }

    /// A namespace standing in for a container: its `eth0` has `address` on the lab's
    /// bridge, and its end on the host is named `port_name` (which is what the bridge's
    /// rules look at). Removed with the lab.
    pub fn stand_in(&mut self, port_name: &str, address: &str) -> String {
        let ns = format!("{}-{port_name}", self.host);
        run(&["ip", "netns", "add", &ns]);
        self.extra.push(ns.clone());
        run(&[
            "ip", "-n", &self.host, "link", "add", port_name, "type", "veth", "peer", "name",
            "eth0", "netns", &ns,
        ]);
        run(&[
            "ip", "-n", &self.host, "link", "set", port_name, "master", BRIDGE, "up",
        ]);
        run(&["ip", "-n", &ns, "addr", "add", address, "dev", "eth0"]);
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    /// Runs `f` on a thread inside the namespace `ns` (sockets made there stay there).
    pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    pub fn tcp_listen(ns: &str, at: Ipv4Addr, port: u16) -> TcpListener {
        Lab::within(ns, || {
            TcpListener::bind(SocketAddrV4::new(at, port)).unwrap()
        })
    }

    pub fn udp_bind(ns: &str, at: Ipv4Addr, port: u16) -> UdpSocket {
        Lab::within(ns, || {
            let s = UdpSocket::bind(SocketAddrV4::new(at, port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            s
        })
    }

    /// A TCP connection attempt from inside `ns`.
    pub fn tcp_connects(ns: &str, to: Ipv4Addr, port: u16) -> bool {
        Lab::within(ns, || {
            TcpStream::connect_timeout(&SocketAddrV4::new(to, port).into(), Duration::from_secs(2))
                .is_ok()
        })
    }

    /// Deletes the one rule of `family table chain` whose text is `rule`, as an attacker's
    /// luck (or a careless edit of the port) would: the test then shows what it held.
    pub fn delete_rule(&self, family: &str, chain: &str, rule: &str) {
        let table = format!("ampule_{BRIDGE}");
        let listing = output(&[
            "ip", "netns", "exec", &self.host, "nft", "-a", "list", "chain", family, &table, chain,
        ]);
        let handle = listing
            .lines()
            .find_map(|l| {
                let (text, handle) = l.trim().rsplit_once(" # handle ")?;
                (text == rule).then(|| handle.to_string())
            })
            .unwrap_or_else(|| panic!("no rule `{rule}` in {family} {table} {chain}:\n{listing}"));
        run(&[
            "ip", "netns", "exec", &self.host, "nft", "delete", "rule", family, &table, chain,
            "handle", &handle,
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.extra.iter().chain([&self.host, &self.outside]) {
            for pid in output(&["ip", "netns", "pids", ns]).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
        let _ = std::fs::remove_dir(self.aside());
    }
}

/// Whether a datagram arrives on `s` within its read timeout.
pub fn udp_received(s: &UdpSocket) -> bool {
    let mut buf = [0u8; 64];
    s.recv_from(&mut buf).is_ok()
}
