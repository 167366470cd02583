//! Each of Ampule's firewall rules, proven by an attack from a real container that fails
//! while the rule is there and succeeds once that rule alone is deleted, on a host with
//! bridge filtering (`br_netfilter`'s `bridge-nf-call-iptables = 1`, as this machine) and
//! on one without (where bridged frames never reach the IP layer). Each test runs a port of
//! its own in a network namespace of its own (see `common/lab.rs`), with forwarding on, so
//! that only Ampule's rules stand between a container and what it attacks.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::lab::{udp_received, Lab, HOST, HOST_OUTSIDE, OUTSIDE};
use common::*;

const SIBLINGS_RULE: &str = r#"iifname "amp*" oifname "amp*" drop"#;
const OUT_OF_BRIDGE: &str = r#"iifname "labbr0" drop"#;
const INTO_BRIDGE: &str = r#"oifname "labbr0" drop"#;
const NOTHING_TO_THE_HOST: &str = r#"iifname "labbr0" drop"#;
const NO_DHCP_FROM_APPS: &str = r#"iifname "amp*" iifname != "amps*" udp dport 67 drop"#;
const DHCP_RATE: &str = r#"iifname "amps*" udp dport 67 update @dhcp_rate { iifname limit rate over 20/second burst 40 packets } drop"#;

fn ip(node: &Node) -> Ipv4Addr {
    node.address.parse().unwrap()
}

fn siblings_are_apart(bridge_filtering: bool) {
    let lab = Lab::new(if bridge_filtering { "sf" } else { "sn" }, bridge_filtering);
    let mut port = lab.port();
    let a = port.spawn_node(1, map(vec![]));
    let b = port.spawn_node(2, map(vec![]));
    // The host reaches b's node; a reaches it neither by TCP nor by UDP.
    assert!(Lab::tcp_connects(&lab.host, ip(&b), 9100));
    assert!(!lab.tcp_from(&a, ip(&b), 9100));
    let a_to_b = || lab.udp_from(&a, 0, ip(&b), 7000);
    assert!(!lab.udp_reaches(&b, 7000, a_to_b));
    lab.delete_rule("bridge", "forward", SIBLINGS_RULE);
    if bridge_filtering {
        // Bridged IPv4 also passes the inet forward hook here: its drops still hold...
        assert!(!lab.udp_reaches(&b, 7000, a_to_b));
        lab.delete_rule("inet", "forward", OUT_OF_BRIDGE);
        lab.delete_rule("inet", "forward", INTO_BRIDGE);
    }
    // ...and without them (or on a host without bridge filtering, without the bridge rule
    // alone) a reaches b.
    assert!(lab.udp_reaches(&b, 7000, a_to_b));
    assert!(lab.tcp_from(&a, ip(&b), 9100));
    port.close(Duration::from_secs(30));
}

#[test]
fn siblings_are_kept_apart_by_the_bridge_rule_on_a_host_without_bridge_filtering() {
    siblings_are_apart(false);
}

#[test]
fn siblings_are_kept_apart_on_a_host_with_bridge_filtering() {
    siblings_are_apart(true);
}

fn nothing_crosses_to_the_outside(bridge_filtering: bool) {
    let lab = Lab::new(if bridge_filtering { "of" } else { "on" }, bridge_filtering);
    let mut port = lab.port();
    let a = port.spawn_node(1, map(vec![]));
    let listener = Lab::tcp_listen(&lab.outside, OUTSIDE, 7001);
    listener.set_nonblocking(true).unwrap();
    // The host reaches the outside (routing works); the container does not.
    assert!(Lab::tcp_connects(&lab.host, OUTSIDE, 7001));
    assert!(!lab.tcp_from(&a, OUTSIDE, 7001));
    // Nor does the outside reach the container: not by TCP, not by UDP.
    assert!(!Lab::tcp_connects(&lab.outside, ip(&a), 9100));
    let from_outside = || {
        Lab::within(&lab.outside, || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..5 {
                let _ = s.send_to(b"in", (ip(&a), 7002));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    assert!(!lab.udp_reaches(&a, 7002, from_outside));
    lab.delete_rule("inet", "forward", INTO_BRIDGE);
    assert!(lab.udp_reaches(&a, 7002, from_outside));
    // Out of the bridge: a datagram to the outside arrives only without its rule.
    let inbox = Lab::udp_bind(&lab.outside, OUTSIDE, 7003);
    lab.udp_from(&a, 0, OUTSIDE, 7003);
    assert!(!udp_received(&inbox));
    lab.delete_rule("inet", "forward", OUT_OF_BRIDGE);
    lab.udp_from(&a, 0, OUTSIDE, 7003);
    assert!(udp_received(&inbox));
    assert!(lab.tcp_from(&a, OUTSIDE, 7001));
    port.close(Duration::from_secs(30));
}

#[test]
fn nothing_is_routed_between_the_bridge_and_the_outside_without_bridge_filtering() {
    nothing_crosses_to_the_outside(false);
}

#[test]
fn nothing_is_routed_between_the_bridge_and_the_outside_with_bridge_filtering() {
    nothing_crosses_to_the_outside(true);
}

fn no_connection_to_the_host(bridge_filtering: bool) {
    let lab = Lab::new(if bridge_filtering { "hf" } else { "hn" }, bridge_filtering);
    let mut port = lab.port();
    let a = port.spawn_node(1, map(vec![]));
    // EPMD's port, the old host distribution range, and a host address off the bridge.
    let _epmd = Lab::tcp_listen(&lab.host, HOST, 4369);
    let _dist = Lab::tcp_listen(&lab.host, HOST, 9150);
    let _other = Lab::tcp_listen(&lab.host, HOST_OUTSIDE, 9151);
    assert!(Lab::tcp_connects(&lab.host, HOST, 9150));
    for (to, p) in [(HOST, 4369), (HOST, 9150), (HOST_OUTSIDE, 9151)] {
        assert!(!lab.tcp_from(&a, to, p), "{to}:{p}");
    }
    // UDP 67: not on another host address, and never from an application container.
    let dhcp_other = Lab::udp_bind(&lab.host, HOST_OUTSIDE, 67);
    let dhcp_bridge = Lab::udp_bind(&lab.host, HOST, 67);
    lab.udp_from(&a, 0, HOST_OUTSIDE, 67);
    lab.udp_from(&a, 0, HOST, 67);
    assert!(!udp_received(&dhcp_other));
    assert!(!udp_received(&dhcp_bridge));
    lab.delete_rule("bridge", "input", NO_DHCP_FROM_APPS);
    lab.udp_from(&a, 0, HOST, 67);
    assert!(udp_received(&dhcp_bridge));
    lab.udp_from(&a, 0, HOST_OUTSIDE, 67);
    assert!(!udp_received(&dhcp_other));
    lab.delete_rule("inet", "input", NOTHING_TO_THE_HOST);
    assert!(lab.tcp_from(&a, HOST, 9150));
    lab.udp_from(&a, 0, HOST_OUTSIDE, 67);
    assert!(udp_received(&dhcp_other));
    port.close(Duration::from_secs(30));
}

#[test]
fn a_container_opens_no_connection_to_the_host_without_bridge_filtering() {
    no_connection_to_the_host(false);
}

#[test]
fn a_container_opens_no_connection_to_the_host_with_bridge_filtering() {
    no_connection_to_the_host(true);
}

/// Datagrams `sender` gets through to `inbox` out of 200 sent back to back.
fn dhcp_through(sender: &str, inbox: &UdpSocket) -> usize {
    Lab::within(sender, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..200 {
            let _ = s.send_to(b"discover", (HOST, 67));
        }
    });
    let mut n = 0;
    while udp_received(inbox) {
        n += 1;
    }
    n
}

#[test]
fn dhcp_requests_are_rate_limited_per_system_container_and_refused_from_others() {
    let mut lab = Lab::new("d", false);
    let port = lab.port();
    // Stand-ins: the bridge's rules go by the port's name (`amps*` for system containers).
    let system = lab.stand_in("ampsfeed01", "10.213.60.250/24");
    let app = lab.stand_in("ampfe", "10.213.60.251/24");
    let inbox = Lab::udp_bind(&lab.host, HOST, 67);
    assert_eq!(dhcp_through(&app, &inbox), 0);
    // A burst of 40, then 20 a second.
    let limited = dhcp_through(&system, &inbox);
    assert!((1..=60).contains(&limited), "{limited} of 200 got through");
    lab.delete_rule("bridge", "input", DHCP_RATE);
    let unlimited = dhcp_through(&system, &inbox);
    assert!(unlimited >= 190, "{unlimited} of 200 got through");
    port.close(Duration::from_secs(30));
}
