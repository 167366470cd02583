//! What the port promises a client, printed by `ampule_port --print-tables` so that the
//! client's tests compare it with their own tables instead of trusting a copy: every
//! reason the port sends (one of each [`Failure`] and [`RequestError`] variant, as Erlang
//! terms), every option of `spawn` and `create` with the bounds of the integer ones, and
//! the verdict of the name rule on a few names. The Elixir library's
//! `test/ampule/tables_test.exs` reads it, with docs/protocol.md's list of atoms.
//!
//! Lines, one fact each:
//! `reason TERM` · `option KIND KEY MIN MAX` (`- -` for a value without bounds) ·
//! `name ok|refused NAME` (the rest of the line: a name may hold a space).

use eetf::Term;

use crate::error::Failure;
use crate::protocol::{self, Bounds, RequestError};

/// Names whose verdict the client's rule must share: the edges of the port's.
const NAME_SAMPLES: &[&str] = &[
    "a",
    "a-k3x9-1",
    "web_1",
    "_x",
    "-x",
    "x-",
    "a/b",
    "a.b",
    "a b",
    "é",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// The tables, as the lines `--print-tables` writes.
pub fn render() -> String {
    let mut out = String::new();
    // The request a reason echoes is the client's own term: a binary stands for it.
    let request = protocol::bin("request");
    let reasons = Failure::examples()
        .iter()
        .map(Failure::reason)
        .chain(
            RequestError::examples()
                .iter()
                .map(|e| e.reason(request.clone())),
        )
        .collect::<Vec<_>>();
    for reason in reasons {
        out.push_str(&format!("reason {}\n", erlang(&reason)));
    }
    for (kind, table) in [
        ("spawn", protocol::SPAWN_OPTIONS),
        ("create", protocol::CREATE_OPTIONS),
    ] {
        for &(key, bounds) in table {
            out.push_str(&format!("option {kind} {key} {}\n", bounds_text(bounds)));
        }
    }
    for name in NAME_SAMPLES {
        let verdict = if protocol::valid_name(name) {
            "ok"
        } else {
            "refused"
        };
        out.push_str(&format!("name {verdict} {name}\n"));
    }
    out
}

fn bounds_text(bounds: Option<Bounds>) -> String {
    match bounds {
        Some((min, max)) => format!("{min} {max}"),
        None => "- -".into(),
    }
}

/// A term in Erlang's syntax (`erl_parse:parse_term/1` reads it back): what the reasons
/// hold, atoms, tuples, binaries, integers and lists.
fn erlang(t: &Term) -> String {
    let join = |items: &[Term]| items.iter().map(erlang).collect::<Vec<_>>().join(",");
    match t {
        Term::Atom(a) => format!("'{}'", a.name.replace('\\', "\\\\").replace('\'', "\\'")),
        Term::Tuple(t) => format!("{{{}}}", join(&t.elements)),
        Term::List(l) => format!("[{}]", join(&l.elements)),
        Term::FixInteger(i) => i.value.to_string(),
        Term::BigInteger(i) => i.value.to_string(),
        Term::Binary(b) => {
            let text: String = b
                .bytes
                .iter()
                .map(|&c| match c {
                    b'"' => "\\\"".to_string(),
                    b'\\' => "\\\\".to_string(),
                    0x20..=0x7e => (c as char).to_string(),
                    _ => format!("\\x{{{c:x}}}"),
                })
                .collect();
            format!("<<\"{text}\">>")
        }
        other => format!("'unprintable: {other}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_variant_is_in_the_tables() {
        let text = render();
        let reasons = text.lines().filter(|l| l.starts_with("reason ")).count();
        assert_eq!(
            reasons,
            Failure::examples().len() + RequestError::examples().len()
        );
        assert!(text.contains("reason {'leases',<<\"x\">>}\n"));
        assert!(text.contains("option spawn memory 16777216 18446744073709551615\n"));
        assert!(text.contains("name refused -x\n"));
    }
}
