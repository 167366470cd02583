//! Property tests of the path every request frame takes through the port, without containers:
//! `{packet, 4}` framing (`frame::read_frame`), then what `dispatch::Server::handle_frame`
//! does — `etf::envelope`, `etf::decode_body`, `protocol::parse`, and either a `{Tag, Result}`
//! reply or a `{event, bad_frame, Reason}` event — for hundreds of thousands of generated
//! frames: random bytes, well-formed terms, requests of every known shape, mutations of
//! those, and the inputs the guard exists for (tags that panic in `eetf`, deep nesting,
//! huge declared lengths).
//!
//! What is asserted for every frame: nothing panics (a panic fails the test; the panic hook
//! names the case), nothing hangs (a watchdog fails the test when one case runs for more
//! than `STUCK`), and exactly one answer comes out that decodes as a term of the documented
//! shape, with the caller's tag echoed byte for byte whenever the envelope could be read.
//! A request that parses is where the test stops: the dispatcher would act on it (start a
//! container), which is not what this file tests.
//!
//! `handle_frame` is private and needs a whole `Server` (host, leases, registry), so
//! [`answer`] below repeats its few lines with the same public calls; keep the two in step.
//! Not covered here: `Server::run` itself (its loop and the `frame_too_large` event are
//! mirrored, not run), `Outbox` and the writer task, and `Server::execute` for every request
//! but `ping` (tests/bad_input.rs sends bad frames to a real port next to a live container).
//!
//! The seed is fixed, so a failure names a case that fails again the same way. For a longer
//! run: `AMPULE_FUZZ_CASES=5000000 AMPULE_FUZZ_SEED=7 cargo test --test fuzz_protocol`.

use std::cell::RefCell;
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::time::Duration;

use ampule_port::dispatch::{self, Sorted};
use ampule_port::etf::{self, EnvelopeError, Out, TermError};
use ampule_port::frame::{self, Incoming, MAX_FRAME};
use ampule_port::protocol::{self, atom, int, tuple, Request, RequestError};
use eetf::Term;

const DEFAULT_SEED: u64 = 0x5eed_a3b0_1e00_0005;
/// Frames through the whole path in `every_frame_is_answered_once`.
const FRAME_CASES: usize = 100_000;
/// Byte streams of several frames in `framed_streams_are_split_and_every_frame_answered`.
const STREAM_CASES: usize = 10_000;
/// Inputs in `what_the_guard_accepts_eetf_decodes_without_panicking`.
const GUARD_CASES: usize = 50_000;
/// One case that runs longer than this is a hang.
const STUCK: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Seed, case count, watchdog, and naming the case that panicked.

fn seed() -> u64 {
    std::env::var("AMPULE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn cases(default: usize) -> usize {
    std::env::var("AMPULE_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The case being run on this thread, for the panic hook and assertion messages.
#[derive(Clone)]
struct Ctx {
    test: &'static str,
    seed: u64,
    case: usize,
    input: Vec<u8>,
}

impl std::fmt::Display for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 256;
        let more = if self.input.len() > SHOW { " ..." } else { "" };
        write!(
            f,
            "{} case {} (seed {}), input of {} bytes: {:?}{more}",
            self.test,
            self.case,
            self.seed,
            self.input.len(),
            &self.input[..self.input.len().min(SHOW)],
        )
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

fn set_current(ctx: &Ctx) {
    CURRENT.with(|c| *c.borrow_mut() = Some(ctx.clone()));
}

/// A panic anywhere under test — including one that `etf::decode_body` catches itself —
/// prints the case it happened in before the usual message.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            CURRENT.with(|c| {
                if let Ok(c) = c.try_borrow() {
                    if let Some(ctx) = c.as_ref() {
                        eprintln!("panic in {ctx}");
                    }
                }
            });
            default(info);
        }));
    });
}

/// Runs `body` on its own thread; fails when one case makes no progress for [`STUCK`].
/// `body` bumps the counter once per case.
fn with_watchdog(name: &'static str, body: impl FnOnce(&AtomicUsize) + Send + 'static) {
    install_panic_hook();
    let progress = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let worker = {
        let progress = progress.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                body(&progress);
                let _ = done_tx.send(());
            })
            .expect("spawning the fuzz thread")
    };
    let mut last = usize::MAX;
    loop {
        match done_rx.recv_timeout(STUCK) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.load(Ordering::Relaxed);
                assert_ne!(
                    now,
                    last,
                    "{name}: case {now} (seed {}) has run for more than {STUCK:?}: a hang",
                    seed()
                );
                last = now;
            }
        }
    }
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------------------------------
// A small deterministic generator (splitmix64); each case gets its own stream, so a case
// is reproduced from (seed, index) alone.

struct Rng(u64);

impl Rng {
    fn for_case(seed: u64, case: usize, stream: u64) -> Rng {
        let mut r = Rng(seed ^ (case as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream);
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        lo + self.below(hi_inclusive - lo + 1)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    fn string_of(&mut self, alphabet: &[u8], lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        (0..n).map(|_| *self.pick(alphabet)).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Writing terms byte by byte (not through eetf, so that anything can be written).

const REQUEST_ATOMS: &[&str] = &[
    "spawn",
    "create",
    "start",
    "stop",
    "destroy",
    "console",
    "console_ack",
    "list",
    "info",
    "ping",
];
const SPAWN_KEYS: &[&str] = &[
    "name",
    "boot_timeout",
    "code_paths",
    "args",
    "env",
    "config",
    "memory",
    "pids",
    "cpu_shares",
    "cpu_millis",
    "seccomp",
];
const CREATE_KEYS: &[&str] = &[
    "name",
    "template",
    "template_args",
    "release",
    "user",
    "privileged",
    "persistent",
    "config",
    "timeout",
    "memory",
    "pids",
    "cpu_shares",
    "cpu_millis",
];
const OTHER_ATOMS: &[&str] = &[
    "ok",
    "error",
    "true",
    "false",
    "nil",
    "undefined",
    "event",
    "reboot",
    "",
    "é",
    "λx",
];
/// Tags that the guard refuses (`etf::walk`): 68 and 82 panic in eetf, 80 is compressed,
/// 117 and 112 are funs.
const REFUSED: &[u8] = &[68, 82, 80, 117, 112];

const NAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
const WORD_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789._-";
const TEXT_CHARS: &[u8] = b"abcdefgh XYZ=:/.,-_0123456789\t";
const ENV_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789";
const PATH_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789/_-.";

fn w_u16(o: &mut Vec<u8>, n: usize) {
    o.extend_from_slice(&(n as u16).to_be_bytes());
}

fn w_u32(o: &mut Vec<u8>, n: usize) {
    o.extend_from_slice(&(n as u32).to_be_bytes());
}

fn w_atom(o: &mut Vec<u8>, name: &[u8]) {
    if name.len() < 256 {
        o.extend_from_slice(&[119, name.len() as u8]);
    } else {
        o.push(118);
        w_u16(o, name.len());
    }
    o.extend_from_slice(name);
}

fn w_bin(o: &mut Vec<u8>, b: &[u8]) {
    o.push(109);
    w_u32(o, b.len());
    o.extend_from_slice(b);
}

fn w_int(o: &mut Vec<u8>, i: i64) {
    if (0..=255).contains(&i) {
        o.extend_from_slice(&[97, i as u8]);
    } else if let Ok(i) = i32::try_from(i) {
        o.push(98);
        o.extend_from_slice(&i.to_be_bytes());
    } else {
        o.extend_from_slice(&[110, 8, u8::from(i < 0)]);
        o.extend_from_slice(&i.unsigned_abs().to_le_bytes());
    }
}

fn w_tuple(o: &mut Vec<u8>, n: usize, large: bool) {
    if large || n > 255 {
        o.push(105);
        w_u32(o, n);
    } else {
        o.extend_from_slice(&[104, n as u8]);
    }
}

fn w_list(o: &mut Vec<u8>, n: usize) {
    if n == 0 {
        o.push(106);
    } else {
        o.push(108);
        w_u32(o, n);
    }
}

/// Closes a list opened with `w_list(o, n)`.
fn w_list_end(o: &mut Vec<u8>, n: usize) {
    if n > 0 {
        o.push(106);
    }
}

fn w_node(r: &mut Rng, o: &mut Vec<u8>) {
    let node: &[u8] = match r.below(3) {
        0 => b"nonode@nohost",
        1 => b"a@10.33.0.7",
        _ => b"x",
    };
    w_atom(o, node);
}

/// Writes terms and remembers where each one starts and ends (so a test can swap one out
/// for something else and know that the bytes around it still walk).
struct Writer<'r> {
    r: &'r mut Rng,
    o: Vec<u8>,
    spans: Vec<(usize, usize)>,
    /// Composite elements left; keeps generated terms small.
    budget: usize,
}

impl Writer<'_> {
    /// Any term `eetf` decodes (no Latin-1 atoms, finite floats, valid bit counts).
    fn any(&mut self, depth_left: usize) {
        let start = self.o.len();
        let composite = depth_left > 0 && self.budget > 0;
        let r = &mut *self.r;
        let o = &mut self.o;
        match r.below(if composite { 26 } else { 17 }) {
            0 => o.extend_from_slice(&[97, r.byte()]),
            1 => {
                o.push(98);
                o.extend_from_slice(&(r.next() as i32).to_be_bytes());
            }
            2 => {
                let n = r.below(13);
                o.extend_from_slice(&[110, n as u8, r.below(2) as u8]);
                o.extend(r.bytes(n));
            }
            3 => {
                let n = r.below(40);
                o.push(111);
                w_u32(o, n);
                o.push(r.below(2) as u8);
                o.extend(r.bytes(n));
            }
            4 => {
                let f = match r.below(4) {
                    0 => 0.0,
                    1 => -1.5e300,
                    2 => f64::MIN_POSITIVE,
                    _ => f64::from_bits(r.next() & !(0x7ff << 52)), // exponent 0: finite
                };
                o.push(70);
                o.extend_from_slice(&f.to_be_bytes());
            }
            5 => {
                // FLOAT_EXT: the "%.20e" text term_to_binary/2 wrote before minor version 1.
                let f = (r.next() as i32) as f32 / 1000.0;
                let mut text = format!("{f:.20e}").into_bytes();
                text.resize(31, 0);
                o.push(99);
                o.extend(text);
            }
            6 => {
                let name: Vec<u8> = match r.below(3) {
                    0 => r.pick(REQUEST_ATOMS).as_bytes().to_vec(),
                    1 => r.pick(OTHER_ATOMS).as_bytes().to_vec(),
                    _ => r.string_of(WORD_CHARS, 0, 20),
                };
                w_atom(o, &name);
            }
            7 => {
                // The older atom encodings, ASCII only (eetf refuses Latin-1 above 127).
                let name = r.string_of(WORD_CHARS, 0, 12);
                match r.below(3) {
                    0 => {
                        o.push(100);
                        w_u16(o, name.len());
                    }
                    1 => o.extend_from_slice(&[115, name.len() as u8]),
                    _ => {
                        o.push(118);
                        w_u16(o, name.len());
                    }
                }
                o.extend(name);
            }
            8 => {
                let n = r.below(24);
                let b = r.bytes(n);
                w_bin(o, &b);
            }
            9 => {
                // BIT_BINARY_EXT as the BEAM writes it: 1..=8 bits, or an empty one with 0.
                let n = r.below(5);
                o.push(77);
                w_u32(o, n);
                o.push(if n == 0 { 0 } else { r.range(1, 8) as u8 });
                o.extend(r.bytes(n));
            }
            10 => {
                let n = r.below(20);
                o.push(107);
                w_u16(o, n);
                o.extend(r.bytes(n));
            }
            11 => o.push(106),
            12 => {
                let new = r.one_in(2);
                o.push(if new { 88 } else { 103 });
                w_node(r, o);
                o.extend(r.bytes(if new { 12 } else { 9 }));
            }
            13 => {
                let (tag, n) = *r.pick(&[(102u8, 5usize), (89, 8), (120, 12)]);
                o.push(tag);
                w_node(r, o);
                o.extend(r.bytes(n));
            }
            14 => match r.below(3) {
                0 => {
                    o.push(101);
                    w_node(r, o);
                    o.extend(r.bytes(5));
                }
                k => {
                    let n = r.below(6);
                    o.push(if k == 1 { 114 } else { 90 });
                    w_u16(o, n);
                    w_node(r, o);
                    o.extend(r.bytes(if k == 1 { 1 } else { 4 } + 4 * n));
                }
            },
            15 => {
                o.push(113);
                let (m, f) = (r.string_of(WORD_CHARS, 1, 8), r.string_of(WORD_CHARS, 1, 8));
                w_atom(o, &m);
                w_atom(o, &f);
                o.extend_from_slice(&[97, r.byte()]);
            }
            16 => {
                // A list of small integers, some negative: what eetf re-encodes lossily.
                let n = r.below(6);
                w_list(o, n);
                for _ in 0..n {
                    w_int(o, r.range(0, 300) as i64 - 20);
                }
                w_list_end(o, n);
            }
            17..=19 => {
                let n = r.below(5).min(self.budget);
                self.budget -= n;
                let large = self.r.one_in(8);
                w_tuple(&mut self.o, n, large);
                for _ in 0..n {
                    self.any(depth_left - 1);
                }
            }
            20..=22 => {
                let n = r.below(5).min(self.budget);
                self.budget -= n;
                w_list(&mut self.o, n);
                for _ in 0..n {
                    self.any(depth_left - 1);
                }
                if n > 0 {
                    if self.r.one_in(6) {
                        self.any(0); // an improper tail
                    } else {
                        self.o.push(106);
                    }
                }
            }
            _ => {
                let n = r.below(4).min(self.budget / 2);
                self.budget -= 2 * n;
                self.o.push(116);
                w_u32(&mut self.o, n);
                for _ in 0..2 * n {
                    self.any(depth_left - 1);
                }
            }
        }
        self.spans.push((start, self.o.len()));
    }

    fn atom(&mut self, name: &str) {
        let start = self.o.len();
        w_atom(&mut self.o, name.as_bytes());
        self.spans.push((start, self.o.len()));
    }

    fn bin(&mut self, b: &[u8]) {
        let start = self.o.len();
        w_bin(&mut self.o, b);
        self.spans.push((start, self.o.len()));
    }

    fn int(&mut self, i: i64) {
        let start = self.o.len();
        w_int(&mut self.o, i);
        self.spans.push((start, self.o.len()));
    }

    fn valid_name(&mut self) -> Vec<u8> {
        let mut n = self.r.string_of(NAME_CHARS, 1, 40);
        if n[0] == b'-' {
            n[0] = b'x';
        }
        n
    }

    fn word(&mut self) -> Vec<u8> {
        self.r.string_of(WORD_CHARS, 1, 64)
    }

    fn list_of(&mut self, n: usize, mut item: impl FnMut(&mut Self)) {
        let start = self.o.len();
        w_list(&mut self.o, n);
        for _ in 0..n {
            item(self);
        }
        w_list_end(&mut self.o, n);
        self.spans.push((start, self.o.len()));
    }

    fn pair(&mut self, a: &[u8], b: &[u8]) {
        let start = self.o.len();
        w_tuple(&mut self.o, 2, false);
        self.bin(a);
        self.bin(b);
        self.spans.push((start, self.o.len()));
    }

    /// A value for option `key` that `protocol::parse` accepts.
    fn valid_option(&mut self, key: &str) {
        match key {
            "name" => {
                let n = self.valid_name();
                self.bin(&n);
            }
            "boot_timeout" | "timeout" => {
                let ms = self.r.range(1, 3_600_000);
                self.int(ms as i64);
            }
            "code_paths" => {
                let n = self.r.below(4);
                self.list_of(n, |w| {
                    let mut p = b"/".to_vec();
                    p.extend(w.r.string_of(PATH_CHARS, 0, 30));
                    let p = String::from_utf8(p).unwrap().replace("..", "_");
                    w.bin(p.as_bytes());
                });
            }
            "args" | "template_args" => {
                let n = self.r.below(4);
                self.list_of(n, |w| {
                    let s = w.r.string_of(TEXT_CHARS, 0, 20);
                    w.bin(&s);
                });
            }
            "env" => {
                let n = self.r.below(4);
                self.list_of(n, |w| {
                    let mut k = w.r.string_of(ENV_CHARS, 1, 12);
                    if k[0].is_ascii_digit() {
                        k[0] = b'_';
                    }
                    let v = w.r.string_of(TEXT_CHARS, 0, 20);
                    w.pair(&k, &v);
                });
            }
            "config" => {
                let n = self.r.below(4);
                self.list_of(n, |w| {
                    let mut k = b"lxc.".to_vec();
                    k.extend(w.r.string_of(WORD_CHARS, 1, 20));
                    let v = w.r.string_of(TEXT_CHARS, 0, 20);
                    w.pair(&k, &v);
                });
            }
            "memory" => {
                let m = self.r.range(16 << 20, 1 << 40);
                self.int(m as i64);
            }
            "pids" => {
                let n = self.r.range(16, 100_000);
                self.int(n as i64);
            }
            "cpu_shares" => {
                let n = self.r.range(2, 10_000);
                self.int(n as i64);
            }
            "cpu_millis" => {
                if self.r.one_in(4) {
                    self.atom("infinity");
                } else {
                    let n = self.r.range(10, 1_024_000);
                    self.int(n as i64);
                }
            }
            "seccomp" => match self.r.below(4) {
                0 => self.atom("true"),
                1 => self.atom("false"),
                2 => self.atom("lxc"),
                _ => {
                    let mut p = b"/".to_vec();
                    p.extend(self.r.string_of(PATH_CHARS, 0, 30));
                    let p = String::from_utf8(p).unwrap().replace("..", "_");
                    self.bin(p.as_bytes());
                }
            },
            "template" | "release" => {
                let w = self.word();
                self.bin(&w);
            }
            "user" => {
                let u = self.word();
                let mut p = self.r.string_of(TEXT_CHARS, 1, 20);
                p.retain(|&b| b != b':');
                p.push(b'p');
                self.pair(&u, &p);
            }
            "privileged" | "persistent" => {
                let b = if self.r.one_in(2) { "true" } else { "false" };
                self.atom(b);
            }
            other => unreachable!("no valid value for {other}"),
        }
    }

    /// A request body. Returns whether `protocol::parse` must accept it.
    fn request(&mut self) -> bool {
        let valid = self.r.one_in(2);
        let start = self.o.len();
        let must_parse = match self.r.below(10) {
            0 => {
                let a = *self.r.pick(REQUEST_ATOMS);
                self.atom(a);
                ["list", "ping", "spawn", "create"].contains(&a)
            }
            1 => {
                self.any(2);
                false
            }
            2 | 3 => {
                let kind = *self.r.pick(&["destroy", "stop", "start", "info"]);
                w_tuple(&mut self.o, 2, false);
                self.atom(kind);
                if valid {
                    let n = self.valid_name();
                    self.bin(&n);
                } else {
                    self.any(2);
                }
                valid
            }
            4 | 5 => {
                let ack = self.r.one_in(2);
                w_tuple(&mut self.o, 3, false);
                self.atom(if ack { "console_ack" } else { "console" });
                if valid {
                    let n = self.valid_name();
                    self.bin(&n);
                    if ack {
                        let k = self.r.below(1 << 20);
                        self.int(k as i64);
                    } else {
                        let n = self.r.below(40);
                        let d = self.r.bytes(n);
                        self.bin(&d);
                    }
                } else {
                    self.any(2);
                    self.any(2);
                }
                valid
            }
            6..=8 => {
                let create = self.r.one_in(2);
                let keys = if create { CREATE_KEYS } else { SPAWN_KEYS };
                w_tuple(&mut self.o, 2, false);
                self.atom(if create { "create" } else { "spawn" });
                let mut chosen: Vec<&str> =
                    keys.iter().copied().filter(|_| self.r.one_in(3)).collect();
                let spoil = (!valid && !chosen.is_empty()).then(|| self.r.below(chosen.len()));
                let stranger = !valid && chosen.is_empty();
                if stranger {
                    chosen.push("");
                }
                let map_start = self.o.len();
                self.o.push(116);
                w_u32(&mut self.o, chosen.len());
                for (i, key) in chosen.iter().enumerate() {
                    if key.is_empty() {
                        // A key that is no option: another atom, or not an atom at all.
                        if self.r.one_in(2) {
                            self.atom("reboot");
                        } else {
                            self.any(1);
                        }
                        self.any(2);
                    } else {
                        self.atom(key);
                        if spoil == Some(i) {
                            self.any(2);
                        } else {
                            self.valid_option(key);
                        }
                    }
                }
                self.spans.push((map_start, self.o.len()));
                valid
            }
            _ => {
                let n = self.r.below(4);
                w_tuple(&mut self.o, n + 1, false);
                let kind = if self.r.one_in(3) {
                    self.r.string_of(WORD_CHARS, 0, 12)
                } else {
                    self.r.pick(REQUEST_ATOMS).as_bytes().to_vec()
                };
                w_atom(&mut self.o, &kind);
                for _ in 0..n {
                    self.any(2);
                }
                false
            }
        };
        self.spans.push((start, self.o.len()));
        must_parse
    }

    /// A caller's tag: mostly integers (what `Ampule.Port` sends), sometimes any term.
    fn tag(&mut self) {
        match self.r.below(6) {
            0..=2 => {
                let t = self.r.next() as u32 as i64;
                self.int(t % 100_000);
            }
            3 => {
                let t = self.r.next() as i32;
                self.int(t as i64);
            }
            _ => self.any(3),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Generated frames and what is known about them.

/// What the generator knows a frame must do (on top of what every frame must do).
#[derive(Debug)]
enum Known {
    Nothing,
    /// Well-formed `{Tag, Body}`: the envelope is read, with this tag.
    Envelope {
        tag: Vec<u8>,
        /// The body is a term eetf decodes.
        decodes: bool,
        /// The body is a request `protocol::parse` accepts.
        parses: bool,
    },
    /// The guard refuses it: with exactly this error, or with any term error.
    Refused(Option<TermError>),
}

fn well_formed(r: &mut Rng, request: bool) -> (Vec<u8>, Vec<(usize, usize)>, Known) {
    let mut w = Writer {
        r,
        o: Vec::with_capacity(64),
        spans: Vec::new(),
        budget: 24,
    };
    w.o.push(131);
    let large = w.r.one_in(10);
    w_tuple(&mut w.o, 2, large);
    let tag_start = w.o.len();
    w.tag();
    let tag = w.o[tag_start..].to_vec();
    let parses = if request {
        w.request()
    } else {
        let d = w.r.below(7);
        w.any(d);
        false
    };
    let known = Known::Envelope {
        tag,
        decodes: true,
        parses,
    };
    (w.o, w.spans, known)
}

fn random_bytes(r: &mut Rng) -> (Vec<u8>, Known) {
    let n = r.below(512);
    let mut b = r.bytes(n);
    match r.below(4) {
        0 => {}
        1 => b.insert(0, 131),
        _ => b.splice(0..0, [131, 104, 2]).for_each(drop),
    }
    (b, Known::Nothing)
}

/// Interesting 32-bit lengths to write over a length field.
fn odd_length(r: &mut Rng, len: usize) -> u32 {
    let any = r.next() as u32;
    *r.pick(&[
        0,
        1,
        255,
        256,
        65_535,
        65_536,
        0x7fff_ffff,
        0x8000_0000,
        u32::MAX,
        len as u32,
        len.saturating_sub(1) as u32,
        len as u32 + 1,
        any,
    ])
}

fn mutate(r: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..r.range(1, 4) {
        let len = b.len();
        let at = if len == 0 { 0 } else { r.below(len) };
        match r.below(9) {
            0 if len > 0 => b[at] ^= 1 << r.below(8),
            1 if len > 0 => b[at] = r.byte(),
            2 => b.truncate(at),
            3 => {
                let n = r.range(1, 8);
                let ins = r.bytes(n);
                b.splice(at..at, ins).for_each(drop);
            }
            4 if len > 0 => {
                let end = (at + r.range(1, 16)).min(len);
                b.drain(at..end);
            }
            5 if len > 0 => {
                let end = (at + r.range(1, 16)).min(len);
                let dup = b[at..end].to_vec();
                b.splice(at..at, dup).for_each(drop);
            }
            6 if len >= 4 => {
                let at = r.below(len - 3);
                let v = odd_length(r, len);
                b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            7 if len >= 2 => {
                let at = r.below(len - 1);
                let v = odd_length(r, len) as u16;
                b[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ if len > 0 => b[at] = *r.pick(REFUSED),
            _ => b.push(r.byte()),
        }
    }
    b
}

/// What a refused tag is followed by: junk, or the inside of a real term with that tag.
fn refused_term(r: &mut Rng, tag: u8) -> Vec<u8> {
    let mut o = vec![tag];
    match tag {
        // A NEW_FUN_EXT whose free-variable count would make eetf allocate ~240 GB.
        112 if r.one_in(2) => o.extend_from_slice(&fun_asking_for_memory()[1..]),
        // A compressed term: uncompressed size, then (not really) zlib data.
        80 => {
            w_u32(&mut o, r.next() as u32 as usize);
            let n = r.below(16);
            o.extend(r.bytes(n));
        }
        _ => {
            let n = r.below(16);
            o.extend(r.bytes(n));
        }
    }
    o
}

/// Headers that declare more than any frame here holds.
fn huge_length(r: &mut Rng) -> Vec<u8> {
    let mut o = Vec::new();
    match r.below(9) {
        0 => o.extend_from_slice(&[109, 255, 255, 255, 255]),
        1 => o.extend_from_slice(&[107, 255, 255]),
        2 => o.extend_from_slice(&[118, 255, 255, b'a']),
        3 => o.extend_from_slice(&[111, 255, 255, 255, 255, 0]),
        4 => o.extend_from_slice(&[108, 255, 255, 255, 255, 97, 1]),
        5 => o.extend_from_slice(&[116, 255, 255, 255, 255, 106, 106]),
        6 => o.extend_from_slice(&[105, 255, 255, 255, 255]),
        7 => o.extend_from_slice(&[77, 255, 255, 255, 255, 3]),
        _ => o.extend_from_slice(&[90, 255, 255, 119, 1, b'n', 0, 0, 0, 0]),
    }
    o
}

/// `{Tag, Nested}` with `levels` containers around `[]`, and whether the guard accepts it.
fn deep(r: &mut Rng) -> (Vec<u8>, Known) {
    let levels = match r.below(8) {
        // Rare: the frame is 200-700 kB, and a few of them make the point.
        0 if r.one_in(32) => 100_000,
        1 => r.range(1_000, 5_000),
        _ => r.range(250, 262),
    };
    let mut o = vec![131, 104, 2, 97, 1];
    let kind = r.below(3);
    for _ in 0..levels {
        match kind {
            0 => o.extend_from_slice(&[104, 1]),
            1 => o.extend_from_slice(&[108, 0, 0, 0, 1]),
            _ => o.extend_from_slice(&[116, 0, 0, 0, 1, 97, 0]),
        }
    }
    o.push(106);
    if kind == 1 {
        o.extend(std::iter::repeat_n(106, levels));
    }
    // The body sits at depth 1 and its innermost term at 1 + levels; the guard's limit
    // is MAX_DEPTH.
    let known = if levels < etf::MAX_DEPTH {
        Known::Envelope {
            tag: vec![97, 1],
            decodes: true,
            parses: false,
        }
    } else {
        Known::Refused(Some(TermError::TooDeep))
    };
    (o, known)
}

/// Inputs the guard exists for.
fn dangerous(r: &mut Rng) -> (Vec<u8>, Known) {
    match r.below(4) {
        0 => deep(r),
        1 | 2 => {
            // Swap one term of a well-formed frame for a refused tag or a huge length.
            let request = r.one_in(2);
            let (b, spans, _) = well_formed(r, request);
            let (s, e) = *r.pick(&spans);
            let (insert, known) = if r.one_in(2) {
                let t = *r.pick(REFUSED);
                (
                    refused_term(r, t),
                    Known::Refused(Some(TermError::RefusedTag(t))),
                )
            } else {
                (huge_length(r), Known::Refused(None))
            };
            let mut out = b[..s].to_vec();
            out.extend(insert);
            out.extend_from_slice(&b[e..]);
            (out, known)
        }
        _ => {
            // A refused tag as the whole term, right after the version byte.
            let t = *r.pick(REFUSED);
            let mut out = vec![131];
            out.extend(refused_term(r, t));
            (out, Known::Refused(Some(TermError::RefusedTag(t))))
        }
    }
}

/// A frame for case `case`: the mix of random, well-formed, mutated and dangerous inputs.
fn gen_frame(seed: u64, case: usize) -> (Vec<u8>, Known) {
    let r = &mut Rng::for_case(seed, case, 0);
    match r.below(20) {
        0..=3 => random_bytes(r),
        4..=6 => {
            let (b, _, k) = well_formed(r, false);
            (b, k)
        }
        7..=11 => {
            let (b, _, k) = well_formed(r, true);
            (b, k)
        }
        12..=16 => {
            let request = r.one_in(2);
            let (b, _, _) = well_formed(r, request);
            (mutate(r, b), Known::Nothing)
        }
        _ => dangerous(r),
    }
}

/// `{Tag, Fun}` where Fun is a NEW_FUN_EXT whose free-variable count is 2^32 - 1: eetf
/// reserves room for that many terms before reading one.
fn fun_asking_for_memory() -> Vec<u8> {
    let mut inside = vec![0u8]; // arity
    inside.extend_from_slice(&[0; 16]); // uniq
    inside.extend_from_slice(&[0, 0, 0, 0]); // index
    inside.extend_from_slice(&u32::MAX.to_be_bytes()); // free variables
    inside.extend_from_slice(&[119, 1, b'm', 97, 0, 97, 0]); // module, old index, old uniq
    inside.extend_from_slice(&[103, 119, 1, b'n', 0, 0, 0, 0, 0, 0, 0, 0, 0]); // pid
    let mut fun = vec![112];
    w_u32(&mut fun, inside.len() + 4);
    fun.extend(inside);
    fun
}

// ---------------------------------------------------------------------------------------
// The path through dispatch, as `Server::handle_frame` takes it.

/// What the dispatcher does with one frame.
struct Answer {
    envelope: Result<(Vec<u8>, Vec<u8>), EnvelopeError>,
    request: Option<Result<Request, RequestError>>,
    /// Whether `etf::decode_body` failed because eetf panicked (and its catch_unwind held).
    decoder_panicked: bool,
    /// The frame sent back: the `bad_frame` event, the error reply, or — for a request that
    /// parsed and that the dispatcher would now run — a reply with a stand-in result.
    sent: Vec<u8>,
}

/// The port's own `dispatch::sort_frame` (what `handle_frame` does before a request runs),
/// plus what the checks need to know about the frame: its envelope and what it parsed to.
/// A request that would run is answered with a stand-in result.
fn answer(bytes: &[u8]) -> Answer {
    let sent = match dispatch::sort_frame(bytes) {
        Sorted::Answer(out) => etf::encode(&out),
        Sorted::Run { tag, request } => {
            let result = match request {
                Request::Ping => protocol::ok_value(atom("pong")),
                _ => protocol::ok(),
            };
            etf::encode(&protocol::reply(&tag, result))
        }
    };
    let env = match etf::envelope(bytes) {
        Ok(env) => env,
        Err(e) => {
            return Answer {
                envelope: Err(e),
                request: None,
                decoder_panicked: false,
                sent,
            }
        }
    };
    let decoded = etf::decode_body(env.body);
    let decoder_panicked = matches!(&decoded, Err(TermError::Decode(d)) if d == "decoder panicked");
    let request = decoded
        .map_err(|_| RequestError::Bad)
        .and_then(|t| protocol::parse(&t));
    Answer {
        envelope: Ok((env.tag.to_vec(), env.body.to_vec())),
        sent,
        request: Some(request),
        decoder_panicked,
    }
}

fn decode(bytes: &[u8]) -> Result<Term, eetf::DecodeError> {
    Term::decode(Cursor::new(bytes))
}

/// Term equality with maps compared as sets of pairs: eetf hashes a map in its iteration
/// order, so two equal maps used as keys of another map do not compare equal with `==`.
fn same(a: &Term, b: &Term) -> bool {
    let all =
        |x: &[Term], y: &[Term]| x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y));
    match (a, b) {
        (Term::Tuple(x), Term::Tuple(y)) => all(&x.elements, &y.elements),
        (Term::List(x), Term::List(y)) => all(&x.elements, &y.elements),
        (Term::ImproperList(x), Term::ImproperList(y)) => {
            all(&x.elements, &y.elements) && same(&x.last, &y.last)
        }
        (Term::Map(x), Term::Map(y)) => {
            x.map.len() == y.map.len()
                && x.map
                    .iter()
                    .all(|(k, v)| y.map.iter().any(|(k2, v2)| same(k, k2) && same(v, v2)))
        }
        _ => a == b,
    }
}

/// The options map of a `{spawn, Opts}` or `{create, Opts}` body.
fn options(body: &[u8]) -> Option<std::collections::HashMap<Term, Term>> {
    let t = etf::decode_body(body).ok()?;
    match elements(&t) {
        [kind, Term::Map(m)] if [atom("spawn"), atom("create")].contains(kind) => {
            Some(m.map.clone())
        }
        _ => None,
    }
}

fn elements(t: &Term) -> &[Term] {
    match t {
        Term::Tuple(t) => &t.elements,
        _ => &[],
    }
}

/// Checks one frame's answer against what every frame must get, and against what the
/// generator knows about this one.
fn check(ctx: &Ctx, bytes: &[u8], known: &Known) -> Answer {
    let a = answer(bytes);
    assert!(
        !a.decoder_panicked,
        "eetf panicked on bytes the guard let through: {ctx}"
    );
    match &a.envelope {
        Err(e) => {
            // No tag: the documented `{event, bad_frame, Reason}`.
            let sent = decode(&a.sent)
                .unwrap_or_else(|d| panic!("bad_frame event does not decode ({d}): {ctx}"));
            let el = elements(&sent);
            assert!(
                el.len() == 3 && el[0] == atom("event") && el[1] == atom("bad_frame"),
                "not a bad_frame event: {sent} for {ctx}"
            );
            match e {
                EnvelopeError::Term(te) => {
                    assert_eq!(
                        etf::validate(bytes).err().as_ref(),
                        Some(te),
                        "envelope and validate disagree: {ctx}"
                    );
                    let reason = elements(&el[2]);
                    assert!(
                        reason.len() == 2
                            && reason[0] == atom("bad_term")
                            && elements(&reason[1]).first() == Some(&atom(te.atom())),
                        "bad_term reason: {sent} for {ctx}"
                    );
                }
                EnvelopeError::NotEnvelope => {
                    assert!(
                        etf::validate(bytes).is_ok(),
                        "bad_envelope for an invalid term: {ctx}"
                    );
                    assert_eq!(el[2], atom("bad_envelope"), "{ctx}");
                }
            }
        }
        Ok((tag, body)) => {
            // The tag is the first element as the caller wrote it, and the reply starts
            // with `{` then those very bytes.
            let header = if bytes[1] == 104 { 3 } else { 6 };
            assert_eq!(
                &bytes[header..],
                [&tag[..], &body[..]].concat(),
                "tag and body are not the frame's two elements: {ctx}"
            );
            assert_eq!(
                &a.sent[..3],
                &[131, 104, 2],
                "reply is not a 2-tuple: {ctx}"
            );
            assert_eq!(
                &a.sent[3..3 + tag.len()],
                &tag[..],
                "tag not echoed byte for byte: {ctx}"
            );
            let request = a.request.as_ref().expect("a request for a read envelope");
            let result_bytes = [&[131][..], &a.sent[3 + tag.len()..]].concat();
            // The reply decodes whenever eetf can read what it echoes (it cannot read
            // Latin-1 atoms, which the BEAM can).
            let echoes_decode = etf::decode_body(tag).is_ok()
                && (!matches!(request, Err(RequestError::Unknown | RequestError::Bad))
                    || etf::decode_body(body).is_ok());
            if echoes_decode {
                let sent = decode(&a.sent)
                    .unwrap_or_else(|d| panic!("reply does not decode ({d}): {ctx}"));
                assert_eq!(elements(&sent).len(), 2, "reply {sent} for {ctx}");
                decode(&result_bytes)
                    .unwrap_or_else(|d| panic!("result does not decode ({d}): {ctx}"));
            } else {
                // The body may sit two levels deeper in the reply than the guard's limit.
                assert!(
                    matches!(
                        etf::validate(&result_bytes),
                        Ok(_) | Err(TermError::TooDeep)
                    ),
                    "result is not one term: {ctx}"
                );
            }
            if let Err(e) = request {
                let expected = match e {
                    RequestError::Unknown => "unknown_request",
                    RequestError::Bad => "bad_request",
                    RequestError::BadOption(_) => "bad_option",
                    RequestError::BadOptionValue(..) => "bad_option_value",
                    RequestError::BadConfigKey(_) => "bad_config_key",
                };
                let mut reason = vec![131, 104, 2, 119, 5];
                reason.extend_from_slice(b"error");
                assert!(result_bytes.starts_with(&reason), "not {{error, _}}: {ctx}");
                // {unknown_request, _}, {bad_option_value, Key, Value}, ...
                let kind = if matches!(result_bytes.get(10..12), Some(&[104, 2 | 3])) {
                    result_bytes.get(12..)
                } else {
                    None
                };
                let mut want = vec![119, expected.len() as u8];
                want.extend_from_slice(expected.as_bytes());
                assert!(
                    kind.is_some_and(|k| k.starts_with(&want)),
                    "error reason is not {{{expected}, _}}: {ctx}"
                );
                if matches!(e, RequestError::Unknown | RequestError::Bad) {
                    assert!(
                        a.sent.ends_with(body),
                        "request not echoed byte for byte: {ctx}"
                    );
                }
                // An option error names what the caller sent for that option.
                if let Some(opts) = options(body) {
                    match e {
                        RequestError::BadOption(k) => {
                            assert!(
                                opts.keys().any(|key| same(key, k)),
                                "bad_option {k} not sent: {ctx}"
                            )
                        }
                        RequestError::BadOptionValue(k, v) => {
                            let sent = opts.iter().find(|(key, _)| **key == atom(k));
                            assert!(
                                sent.is_some_and(|(_, s)| same(s, v)),
                                "bad_option_value {k} names another value than {sent:?}: {ctx}"
                            )
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    match known {
        Known::Nothing => {}
        Known::Envelope {
            tag,
            decodes,
            parses,
        } => {
            let Ok((got, body)) = &a.envelope else {
                panic!("well-formed envelope refused ({:?}): {ctx}", a.envelope);
            };
            assert_eq!(got, tag, "wrong tag: {ctx}");
            if *decodes {
                etf::decode_body(body).unwrap_or_else(|e| panic!("body refused ({e}): {ctx}"));
            }
            if *parses {
                let r = a.request.as_ref().unwrap();
                assert!(r.is_ok(), "valid request refused ({r:?}): {ctx}");
            }
        }
        Known::Refused(want) => match (&a.envelope, want) {
            (Err(EnvelopeError::Term(got)), Some(want)) => {
                assert_eq!(got, want, "refused for another reason: {ctx}")
            }
            (Err(EnvelopeError::Term(_)), None) => {}
            (other, _) => panic!("expected the guard to refuse it, got {other:?}: {ctx}"),
        },
    }
    a
}

// ---------------------------------------------------------------------------------------
// The tests.

#[test]
fn every_frame_is_answered_once() {
    let (seed, n) = (seed(), cases(FRAME_CASES));
    with_watchdog("every_frame_is_answered_once", move |progress| {
        let mut ctx = Ctx {
            test: "every_frame_is_answered_once",
            seed,
            case: 0,
            input: Vec::new(),
        };
        let mut seen = [0usize; 4];
        for case in 0..n {
            let (bytes, known) = gen_frame(seed, case);
            ctx.case = case;
            ctx.input = bytes;
            set_current(&ctx);
            let a = check(&ctx, &ctx.input, &known);
            seen[match (&a.envelope, &a.request) {
                (Err(_), _) => 0,
                (Ok(_), Some(Err(RequestError::Bad | RequestError::Unknown))) => 1,
                (Ok(_), Some(Err(_))) => 2,
                _ => 3,
            }] += 1;
            progress.store(case + 1, Ordering::Relaxed);
        }
        // The mix reaches every branch of the dispatcher in fair numbers.
        eprintln!(
            "{n} frames: {} bad_frame, {} unknown/bad request, {} bad option, {} parsed",
            seen[0], seen[1], seen[2], seen[3]
        );
        if n >= 10_000 {
            assert!(seen.iter().all(|&k| k > n / 50), "lopsided mix: {seen:?}");
        }
    });
}

#[test]
fn framed_streams_are_split_and_every_frame_answered() {
    let (seed, n) = (seed(), cases(STREAM_CASES));
    with_watchdog("framed_streams", move |progress| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let mut ctx = Ctx {
            test: "framed_streams",
            seed,
            case: 0,
            input: Vec::new(),
        };
        for case in 0..n {
            let r = &mut Rng::for_case(seed, case, 1);
            let frames: Vec<Vec<u8>> = (0..r.range(0, 6))
                .map(|i| gen_frame(seed, case * 8 + i + FRAME_CASES).0)
                .collect();
            let mut stream = Vec::new();
            for f in &frames {
                w_u32(&mut stream, f.len());
                stream.extend_from_slice(f);
            }
            // Sometimes a length field lies, or the stream is cut.
            let intact = !r.one_in(3);
            if !intact {
                if r.one_in(2) && stream.len() > 4 {
                    stream.truncate(r.below(stream.len()));
                } else {
                    let mut at = 0;
                    for f in frames.iter().take(r.below(frames.len().max(1))) {
                        at += 4 + f.len();
                    }
                    stream.truncate(at);
                    let len = match r.below(3) {
                        0 => MAX_FRAME as u32 + 1,
                        1 => u32::MAX,
                        _ => odd_length(r, 16),
                    };
                    w_u32(&mut stream, len as usize);
                    let n = r.below(64);
                    stream.extend(r.bytes(n));
                }
            }
            ctx.case = case;
            ctx.input = stream;
            set_current(&ctx);
            let mut rest = &ctx.input[..];
            let mut got = Vec::new();
            let mut reads = 0;
            loop {
                reads += 1;
                assert!(
                    reads <= ctx.input.len() / 4 + 1,
                    "read_frame does not advance: {ctx}"
                );
                match rt.block_on(frame::read_frame(&mut rest)) {
                    Ok(Incoming::Frame(f)) => {
                        check(&ctx, &f, &Known::Nothing);
                        got.push(f);
                    }
                    Ok(Incoming::TooLarge(size)) => {
                        assert!(size > MAX_FRAME, "TooLarge({size}): {ctx}");
                        let ev = protocol::event(
                            "bad_frame",
                            tuple(vec![atom("frame_too_large"), int(size as i64)]),
                        );
                        decode(&etf::encode(&ev)).expect("frame_too_large event decodes");
                    }
                    Ok(Incoming::Eof) => break,
                    Err(e) => panic!("read error on a byte slice ({e}): {ctx}"),
                }
            }
            if intact {
                assert_eq!(got, frames, "frames not split as written: {ctx}");
            }
            progress.store(case + 1, Ordering::Relaxed);
        }
    });
}

/// Inputs aimed at eetf's decoder rather than at the protocol: every tag, random contents.
fn eetf_bait(r: &mut Rng) -> Vec<u8> {
    let mut o = vec![131];
    let tags: &[u8] = &[
        70, 77, 77, 77, 88, 89, 90, 97, 98, 99, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108,
        109, 110, 111, 112, 112, 112, 113, 113, 114, 115, 116, 117, 118, 119, 120,
    ];
    for _ in 0..r.range(1, 4) {
        o.push(*r.pick(tags));
        match r.below(4) {
            0 => {
                // Small length fields, so the walker gets past them.
                let n = r.below(6);
                o.extend(std::iter::repeat_n(0, n));
                o.push(r.below(12) as u8);
            }
            1 => o.extend_from_slice(&fun_asking_for_memory()[1..]),
            _ => {}
        }
        let n = r.below(40);
        o.extend(r.bytes(n));
        if r.one_in(2) {
            w_node(r, &mut o);
        }
    }
    o
}

#[test]
fn what_the_guard_accepts_eetf_decodes_without_panicking() {
    let (seed, n) = (seed(), cases(GUARD_CASES));
    with_watchdog("guard", move |progress| {
        let mut ctx = Ctx {
            test: "guard",
            seed,
            case: 0,
            input: Vec::new(),
        };
        let mut accepted = 0;
        for case in 0..n {
            let r = &mut Rng::for_case(seed, case, 2);
            let bytes = match r.below(4) {
                0 => eetf_bait(r),
                1 => {
                    let b = eetf_bait(r);
                    mutate(r, b)
                }
                2 => gen_frame(seed, case).0,
                _ => {
                    let (b, _, _) = well_formed(r, false);
                    mutate(r, b)
                }
            };
            ctx.case = case;
            ctx.input = bytes;
            set_current(&ctx);
            if etf::validate(&ctx.input).is_ok() {
                accepted += 1;
                // Straight into eetf, without decode_body's catch_unwind: a panic here
                // fails the test.
                let _ = decode(&ctx.input);
            }
            progress.store(case + 1, Ordering::Relaxed);
        }
        eprintln!("guard: {accepted} of {n} inputs accepted and decoded");
        assert!(
            n < 1_000 || accepted > n / 20,
            "too few inputs got past the guard"
        );
    });
}

/// The inputs that got past the guard before it refused them, kept as named cases.
#[test]
fn known_guard_escapes_stay_refused() {
    let mut frame = vec![131, 104, 2, 97, 1];
    frame.extend(fun_asking_for_memory());
    assert_eq!(
        etf::envelope(&frame).err(),
        Some(EnvelopeError::Term(TermError::RefusedTag(112)))
    );
    for bits in [0u8, 9, 255] {
        let frame = [131, 104, 2, 97, 1, 77, 0, 0, 0, 1, bits, 0xff];
        assert!(
            matches!(
                etf::envelope(&frame),
                Err(EnvelopeError::Term(TermError::Decode(_)))
            ),
            "bit binary with {bits} tail bits"
        );
    }
    // What the BEAM writes for <<7:3>> and <<>> as a bitstring still goes through.
    for ok in [
        &[131, 77, 0, 0, 0, 1, 3, 224][..],
        &[131, 77, 0, 0, 0, 0, 0],
    ] {
        assert!(etf::validate(ok).is_ok(), "{ok:?}");
        decode(ok).expect("eetf decodes it");
    }
}

#[test]
fn generated_float_ext_text_is_what_eetf_reads() {
    // The generator's FLOAT_EXT must be decodable for `Known::Envelope { decodes: true }`.
    let mut text = format!("{:.20e}", -1234.5f32).into_bytes();
    assert!(text.len() <= 31);
    text.resize(31, 0);
    let mut b = vec![131, 99];
    b.extend(text);
    assert!(matches!(decode(&b), Ok(Term::Float(_))));
}

#[test]
fn a_parsed_request_gets_its_tag_back() {
    // The stand-in reply of `answer` for a request that parsed, spelled out once.
    let a = answer(&[131, 104, 2, 98, 0, 0, 1, 0, 119, 4, b'p', b'i', b'n', b'g']);
    assert_eq!(a.request, Some(Ok(Request::Ping)));
    let reply = decode(&a.sent).unwrap();
    assert_eq!(
        reply,
        tuple(vec![int(256), tuple(vec![atom("ok"), atom("pong")])])
    );
    let Out::Tuple(parts) = protocol::reply(&[97, 1], protocol::ok()) else {
        panic!("reply is a tuple");
    };
    assert_eq!(parts[0], Out::Raw(vec![97, 1]));
}

#[test]
fn a_bad_option_value_comes_back_as_sent() {
    // {1, {spawn, #{memory => [-1]}}}: eetf alone would answer [255].
    let mut frame = vec![131, 104, 2, 97, 1, 104, 2, 119, 5];
    frame.extend_from_slice(b"spawn");
    frame.extend_from_slice(&[116, 0, 0, 0, 1, 119, 6]);
    frame.extend_from_slice(b"memory");
    frame.extend_from_slice(&[108, 0, 0, 0, 1, 98, 255, 255, 255, 255, 106]);
    let sent = answer(&frame).sent;
    assert!(
        sent.ends_with(&[108, 0, 0, 0, 1, 98, 255, 255, 255, 255, 106]),
        "{sent:?}"
    );
}
