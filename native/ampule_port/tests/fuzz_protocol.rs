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
//! The generator is `tests/common/gen.rs`; this file runs what it makes and checks the
//! answers.
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

#[path = "common/gen.rs"]
mod gen;
use gen::*;

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
            let result = match *request {
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
