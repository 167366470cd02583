//! A system container as a client sees it: created from a template, its console read
//! (and acknowledged, as a client does) and written, a login. For tests/system.rs and the
//! system rows of tests/lifecycle.rs.

use std::time::{Duration, Instant};

use super::*;
use eetf::Term;

/// Console bytes of `name` gathered from events, acknowledged as they come (like a client).
pub struct ConsoleReader {
    pub name: String,
    pub seen: Vec<u8>,
    pub ack: bool,
    pub tag: i32,
}

impl ConsoleReader {
    pub fn new(name: &str) -> ConsoleReader {
        ConsoleReader {
            name: name.to_string(),
            seen: Vec::new(),
            ack: true,
            tag: 10_000,
        }
    }

    /// Reads console events until `done(all bytes so far)` or the deadline; returns whether
    /// it was done.
    /// Reads until `done`, for as long as output keeps coming: fails only when nothing
    /// arrived for `idle` (a loaded machine's busybox may print a few bytes at a time, so
    /// a fixed deadline for a megabyte measures the machine, not the port).
    pub fn while_flowing(
        &mut self,
        port: &mut Port,
        idle: Duration,
        done: impl Fn(&[u8]) -> bool,
    ) -> bool {
        loop {
            let before = self.seen.len();
            if self.until(port, idle, &done) {
                return true;
            }
            if self.seen.len() == before {
                return false;
            }
        }
    }

    pub fn until(
        &mut self,
        port: &mut Port,
        limit: Duration,
        done: impl Fn(&[u8]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while !done(&self.seen) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            let Some(t) = port.next_frame(left) else {
                return false;
            };
            if let Some(bytes) = console_bytes(&t, &self.name) {
                self.seen.extend_from_slice(&bytes);
                if self.ack {
                    self.tag += 1;
                    port.send(&tuple(vec![
                        int(self.tag),
                        tuple(vec![
                            atom("console_ack"),
                            bin(&self.name),
                            int(bytes.len() as i32),
                        ]),
                    ]));
                }
            }
        }
        true
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

pub fn console_bytes(t: &Term, name: &str) -> Option<Vec<u8>> {
    let Term::Tuple(tu) = t else { return None };
    if tu.elements.len() != 3 || tu.elements[1] != atom("console") {
        return None;
    }
    let Term::Tuple(data) = &tu.elements[2] else {
        return None;
    };
    if data.elements[0] != bin(name) {
        return None;
    }
    match &data.elements[1] {
        Term::Binary(b) => Some(b.bytes.clone()),
        _ => None,
    }
}

pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

pub fn write(port: &mut Port, tag: i32, name: &str, data: &[u8]) {
    assert_eq!(
        port.call(tag, tuple(vec![atom("console"), bin(name), bin(data)])),
        atom("ok")
    );
}

pub fn create(port: &mut Port, opts: Term) -> String {
    create_within(port, opts, Duration::from_secs(60))
}

/// Creates, waiting for the reply up to `timeout`.
pub fn create_within(port: &mut Port, opts: Term, timeout: Duration) -> String {
    port.send(&tuple(vec![int(1), tuple(vec![atom("create"), opts])]));
    let info = unwrap_ok(port.reply(1, timeout));
    assert_eq!(get(&info, "kind"), &atom("system"));
    text(get(&info, "name"))
}

/// Logs in as ubuntu/ubuntu (the defaults) and waits for the shell prompt.
pub fn login(port: &mut Port, console: &mut ConsoleReader, name: &str) {
    assert!(
        console.until(port, Duration::from_secs(30), |b| contains(b, "login:")),
        "no login prompt: {:?}",
        console.text()
    );
    write(port, 2, name, b"ubuntu\n");
    assert!(console.until(port, Duration::from_secs(10), |b| contains(b, "Password:")));
    write(port, 3, name, b"ubuntu\n");
    assert!(
        console.until(port, Duration::from_secs(10), |b| contains(b, "$ ")),
        "no shell: {:?}",
        console.text()
    );
}

/// The host-side veth of a system container, from its saved config.
pub fn veth_of(name: &str) -> String {
    let config = std::fs::read_to_string(format!("{}/lxc/{name}/config", state_dir())).unwrap();
    config
        .lines()
        .find_map(|l| l.strip_prefix("lxc.net.0.veth.pair = "))
        .expect("veth.pair in config")
        .to_string()
}
