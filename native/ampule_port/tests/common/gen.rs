//! The frame generator of `tests/fuzz_protocol.rs`: a small deterministic random source,
//! a writer of external-term-format bytes that can write anything (not through `eetf`),
//! requests of every known shape with valid and invalid options, mutations of them, and the
//! inputs the guard exists for. Each generated frame comes with what is [`Known`] about it,
//! which the test checks the port's answer against.
//!
//! Apart from `tests/common/mod.rs` (which starts real ports): the fuzz test needs no
//! container, and the container tests need no generator.

use ampule_port::etf::{self, TermError};

// ---------------------------------------------------------------------------------------
// A small deterministic generator (splitmix64); each case gets its own stream, so a case
// is reproduced from (seed, index) alone.

pub struct Rng(u64);

impl Rng {
    pub fn for_case(seed: u64, case: usize, stream: u64) -> Rng {
        let mut r = Rng(seed ^ (case as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream);
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn range(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        lo + self.below(hi_inclusive - lo + 1)
    }

    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    pub fn string_of(&mut self, alphabet: &[u8], lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        (0..n).map(|_| *self.pick(alphabet)).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Writing terms byte by byte (not through eetf, so that anything can be written).

pub const REQUEST_ATOMS: &[&str] = &[
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
pub const SPAWN_KEYS: &[&str] = &[
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
pub const CREATE_KEYS: &[&str] = &[
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
pub const OTHER_ATOMS: &[&str] = &[
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
pub const REFUSED: &[u8] = &[68, 82, 80, 117, 112];

pub const NAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
pub const WORD_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789._-";
pub const TEXT_CHARS: &[u8] = b"abcdefgh XYZ=:/.,-_0123456789\t";
pub const ENV_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789";
pub const PATH_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789/_-.";

pub fn w_u16(o: &mut Vec<u8>, n: usize) {
    o.extend_from_slice(&(n as u16).to_be_bytes());
}

pub fn w_u32(o: &mut Vec<u8>, n: usize) {
    o.extend_from_slice(&(n as u32).to_be_bytes());
}

pub fn w_atom(o: &mut Vec<u8>, name: &[u8]) {
    if name.len() < 256 {
        o.extend_from_slice(&[119, name.len() as u8]);
    } else {
        o.push(118);
        w_u16(o, name.len());
    }
    o.extend_from_slice(name);
}

pub fn w_bin(o: &mut Vec<u8>, b: &[u8]) {
    o.push(109);
    w_u32(o, b.len());
    o.extend_from_slice(b);
}

pub fn w_int(o: &mut Vec<u8>, i: i64) {
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

pub fn w_tuple(o: &mut Vec<u8>, n: usize, large: bool) {
    if large || n > 255 {
        o.push(105);
        w_u32(o, n);
    } else {
        o.extend_from_slice(&[104, n as u8]);
    }
}

pub fn w_list(o: &mut Vec<u8>, n: usize) {
    if n == 0 {
        o.push(106);
    } else {
        o.push(108);
        w_u32(o, n);
    }
}

/// Closes a list opened with `w_list(o, n)`.
pub fn w_list_end(o: &mut Vec<u8>, n: usize) {
    if n > 0 {
        o.push(106);
    }
}

pub fn w_node(r: &mut Rng, o: &mut Vec<u8>) {
    let node: &[u8] = match r.below(3) {
        0 => b"nonode@nohost",
        1 => b"a@10.33.0.7",
        _ => b"x",
    };
    w_atom(o, node);
}

/// Writes terms and remembers where each one starts and ends (so a test can swap one out
/// for something else and know that the bytes around it still walk).
pub struct Writer<'r> {
    r: &'r mut Rng,
    o: Vec<u8>,
    spans: Vec<(usize, usize)>,
    /// Composite elements left; keeps generated terms small.
    budget: usize,
}

impl Writer<'_> {
    /// Any term `eetf` decodes (no Latin-1 atoms, finite floats, valid bit counts).
    pub fn any(&mut self, depth_left: usize) {
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

    pub fn atom(&mut self, name: &str) {
        let start = self.o.len();
        w_atom(&mut self.o, name.as_bytes());
        self.spans.push((start, self.o.len()));
    }

    pub fn bin(&mut self, b: &[u8]) {
        let start = self.o.len();
        w_bin(&mut self.o, b);
        self.spans.push((start, self.o.len()));
    }

    pub fn int(&mut self, i: i64) {
        let start = self.o.len();
        w_int(&mut self.o, i);
        self.spans.push((start, self.o.len()));
    }

    pub fn valid_name(&mut self) -> Vec<u8> {
        let mut n = self.r.string_of(NAME_CHARS, 1, 40);
        if n[0] == b'-' {
            n[0] = b'x';
        }
        n
    }

    pub fn word(&mut self) -> Vec<u8> {
        self.r.string_of(WORD_CHARS, 1, 64)
    }

    pub fn list_of(&mut self, n: usize, mut item: impl FnMut(&mut Self)) {
        let start = self.o.len();
        w_list(&mut self.o, n);
        for _ in 0..n {
            item(self);
        }
        w_list_end(&mut self.o, n);
        self.spans.push((start, self.o.len()));
    }

    pub fn pair(&mut self, a: &[u8], b: &[u8]) {
        let start = self.o.len();
        w_tuple(&mut self.o, 2, false);
        self.bin(a);
        self.bin(b);
        self.spans.push((start, self.o.len()));
    }

    /// A value for option `key` that `protocol::parse` accepts.
    pub fn valid_option(&mut self, key: &str) {
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
    pub fn request(&mut self) -> bool {
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
    pub fn tag(&mut self) {
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
pub enum Known {
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

pub fn well_formed(r: &mut Rng, request: bool) -> (Vec<u8>, Vec<(usize, usize)>, Known) {
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

pub fn random_bytes(r: &mut Rng) -> (Vec<u8>, Known) {
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
pub fn odd_length(r: &mut Rng, len: usize) -> u32 {
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

pub fn mutate(r: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
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
pub fn refused_term(r: &mut Rng, tag: u8) -> Vec<u8> {
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
pub fn huge_length(r: &mut Rng) -> Vec<u8> {
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
pub fn deep(r: &mut Rng) -> (Vec<u8>, Known) {
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
pub fn dangerous(r: &mut Rng) -> (Vec<u8>, Known) {
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
pub fn gen_frame(seed: u64, case: usize) -> (Vec<u8>, Known) {
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
pub fn fun_asking_for_memory() -> Vec<u8> {
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
