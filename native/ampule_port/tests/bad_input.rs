//! Untrusted bytes on the protocol pipe: every frame is answered, the port keeps serving,
//! and a container started before is untouched. Includes the known traps of `eetf`.

mod common;

use std::time::Duration;

use common::*;
use eetf::Term;

/// Reads frames until one matches `pred`, failing after a few seconds.
fn expect_frame(port: &mut Port, what: &str, pred: impl Fn(&Term) -> bool) -> Term {
    loop {
        let t = port
            .next_frame(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no frame for {what}"));
        if pred(&t) {
            return t;
        }
    }
}

fn bad_frame(t: &Term) -> Option<Term> {
    match t {
        Term::Tuple(tu) if tu.elements.len() == 3 && tu.elements[1] == atom("bad_frame") => {
            Some(tu.elements[2].clone())
        }
        _ => None,
    }
}

fn reason_kind(t: &Term) -> Term {
    match t {
        Term::Tuple(tu) => tu.elements[0].clone(),
        other => other.clone(),
    }
}

#[test]
fn each_malformed_frame_is_answered_and_the_port_keeps_serving() {
    let mut port = Port::start();
    let before = port.spawn_node(1, map(vec![]));

    let cases: Vec<(&str, Vec<u8>, Term)> = vec![
        ("empty frame", vec![], atom("bad_term")),
        ("not ETF", b"hello".to_vec(), atom("bad_term")),
        (
            "distribution header (eetf panics)",
            vec![131, 68, 0],
            atom("bad_term"),
        ),
        (
            "atom cache ref (eetf panics)",
            vec![131, 104, 2, 97, 1, 82, 0],
            atom("bad_term"),
        ),
        (
            "truncated binary",
            vec![131, 109, 0, 0, 0, 9, 1, 2],
            atom("bad_term"),
        ),
        ("trailing bytes", vec![131, 106, 106], atom("bad_term")),
        (
            // eetf would reserve room for 2^32-1 free variables and abort the process.
            "fun asking for 240 GB",
            [
                &[131, 104, 2, 97, 1, 112, 0, 0, 0, 49, 0][..],
                &[0; 16],
                &[0, 0, 0, 0, 255, 255, 255, 255, 119, 1, 109, 97, 0, 97, 0],
                &[103, 119, 1, 110, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ]
            .concat(),
            atom("bad_term"),
        ),
        (
            "bit binary with 9 tail bits",
            vec![131, 104, 2, 97, 1, 77, 0, 0, 0, 1, 9, 255],
            atom("bad_term"),
        ),
        ("not a tuple", encode(&atom("list")), atom("bad_envelope")),
        (
            "three-tuple",
            encode(&tuple(vec![int(1), int(2), int(3)])),
            atom("bad_envelope"),
        ),
    ];
    for (what, bytes, expected) in cases {
        port.send_raw(&bytes);
        let ev = expect_frame(&mut port, what, |t| bad_frame(t).is_some());
        assert_eq!(
            reason_kind(&bad_frame(&ev).unwrap()),
            expected,
            "{what}: {ev}"
        );
    }

    // Deep nesting is refused without recursing (eetf would overflow the stack).
    let mut deep = vec![131, 104, 2, 97, 9];
    for _ in 0..200_000 {
        deep.extend_from_slice(&[108, 0, 0, 0, 1]);
    }
    deep.extend(std::iter::repeat_n(106, 200_001));
    port.send_raw(&deep);
    let ev = expect_frame(&mut port, "deep", |t| bad_frame(t).is_some());
    assert!(format!("{ev}").contains("too_deep"), "{ev}");

    // A tagged request the port does not know is echoed back, tag and all.
    let unknown = port.call(10, tuple(vec![atom("reboot"), atom("host")]));
    assert_eq!(
        unwrap_err(unknown),
        tuple(vec![
            atom("unknown_request"),
            tuple(vec![atom("reboot"), atom("host")])
        ])
    );
    let bad = port.call(11, tuple(vec![atom("destroy"), int(42)]));
    assert_eq!(
        unwrap_err(bad),
        tuple(vec![
            atom("bad_request"),
            tuple(vec![atom("destroy"), int(42)])
        ])
    );
    let not_found = port.call(12, tuple(vec![atom("info"), bin("no-such-container")]));
    assert_eq!(unwrap_err(not_found), atom("not_found"));
    let bad_opt = port.call(
        13,
        tuple(vec![atom("spawn"), map(vec![("colour", atom("red"))])]),
    );
    assert_eq!(
        unwrap_err(bad_opt),
        tuple(vec![atom("bad_option"), atom("colour")])
    );
    let bad_value = port.call(
        14,
        tuple(vec![
            atom("spawn"),
            map(vec![("boot_timeout", atom("soon"))]),
        ]),
    );
    assert_eq!(
        unwrap_err(bad_value),
        tuple(vec![
            atom("bad_option_value"),
            atom("boot_timeout"),
            atom("soon")
        ])
    );

    // An oversized frame is skipped whole and reported with its size.
    let big = vec![0u8; 16 * 1024 * 1024 + 1];
    port.send_raw(&big);
    let ev = expect_frame(&mut port, "oversized", |t| bad_frame(t).is_some());
    assert_eq!(
        bad_frame(&ev).unwrap(),
        tuple(vec![
            atom("frame_too_large"),
            Term::from(eetf::FixInteger::from(16 * 1024 * 1024 + 1))
        ])
    );

    // Still serving, and the container from before is untouched.
    assert_eq!(unwrap_ok(port.call(20, atom("ping"))), atom("pong"));
    let info = unwrap_ok(port.call(21, tuple(vec![atom("info"), bin(&before.name)])));
    assert_eq!(get(&info, "state"), &atom("running"));
    assert_eq!(
        before.rpc("erlang", "node", "[]"),
        format!("'{}'", before.nodename)
    );
    let after = port.spawn_node(22, map(vec![]));
    assert_eq!(
        after.rpc("erlang", "node", "[]"),
        format!("'{}'", after.nodename)
    );
}

#[test]
fn a_tag_of_small_negative_integers_comes_back_unchanged() {
    let mut port = Port::start();
    // term_to_binary({[-1, 2], ping}): eetf would re-encode the tag as [255, 2].
    let frame = [
        131, 104, 2, 108, 0, 0, 0, 2, 98, 255, 255, 255, 255, 97, 2, 106, 119, 4, b'p', b'i', b'n',
        b'g',
    ];
    port.send_raw(&frame);
    let reply = port.next_frame(Duration::from_secs(5)).unwrap();
    let mut bytes = Vec::new();
    reply.encode(&mut bytes).unwrap();
    let Term::Tuple(t) = &reply else {
        panic!("{reply}")
    };
    match &t.elements[0] {
        Term::List(l) => assert_eq!(
            l.elements,
            vec![Term::from(eetf::FixInteger::from(-1)), int(2)]
        ),
        other => panic!("tag came back as {other}"),
    }
}

#[test]
fn ten_thousand_random_frames_then_a_spawn_succeeds() {
    let mut port = Port::start();
    let before = port.spawn_node(1, map(vec![]));
    // A fixed-seed xorshift: the same 10,000 frames every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..10_000 {
        let len = (next() % 64) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Half the frames look like ETF, to get past the version byte.
        if i % 2 == 0 && !body.is_empty() {
            body[0] = 131;
        }
        port.send_raw(&body);
    }
    assert_eq!(unwrap_ok(port.call(2, atom("ping"))), atom("pong"));
    let after = port.spawn_node(3, map(vec![]));
    assert_eq!(
        after.rpc("erlang", "node", "[]"),
        format!("'{}'", after.nodename)
    );
    assert_eq!(
        before.rpc("erlang", "node", "[]"),
        format!("'{}'", before.nodename)
    );
}
