//! Requests, replies and events as terms: the only module that knows their shapes
//! (`docs/protocol.md` is the same contract in prose).

use std::collections::HashMap;
use std::time::Duration;

use eetf::{Atom, Binary, FixInteger, List, Map, Term, Tuple};

use crate::etf::Out;

/// Version announced in the hello event; a client refuses one it does not know.
pub const PROTOCOL_VERSION: i32 = 3;

/// One decoded request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Spawn(SpawnOpts),
    Create(CreateOpts),
    Start(String),
    Stop(String),
    Destroy(String),
    ConsoleWrite(String, Vec<u8>),
    ConsoleAck(String, usize),
    List,
    Info(String),
    LogTail(String),
    Ping,
}

/// Options of `{spawn, Opts}`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SpawnOpts {
    pub name: Option<String>,
    pub boot_timeout: Duration,
    pub code_paths: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    /// A sandbox: no distribution, no network; the client's agent socket to mount.
    pub sandbox: Option<SandboxOpts>,
    pub seccomp: Seccomp,
    /// A distributed node that announces itself (`announce => true`): ready when it writes
    /// its name on its own FIFO, not when its EPMD knows it and a handshake completes.
    pub announce: bool,
}

/// Options of a sandbox (`sandbox => #{socket => Path}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOpts {
    /// The client's listening socket, in the port's `agents_dir`; checked when spawning.
    pub socket: std::path::PathBuf,
}

/// Which seccomp policy an application container's processes run under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// Ampule's own (`crate::seccomp`): the default.
    Ampule,
    /// LXC's `common.seccomp` only (a short denylist: kernel modules, kexec, file handles).
    Lxc,
    /// None at all.
    Off,
    /// A profile file of the caller's, in LXC's format.
    Profile(String),
}

/// cgroup limits shared by both kinds of container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory: u64,
    pub pids: u64,
    pub cpu_shares: u64,
    /// A hard CPU quota in thousandths of one CPU (`1500` = one and a half), or none.
    pub cpu_millis: Option<u64>,
}

impl Default for Limits {
    /// A system container's: no CPU quota (a whole distribution shares the CPU by weight).
    fn default() -> Limits {
        Limits {
            memory: 512 * 1024 * 1024,
            pids: 512,
            cpu_shares: 1024,
            cpu_millis: None,
        }
    }
}

impl Limits {
    /// An application container's: the same, plus a quota of one CPU, so that a runaway
    /// node (a fork bomb, a spinning process on every scheduler) leaves the rest of the
    /// host's CPUs to everything else. A node's boot barely needs more than one CPU.
    pub fn app() -> Limits {
        Limits {
            cpu_millis: Some(APP_CPU_MILLIS),
            ..Limits::default()
        }
    }
}

/// The default CPU quota of an application container, in thousandths of a CPU.
pub const APP_CPU_MILLIS: u64 = 1000;

/// Options of `{create, Opts}`: a system container from an LXC template.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateOpts {
    pub name: Option<String>,
    pub template: String,
    pub template_args: Vec<String>,
    pub release: Option<String>,
    pub user: Option<(String, String)>,
    pub privileged: bool,
    pub persistent: bool,
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    pub timeout: Duration,
}

/// The bounds of an integer option, inclusive.
pub type Bounds = (u64, u64);

/// A memory limit: a node does not boot in less than 16 MiB.
pub const MEMORY: Bounds = (16 * 1024 * 1024, u64::MAX);
/// A process limit: a node needs 16 (threads count).
pub const PIDS: Bounds = (16, u64::MAX);
/// A CPU weight: the kernel takes none below 2.
pub const CPU_SHARES: Bounds = (2, u64::MAX);
/// A CPU quota in thousandths of a CPU: a hundredth of one CPU up to 1,024 CPUs.
pub const CPU_MILLIS: Bounds = (10, 1_024_000);
/// A deadline in milliseconds: up to an hour.
pub const DURATION_MS: Bounds = (1, 3_600_000);

/// Every key of `{spawn, Opts}`, with the bounds of the integer ones. A key not here is a
/// `bad_option`; `--print-tables` prints this table for the client's tests.
pub const SPAWN_OPTIONS: &[(&str, Option<Bounds>)] = &[
    ("name", None),
    ("sandbox", None),
    ("boot_timeout", Some(DURATION_MS)),
    ("code_paths", None),
    ("args", None),
    ("env", None),
    ("config", None),
    ("seccomp", None),
    ("announce", None),
    ("memory", Some(MEMORY)),
    ("pids", Some(PIDS)),
    ("cpu_shares", Some(CPU_SHARES)),
    ("cpu_millis", Some(CPU_MILLIS)),
];

/// Every key of `{create, Opts}`, as [`SPAWN_OPTIONS`].
pub const CREATE_OPTIONS: &[(&str, Option<Bounds>)] = &[
    ("name", None),
    ("template", None),
    ("template_args", None),
    ("release", None),
    ("user", None),
    ("privileged", None),
    ("persistent", None),
    ("config", None),
    ("timeout", Some(DURATION_MS)),
    ("memory", Some(MEMORY)),
    ("pids", Some(PIDS)),
    ("cpu_shares", Some(CPU_SHARES)),
    ("cpu_millis", Some(CPU_MILLIS)),
];

/// Why a request term was refused; each maps to an `{error, Reason}` reply.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// Not a request the port knows.
    Unknown,
    /// A known request with arguments of the wrong shape.
    Bad,
    BadOption(Term),
    BadOptionValue(String, Term),
    BadConfigKey(String),
}

pub fn atom(s: &str) -> Term {
    Term::from(Atom::from(s))
}

pub fn bin(s: impl AsRef<[u8]>) -> Term {
    Term::from(Binary::from(s.as_ref()))
}

pub fn int(i: i64) -> Term {
    match i32::try_from(i) {
        Ok(v) => Term::from(FixInteger::from(v)),
        Err(_) => Term::from(eetf::BigInteger::from(i)),
    }
}

pub fn tuple(items: Vec<Term>) -> Term {
    Term::from(Tuple::from(items))
}

/// A list of terms that are never small integers (see `etf::encode_term`).
pub fn list(items: Vec<Term>) -> Term {
    Term::from(List::from(items))
}

pub fn map(pairs: Vec<(&str, Term)>) -> Term {
    let m: HashMap<Term, Term> = pairs.into_iter().map(|(k, v)| (atom(k), v)).collect();
    Term::from(Map::from(m))
}

pub fn ok() -> Out {
    Out::Term(atom("ok"))
}

pub fn ok_value(v: Term) -> Out {
    Out::Term(tuple(vec![atom("ok"), v]))
}

pub fn error(reason: Term) -> Out {
    Out::Term(tuple(vec![atom("error"), reason]))
}

/// `{event, Kind, Data}`.
pub fn event(kind: &str, data: Term) -> Out {
    Out::Term(tuple(vec![atom("event"), atom(kind), data]))
}

/// `{Tag, Result}` with the caller's tag echoed byte for byte.
pub fn reply(tag: &[u8], result: Out) -> Out {
    Out::Tuple(vec![Out::Raw(tag.to_vec()), result])
}

impl RequestError {
    /// One error of every variant, for `--print-tables`. No wildcard: a new variant does
    /// not compile until it is listed. The request they echo is [`RequestError::reason`]'s
    /// argument.
    pub fn examples() -> Vec<RequestError> {
        // What a reason echoes is the client's own (its key, its value): given here as
        // terms of no atom but the key, a key the client sends (so its atom exists there).
        let examples = vec![
            RequestError::Unknown,
            RequestError::Bad,
            RequestError::BadOption(bin("key")),
            RequestError::BadOptionValue("name".into(), int(0)),
            RequestError::BadConfigKey("x".into()),
        ];
        for e in &examples {
            match e {
                RequestError::Unknown
                | RequestError::Bad
                | RequestError::BadOption(_)
                | RequestError::BadOptionValue(..)
                | RequestError::BadConfigKey(_) => {}
            }
        }
        examples
    }

    /// The atom that heads this error's reason.
    fn head(&self) -> &'static str {
        match self {
            RequestError::Unknown => "unknown_request",
            RequestError::Bad => "bad_request",
            RequestError::BadOption(_) => "bad_option",
            RequestError::BadOptionValue(..) => "bad_option_value",
            RequestError::BadConfigKey(_) => "bad_config_key",
        }
    }

    /// The reason term of this error, with `request` standing for the request as sent.
    pub fn reason(&self, request: Term) -> Term {
        let head = atom(self.head());
        match self {
            RequestError::Unknown | RequestError::Bad => tuple(vec![head, request]),
            RequestError::BadOption(k) => tuple(vec![head, k.clone()]),
            RequestError::BadOptionValue(k, v) => tuple(vec![head, atom(k), v.clone()]),
            RequestError::BadConfigKey(k) => tuple(vec![head, bin(k)]),
        }
    }

    /// The reply for this error; `raw_request` is the request as the caller sent it.
    pub fn to_reply(&self, raw_request: &[u8]) -> Out {
        let reason = match self {
            // The request as it came, byte for byte: it may hold what eetf cannot encode.
            RequestError::Unknown | RequestError::Bad => Out::Tuple(vec![
                atom(self.head()).into(),
                Out::Raw(raw_request.to_vec()),
            ]),
            other => other.reason(atom("undefined")).into(),
        };
        Out::Tuple(vec![atom("error").into(), reason])
    }
}

fn as_atom(t: &Term) -> Option<&str> {
    match t {
        Term::Atom(a) => Some(a.name.as_str()),
        _ => None,
    }
}

fn as_string(t: &Term) -> Option<String> {
    match t {
        Term::Binary(b) => String::from_utf8(b.bytes.clone()).ok(),
        _ => None,
    }
}

fn as_bytes(t: &Term) -> Option<Vec<u8>> {
    match t {
        Term::Binary(b) => Some(b.bytes.clone()),
        _ => None,
    }
}

fn as_u64(t: &Term) -> Option<u64> {
    match t {
        Term::FixInteger(i) => u64::try_from(i.value).ok(),
        Term::BigInteger(b) => u64::try_from(&b.value).ok(),
        _ => None,
    }
}

fn as_list(t: &Term) -> Option<&[Term]> {
    match t {
        Term::List(l) => Some(&l.elements),
        // eetf decodes a list of small integers as a byte list; none of our lists is one,
        // but an empty list arrives as List too.
        _ => None,
    }
}

fn as_name(t: &Term) -> Option<String> {
    as_string(t).filter(|s| valid_name(s))
}

/// Container names: what liblxc, a hostname and a file name all accept.
pub fn valid_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !s.starts_with('-')
}

/// Parses a request body.
pub fn parse(term: &Term) -> Result<Request, RequestError> {
    if let Some(name) = as_atom(term) {
        return match name {
            "list" => Ok(Request::List),
            "ping" => Ok(Request::Ping),
            "spawn" => Ok(Request::Spawn(spawn_opts(&empty_map())?)),
            "create" => Ok(Request::Create(create_opts(&empty_map())?)),
            _ => Err(RequestError::Unknown),
        };
    }
    let Term::Tuple(t) = term else {
        return Err(RequestError::Unknown);
    };
    let Some(kind) = t.elements.first().and_then(as_atom) else {
        return Err(RequestError::Unknown);
    };
    let args = &t.elements[1..];
    let name_arg = || match args {
        [n] => as_name(n).ok_or(RequestError::Bad),
        _ => Err(RequestError::Bad),
    };
    match kind {
        "spawn" => match args {
            [opts] => Ok(Request::Spawn(spawn_opts(opts)?)),
            _ => Err(RequestError::Bad),
        },
        "create" => match args {
            [opts] => Ok(Request::Create(create_opts(opts)?)),
            _ => Err(RequestError::Bad),
        },
        "destroy" => name_arg().map(Request::Destroy),
        "stop" => name_arg().map(Request::Stop),
        "start" => name_arg().map(Request::Start),
        "info" => name_arg().map(Request::Info),
        "log_tail" => name_arg().map(Request::LogTail),
        "console" => match args {
            [n, data] => match (as_name(n), as_bytes(data)) {
                (Some(n), Some(d)) => Ok(Request::ConsoleWrite(n, d)),
                _ => Err(RequestError::Bad),
            },
            _ => Err(RequestError::Bad),
        },
        "console_ack" => match args {
            [n, bytes] => match (as_name(n), as_u64(bytes)) {
                (Some(n), Some(b)) => Ok(Request::ConsoleAck(n, b as usize)),
                _ => Err(RequestError::Bad),
            },
            _ => Err(RequestError::Bad),
        },
        _ => Err(RequestError::Unknown),
    }
}

fn empty_map() -> Term {
    Term::from(Map::from(HashMap::<Term, Term>::new()))
}

/// The map's pairs keyed by atom name; a non-atom key is a bad option.
fn opts_map(t: &Term) -> Result<Vec<(String, &Term)>, RequestError> {
    let Term::Map(m) = t else {
        return Err(RequestError::Bad);
    };
    // In a fixed order (the map's own is random): with several bad options, the same one
    // is named every time.
    if let Some(k) = m
        .map
        .keys()
        .filter(|k| as_atom(k).is_none())
        .min_by_key(|k| k.to_string())
    {
        return Err(RequestError::BadOption(k.clone()));
    }
    let mut out: Vec<(String, &Term)> = m
        .map
        .iter()
        .filter_map(|(k, v)| Some((as_atom(k)?.to_string(), v)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn bad(key: &str, v: &Term) -> RequestError {
    RequestError::BadOptionValue(key.to_string(), v.clone())
}

fn strings(key: &str, v: &Term, ok: impl Fn(&str) -> bool) -> Result<Vec<String>, RequestError> {
    as_list(v)
        .ok_or_else(|| bad(key, v))?
        .iter()
        .map(|e| as_string(e).filter(|s| ok(s)).ok_or_else(|| bad(key, v)))
        .collect()
}

fn pairs(
    key: &str,
    v: &Term,
    ok: impl Fn(&str, &str) -> bool,
) -> Result<Vec<(String, String)>, RequestError> {
    let items = as_list(v).ok_or_else(|| bad(key, v))?;
    items
        .iter()
        .map(|e| match e {
            Term::Tuple(t) if t.elements.len() == 2 => {
                match (as_string(&t.elements[0]), as_string(&t.elements[1])) {
                    (Some(a), Some(b)) if ok(&a, &b) => Ok((a, b)),
                    _ => Err(bad(key, v)),
                }
            }
            _ => Err(bad(key, v)),
        })
        .collect()
}

fn no_control(s: &str) -> bool {
    !s.bytes().any(|b| b == 0 || b == b'\n' || b == b'\r')
}

fn valid_path(s: &str) -> bool {
    s.starts_with('/') && no_control(s) && !s.split('/').any(|part| part == "..") && s.len() < 4096
}

fn valid_env(k: &str, v: &str) -> bool {
    !k.is_empty()
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !k.as_bytes()[0].is_ascii_digit()
        && no_control(v)
}

/// Raw `lxc.*` items pass through, but never a key that would let a request undo what the
/// port guarantees (its own rootfs, init, id map and network are set by the port).
fn config_items(key: &str, v: &Term) -> Result<Vec<(String, String)>, RequestError> {
    let items = pairs(key, v, |k, val| no_control(k) && no_control(val))?;
    for (k, _) in &items {
        let allowed = k.starts_with("lxc.")
            && k.len() > 4
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !allowed {
            return Err(RequestError::BadConfigKey(k.clone()));
        }
    }
    Ok(items)
}

fn duration_ms(key: &str, v: &Term) -> Result<Duration, RequestError> {
    bounded(key, v, DURATION_MS).map(Duration::from_millis)
}

fn bounded(key: &str, v: &Term, (min, max): Bounds) -> Result<u64, RequestError> {
    as_u64(v)
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| bad(key, v))
}

/// `key` if the table has it, else a `bad_option`.
fn known<'a>(table: &[(&str, Option<Bounds>)], key: &'a str) -> Result<&'a str, RequestError> {
    if table.iter().any(|(k, _)| *k == key) {
        Ok(key)
    } else {
        Err(RequestError::BadOption(atom(key)))
    }
}

impl Limits {
    /// Sets the option `key` if it is a limit (`memory`, `pids`, `cpu_shares`,
    /// `cpu_millis`), the same for both kinds of container; any other key is a bad option.
    fn set(&mut self, key: &str, v: &Term) -> Result<(), RequestError> {
        match key {
            "memory" => self.memory = bounded(key, v, MEMORY)?,
            "pids" => self.pids = bounded(key, v, PIDS)?,
            "cpu_shares" => self.cpu_shares = bounded(key, v, CPU_SHARES)?,
            "cpu_millis" => self.cpu_millis = cpu_millis(key, v)?,
            _ => return Err(RequestError::BadOption(atom(key))),
        }
        Ok(())
    }
}

/// A CPU quota in thousandths of a CPU, or `infinity` for none.
fn cpu_millis(key: &str, v: &Term) -> Result<Option<u64>, RequestError> {
    if as_atom(v) == Some("infinity") {
        return Ok(None);
    }
    bounded(key, v, CPU_MILLIS).map(Some)
}

/// `true` (Ampule's policy), `lxc`, `false`, or the absolute path of a profile file.
fn seccomp(key: &str, v: &Term) -> Result<Seccomp, RequestError> {
    match as_atom(v) {
        Some("true") => Ok(Seccomp::Ampule),
        Some("lxc") => Ok(Seccomp::Lxc),
        Some("false") => Ok(Seccomp::Off),
        Some(_) => Err(bad(key, v)),
        None => as_string(v)
            .filter(|p| valid_path(p))
            .map(Seccomp::Profile)
            .ok_or_else(|| bad(key, v)),
    }
}

fn spawn_opts(t: &Term) -> Result<SpawnOpts, RequestError> {
    let mut o = SpawnOpts {
        name: None,
        boot_timeout: Duration::from_secs(15),
        code_paths: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        config: Vec::new(),
        limits: Limits::app(),
        sandbox: None,
        seccomp: Seccomp::Ampule,
        announce: false,
    };
    for (k, v) in opts_map(t)? {
        match known(SPAWN_OPTIONS, &k)? {
            "name" => o.name = Some(as_name(v).ok_or_else(|| bad(&k, v))?),
            "sandbox" => o.sandbox = Some(sandbox_opts(&k, v)?),
            "boot_timeout" => o.boot_timeout = duration_ms(&k, v)?,
            "code_paths" => o.code_paths = strings(&k, v, valid_path)?,
            "args" => o.args = strings(&k, v, |s| !s.contains('\0'))?,
            "env" => o.env = pairs(&k, v, valid_env)?,
            "config" => o.config = config_items(&k, v)?,
            "seccomp" => o.seccomp = seccomp(&k, v)?,
            "announce" => o.announce = boolean(&k, v)?,
            other => o.limits.set(other, v)?,
        }
    }
    // A sandbox is not distributed: it has no name to announce.
    if o.announce && o.sandbox.is_some() {
        return Err(bad("announce", &atom("true")));
    }
    Ok(o)
}

fn sandbox_opts(key: &str, v: &Term) -> Result<SandboxOpts, RequestError> {
    let pairs = opts_map(v).map_err(|_| bad(key, v))?;
    match pairs.as_slice() {
        [(k, path)] if k == "socket" => as_string(path)
            .filter(|p| valid_path(p))
            .map(|p| SandboxOpts { socket: p.into() })
            .ok_or_else(|| bad(key, v)),
        _ => Err(bad(key, v)),
    }
}

fn boolean(key: &str, v: &Term) -> Result<bool, RequestError> {
    match as_atom(v) {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(bad(key, v)),
    }
}

fn create_opts(t: &Term) -> Result<CreateOpts, RequestError> {
    let mut o = CreateOpts {
        name: None,
        template: "busybox".into(),
        template_args: Vec::new(),
        release: None,
        user: None,
        privileged: false,
        persistent: false,
        config: Vec::new(),
        limits: Limits::default(),
        timeout: Duration::from_secs(600),
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    for (k, v) in opts_map(t)? {
        match known(CREATE_OPTIONS, &k)? {
            "name" => o.name = Some(as_name(v).ok_or_else(|| bad(&k, v))?),
            "template" => {
                o.template = as_string(v).filter(|s| word(s)).ok_or_else(|| bad(&k, v))?
            }
            "template_args" => o.template_args = strings(&k, v, |s| !s.contains('\0'))?,
            "release" => {
                o.release = Some(as_string(v).filter(|s| word(s)).ok_or_else(|| bad(&k, v))?)
            }
            "user" => {
                let p = pairs(&k, &list(vec![v.clone()]), |u, p| {
                    word(u) && !p.is_empty() && no_control(p) && !p.contains(':')
                })
                .map_err(|_| bad(&k, v))?;
                o.user = p.into_iter().next();
            }
            "privileged" => o.privileged = boolean(&k, v)?,
            "persistent" => o.persistent = boolean(&k, v)?,
            "config" => o.config = config_items(&k, v)?,
            "timeout" => o.timeout = duration_ms(&k, v)?,
            other => o.limits.set(other, v)?,
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: Vec<(&str, Term)>) -> Term {
        tuple(vec![atom("spawn"), map(pairs)])
    }

    #[test]
    fn bare_atoms_and_tuples() {
        assert_eq!(parse(&atom("list")), Ok(Request::List));
        assert_eq!(parse(&atom("ping")), Ok(Request::Ping));
        assert_eq!(
            parse(&tuple(vec![atom("destroy"), bin("a-1")])),
            Ok(Request::Destroy("a-1".into()))
        );
        assert_eq!(parse(&atom("reboot_host")), Err(RequestError::Unknown));
        assert_eq!(parse(&int(3)), Err(RequestError::Unknown));
        assert_eq!(
            parse(&tuple(vec![atom("destroy"), bin("../etc")])),
            Err(RequestError::Bad)
        );
        assert_eq!(parse(&tuple(vec![atom("destroy")])), Err(RequestError::Bad));
    }

    #[test]
    fn spawn_defaults() {
        let Ok(Request::Spawn(o)) = parse(&atom("spawn")) else {
            panic!("spawn did not parse");
        };
        assert_eq!(o.boot_timeout, Duration::from_secs(15));
        assert_eq!(o.limits, Limits::app());
        assert_eq!(o.limits.cpu_millis, Some(1000));
        assert_eq!(o.seccomp, Seccomp::Ampule);
        assert!(o.name.is_none() && o.code_paths.is_empty());
    }

    #[test]
    fn system_containers_have_no_cpu_quota_by_default() {
        let Ok(Request::Create(o)) = parse(&atom("create")) else {
            panic!("create did not parse");
        };
        assert_eq!(o.limits.cpu_millis, None);
    }

    #[test]
    fn a_cpu_quota_is_set_changed_or_lifted() {
        let spawn = |v: Term| match parse(&opts(vec![("cpu_millis", v)])) {
            Ok(Request::Spawn(o)) => Ok(o.limits.cpu_millis),
            Err(e) => Err(e),
            Ok(other) => panic!("{other:?}"),
        };
        assert_eq!(spawn(int(250)), Ok(Some(250)));
        assert_eq!(spawn(atom("infinity")), Ok(None));
        for v in [int(0), int(9), int(1_024_001), atom("max"), bin("1000")] {
            assert_eq!(
                spawn(v.clone()),
                Err(RequestError::BadOptionValue("cpu_millis".into(), v))
            );
        }
    }

    #[test]
    fn seccomp_is_ampules_lxcs_none_or_a_profile_file() {
        let spawn = |v: Term| match parse(&opts(vec![("seccomp", v)])) {
            Ok(Request::Spawn(o)) => Ok(o.seccomp),
            Err(e) => Err(e),
            Ok(other) => panic!("{other:?}"),
        };
        assert_eq!(spawn(atom("true")), Ok(Seccomp::Ampule));
        assert_eq!(spawn(atom("lxc")), Ok(Seccomp::Lxc));
        assert_eq!(spawn(atom("false")), Ok(Seccomp::Off));
        assert_eq!(
            spawn(bin("/etc/ampule/my.seccomp")),
            Ok(Seccomp::Profile("/etc/ampule/my.seccomp".into()))
        );
        for v in [
            atom("docker"),
            bin("relative.seccomp"),
            bin("/a/../etc/shadow"),
            bin("/a\nlxc.init.uid = 0"),
            int(1),
        ] {
            assert_eq!(
                spawn(v.clone()),
                Err(RequestError::BadOptionValue("seccomp".into(), v))
            );
        }
    }

    #[test]
    fn spawn_options_are_validated() {
        let Ok(Request::Spawn(o)) = parse(&opts(vec![
            ("name", bin("web_1")),
            ("boot_timeout", int(500)),
            ("code_paths", list(vec![bin("/srv/app/ebin")])),
            ("env", list(vec![tuple(vec![bin("LANG"), bin("C.UTF-8")])])),
            (
                "config",
                list(vec![tuple(vec![bin("lxc.cgroup2.cpu.max"), bin("max")])]),
            ),
        ])) else {
            panic!("valid options refused");
        };
        assert_eq!(o.name.as_deref(), Some("web_1"));
        assert_eq!(o.boot_timeout, Duration::from_millis(500));
        assert_eq!(o.env, vec![("LANG".into(), "C.UTF-8".into())]);

        assert_eq!(
            parse(&opts(vec![("colour", int(1))])),
            Err(RequestError::BadOption(atom("colour")))
        );
        assert_eq!(
            parse(&opts(vec![("boot_timeout", int(0))])),
            Err(RequestError::BadOptionValue("boot_timeout".into(), int(0)))
        );
        assert!(matches!(
            parse(&opts(vec![(
                "code_paths",
                list(vec![bin("relative/ebin")])
            )])),
            Err(RequestError::BadOptionValue(..))
        ));
        assert!(matches!(
            parse(&opts(vec![("code_paths", list(vec![bin("/a/../etc")]))])),
            Err(RequestError::BadOptionValue(..))
        ));
        assert_eq!(
            parse(&opts(vec![(
                "config",
                list(vec![tuple(vec![bin("lxc.x\nlxc.y"), bin("1")])])
            )])),
            Err(RequestError::BadOptionValue(
                "config".into(),
                list(vec![tuple(vec![bin("lxc.x\nlxc.y"), bin("1")])])
            ))
        );
        assert_eq!(
            parse(&opts(vec![(
                "config",
                list(vec![tuple(vec![bin("net.foo"), bin("1")])])
            )])),
            Err(RequestError::BadConfigKey("net.foo".into()))
        );
    }

    /// Each key of the tables reaches its own arm (a value of no option's type is refused
    /// as that key's value, not as an unknown option), and its bounds are the arm's.
    #[test]
    fn the_option_tables_are_what_the_parser_takes() {
        let float = Term::from(eetf::Float { value: 0.5 });
        for (kind, table) in [("spawn", SPAWN_OPTIONS), ("create", CREATE_OPTIONS)] {
            let request = |k: &str, v: Term| parse(&tuple(vec![atom(kind), map(vec![(k, v)])]));
            for &(key, bounds) in table {
                assert_eq!(
                    request(key, float.clone()),
                    Err(RequestError::BadOptionValue(key.into(), float.clone())),
                    "{kind} {key}"
                );
                if let Some((min, max)) = bounds {
                    let n = |n: u64| match i64::try_from(n) {
                        Ok(i) => int(i),
                        Err(_) => Term::from(eetf::BigInteger::from(n)),
                    };
                    assert!(request(key, n(min)).is_ok(), "{kind} {key} {min}");
                    assert!(request(key, n(max)).is_ok(), "{kind} {key} {max}");
                    assert!(request(key, n(min - 1)).is_err(), "{kind} {key} below");
                    if max < u64::MAX {
                        assert!(request(key, n(max + 1)).is_err(), "{kind} {key} above");
                    }
                }
            }
            assert_eq!(
                request("colour", int(1)),
                Err(RequestError::BadOption(atom("colour")))
            );
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("a-k3x9-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(41)));
    }
}
