//! The external term format at the edge of the port: a guard that walks untrusted bytes
//! before `eetf` sees them, and an encoder for replies that splices terms we echo back
//! verbatim.
//!
//! Why not hand everything to `eetf`: its decoder panics on tags 68 and 82 and recurses
//! without a depth limit, and its encoder turns a list of small integers into a byte string
//! with `as u8` (so `[-1]` would come back as `[255]`). The walker rejects what `eetf` cannot
//! take, and the caller's tag and a rejected request are echoed as the bytes the caller sent.

use std::fmt;

use eetf::Term;

/// Deepest nesting accepted in a request; deeper terms are refused, not recursed into.
pub const MAX_DEPTH: usize = 256;

const VERSION: u8 = 131;

/// Why a frame's bytes are not a term the port accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermError {
    Empty,
    BadVersion(u8),
    Truncated,
    TrailingBytes,
    TooDeep,
    /// A tag `eetf` cannot decode safely, or that a request never contains.
    RefusedTag(u8),
    UnknownTag(u8),
    /// `eetf` refused the bytes the walker let through (e.g. a Latin-1 atom).
    Decode(String),
}

impl fmt::Display for TermError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TermError::Empty => write!(f, "empty frame"),
            TermError::BadVersion(v) => write!(f, "version byte {v}, expected 131"),
            TermError::Truncated => write!(f, "term ends early"),
            TermError::TrailingBytes => write!(f, "bytes after the term"),
            TermError::TooDeep => write!(f, "nested deeper than {MAX_DEPTH}"),
            TermError::RefusedTag(t) => write!(f, "tag {t} is not accepted"),
            TermError::UnknownTag(t) => write!(f, "unknown tag {t}"),
            TermError::Decode(d) => write!(f, "{d}"),
        }
    }
}

impl std::error::Error for TermError {}

impl TermError {
    /// The short atom used on the wire, e.g. `refused_tag`.
    pub fn atom(&self) -> &'static str {
        match self {
            TermError::Empty => "empty",
            TermError::BadVersion(_) => "bad_version",
            TermError::Truncated => "truncated",
            TermError::TrailingBytes => "trailing_bytes",
            TermError::TooDeep => "too_deep",
            TermError::RefusedTag(_) => "refused_tag",
            TermError::UnknownTag(_) => "unknown_tag",
            TermError::Decode(_) => "undecodable",
        }
    }
}

/// A request frame split into the caller's tag (raw bytes, echoed back) and its body.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub tag: &'a [u8],
    pub body: &'a [u8],
}

/// Why a frame is not a `{Tag, Request}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    Term(TermError),
    /// A valid term, but not a 2-tuple.
    NotEnvelope,
}

/// Validates the whole frame and splits `{Tag, Request}`.
pub fn envelope(frame: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let end = validate(frame).map_err(EnvelopeError::Term)?;
    debug_assert_eq!(end, frame.len());
    let (arity, first) = match frame.get(1) {
        Some(104) => (frame.get(2).map(|&a| a as u32), 3),
        Some(105) => (frame.get(2..6).map(be_u32), 6),
        _ => (None, 0),
    };
    if arity != Some(2) {
        return Err(EnvelopeError::NotEnvelope);
    }
    let mid = walk(frame, first, 1).map_err(EnvelopeError::Term)?;
    Ok(Envelope {
        tag: &frame[first..mid],
        body: &frame[mid..],
    })
}

/// Checks that `frame` is exactly one acceptable term; returns its length.
pub fn validate(frame: &[u8]) -> Result<usize, TermError> {
    match frame.first() {
        None => return Err(TermError::Empty),
        Some(&VERSION) => {}
        Some(&v) => return Err(TermError::BadVersion(v)),
    }
    let end = walk(frame, 1, 0)?;
    if end != frame.len() {
        return Err(TermError::TrailingBytes);
    }
    Ok(end)
}

/// Decodes bytes that [`validate`]/[`envelope`] accepted (a body lacks the version byte).
pub fn decode_body(body: &[u8]) -> Result<Term, TermError> {
    let mut buf = Vec::with_capacity(body.len() + 1);
    buf.push(VERSION);
    buf.extend_from_slice(body);
    walk(&buf, 1, 0)?;
    // The walker has excluded every input known to panic in eetf; catch_unwind is the second
    // line, so that an unknown panic still cannot take the port (and its containers) down.
    match std::panic::catch_unwind(|| Term::decode(std::io::Cursor::new(&buf))) {
        Ok(Ok(term)) => Ok(term),
        Ok(Err(e)) => Err(TermError::Decode(e.to_string())),
        Err(_) => Err(TermError::Decode("decoder panicked".into())),
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn take(b: &[u8], at: usize, n: usize) -> Result<usize, TermError> {
    at.checked_add(n)
        .filter(|&end| end <= b.len())
        .ok_or(TermError::Truncated)
}

fn u8_at(b: &[u8], at: usize) -> Result<usize, TermError> {
    b.get(at).map(|&x| x as usize).ok_or(TermError::Truncated)
}

fn u16_at(b: &[u8], at: usize) -> Result<usize, TermError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]) as usize)
        .ok_or(TermError::Truncated)
}

fn u32_at(b: &[u8], at: usize) -> Result<usize, TermError> {
    b.get(at..at + 4)
        .map(|s| be_u32(s) as usize)
        .ok_or(TermError::Truncated)
}

/// Walks one term starting at `at`; returns the offset just past it.
fn walk(b: &[u8], at: usize, depth: usize) -> Result<usize, TermError> {
    if depth > MAX_DEPTH {
        return Err(TermError::TooDeep);
    }
    let tag = *b.get(at).ok_or(TermError::Truncated)?;
    let p = at + 1;
    let seq = |mut p: usize, n: usize| -> Result<usize, TermError> {
        for _ in 0..n {
            p = walk(b, p, depth + 1)?;
        }
        Ok(p)
    };
    match tag {
        97 => take(b, p, 1),
        98 => take(b, p, 4),
        70 => take(b, p, 8),
        99 => take(b, p, 31),
        // Atoms: ATOM_EXT, ATOM_UTF8_EXT (u16 length), SMALL_ATOM(_UTF8)_EXT (u8 length).
        100 | 118 => take(b, p + 2, u16_at(b, p)?),
        115 | 119 => take(b, p + 1, u8_at(b, p)?),
        106 => Ok(p),
        107 => take(b, p + 2, u16_at(b, p)?),
        109 => take(b, p + 4, u32_at(b, p)?),
        // BIT_BINARY_EXT: 1 to 8 bits used in the last byte, 0 only when empty (what the
        // BEAM checks); other counts overflow a shift in eetf.
        77 => match (u32_at(b, p)?, u8_at(b, p + 4)?) {
            (0, 0) | (1.., 1..=8) => take(b, p + 5, u32_at(b, p)?),
            (_, bits) => Err(TermError::Decode(format!(
                "bit binary with {bits} tail bits"
            ))),
        },
        110 => take(b, p + 2, u8_at(b, p)?),
        111 => take(b, p + 5, u32_at(b, p)?),
        104 => seq(p + 1, u8_at(b, p)?),
        105 => seq(p + 4, u32_at(b, p)?),
        // A list is its elements and then its tail.
        108 => seq(p + 4, u32_at(b, p)? + 1),
        116 => seq(
            p + 4,
            u32_at(b, p)?.checked_mul(2).ok_or(TermError::Truncated)?,
        ),
        // Pids, ports and references: a node atom, then fixed-size fields.
        103 => take(b, walk(b, p, depth + 1)?, 9),
        88 => take(b, walk(b, p, depth + 1)?, 12),
        102 => take(b, walk(b, p, depth + 1)?, 5),
        89 => take(b, walk(b, p, depth + 1)?, 8),
        120 => take(b, walk(b, p, depth + 1)?, 12),
        101 => take(b, walk(b, p, depth + 1)?, 5),
        114 | 90 => {
            let n = u16_at(b, p)?;
            let after_node = walk(b, p + 2, depth + 1)?;
            let creation = if tag == 114 { 1 } else { 4 };
            take(b, after_node, creation + 4 * n)
        }
        113 => seq(p, 3),
        // 68: distribution header, 82: atom cache reference (both panic in eetf);
        // 80: compressed (would hide a decompression bomb); 117 and 112: funs, whose
        // insides eetf decodes without this walk (its free-variable count is allocated
        // up front: 4 bytes can ask for 240 GB and abort the process).
        68 | 82 | 80 | 117 | 112 => Err(TermError::RefusedTag(tag)),
        other => Err(TermError::UnknownTag(other)),
    }
}

/// A term to send: an `eetf` term, bytes the caller sent that we echo, or a tuple of both.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Term(Term),
    Raw(Vec<u8>),
    Tuple(Vec<Out>),
}

impl From<Term> for Out {
    fn from(t: Term) -> Out {
        Out::Term(t)
    }
}

/// Encodes `out` as a complete term (with the version byte).
pub fn encode(out: &Out) -> Vec<u8> {
    let mut buf = vec![VERSION];
    encode_into(out, &mut buf);
    buf
}

fn encode_into(out: &Out, buf: &mut Vec<u8>) {
    match out {
        Out::Raw(bytes) => buf.extend_from_slice(bytes),
        Out::Tuple(items) => {
            if items.len() < 256 {
                buf.push(104);
                buf.push(items.len() as u8);
            } else {
                buf.push(105);
                buf.extend_from_slice(&(items.len() as u32).to_be_bytes());
            }
            for item in items {
                encode_into(item, buf);
            }
        }
        Out::Term(term) => encode_term(term, buf),
    }
}

/// eetf writes a list of integers as a byte string (`STRING_EXT`) even when one is outside
/// 0..=255, which turns `[-1]` into `[255]`. Replies can hold a caller's value (a bad
/// option's), so containers are walked here and lists always written as `LIST_EXT`; only
/// leaves go through eetf.
fn encode_term(term: &Term, buf: &mut Vec<u8>) {
    match term {
        Term::List(l) => {
            if l.elements.is_empty() {
                buf.push(106);
                return;
            }
            buf.push(108);
            buf.extend_from_slice(&(l.elements.len() as u32).to_be_bytes());
            for e in &l.elements {
                encode_term(e, buf);
            }
            buf.push(106);
        }
        Term::ImproperList(l) => {
            buf.push(108);
            buf.extend_from_slice(&(l.elements.len() as u32).to_be_bytes());
            for e in &l.elements {
                encode_term(e, buf);
            }
            encode_term(&l.last, buf);
        }
        Term::Tuple(t) => {
            if t.elements.len() < 256 {
                buf.extend_from_slice(&[104, t.elements.len() as u8]);
            } else {
                buf.push(105);
                buf.extend_from_slice(&(t.elements.len() as u32).to_be_bytes());
            }
            for e in &t.elements {
                encode_term(e, buf);
            }
        }
        Term::Map(m) => {
            buf.push(116);
            buf.extend_from_slice(&(m.map.len() as u32).to_be_bytes());
            for (k, v) in &m.map {
                encode_term(k, buf);
                encode_term(v, buf);
            }
        }
        leaf => encode_leaf(leaf, buf),
    }
}

fn encode_leaf(term: &Term, buf: &mut Vec<u8>) {
    let mut tmp = Vec::new();
    match term.encode(&mut tmp) {
        Ok(()) => buf.extend_from_slice(&tmp[1..]),
        // Only an atom over 65,535 bytes fails to encode; none of ours is.
        Err(_) => buf.extend_from_slice(&[106]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Term {
        Term::from(eetf::Atom::from(s))
    }

    #[test]
    fn integer_lists_keep_their_values() {
        let l = Term::from(eetf::List::from(vec![
            Term::from(eetf::FixInteger::from(-1)),
            Term::from(eetf::FixInteger::from(300)),
            Term::from(eetf::FixInteger::from(7)),
        ]));
        // term_to_binary([-1, 300, 7])
        let expected = [
            131, 108, 0, 0, 0, 3, 98, 255, 255, 255, 255, 98, 0, 0, 1, 44, 97, 7, 106,
        ];
        assert_eq!(encode(&Out::Term(l.clone())), expected);
        assert_eq!(decode_body(&expected[1..]).unwrap(), l);
    }

    #[test]
    fn envelope_splits_tag_and_body() {
        // term_to_binary({7, list})
        let frame = [131, 104, 2, 97, 7, 119, 4, b'l', b'i', b's', b't'];
        let env = envelope(&frame).unwrap();
        assert_eq!(env.tag, &[97, 7]);
        assert_eq!(decode_body(env.body).unwrap(), t("list"));
    }

    #[test]
    fn refuses_distribution_header_and_atom_cache_refs() {
        assert_eq!(validate(&[131, 68, 0]), Err(TermError::RefusedTag(68)));
        assert_eq!(
            validate(&[131, 104, 1, 82, 0]),
            Err(TermError::RefusedTag(82))
        );
    }

    #[test]
    fn refuses_deep_nesting_without_recursing_forever() {
        let mut frame = vec![131];
        for _ in 0..100_000 {
            frame.extend_from_slice(&[104, 1]);
        }
        frame.push(106);
        assert_eq!(validate(&frame), Err(TermError::TooDeep));
    }

    #[test]
    fn truncated_lengths_are_errors() {
        assert_eq!(
            validate(&[131, 109, 0, 0, 0, 9, 1]),
            Err(TermError::Truncated)
        );
        assert_eq!(
            validate(&[131, 108, 255, 255, 255, 255]),
            Err(TermError::Truncated)
        );
        assert_eq!(validate(&[131, 106, 0]), Err(TermError::TrailingBytes));
        assert_eq!(validate(&[]), Err(TermError::Empty));
        assert_eq!(validate(&[130, 106]), Err(TermError::BadVersion(130)));
    }

    #[test]
    fn echoed_tag_keeps_negative_integers() {
        // term_to_binary([-1, 2]) — eetf would re-encode it as [255, 2].
        let tag = [108, 0, 0, 0, 2, 98, 255, 255, 255, 255, 97, 2, 106];
        let out = Out::Tuple(vec![Out::Raw(tag.to_vec()), t("ok").into()]);
        let bytes = encode(&out);
        assert_eq!(&bytes[..3], &[131, 104, 2]);
        assert_eq!(&bytes[3..3 + tag.len()], &tag);
        assert!(validate(&bytes).is_ok());
    }
}
