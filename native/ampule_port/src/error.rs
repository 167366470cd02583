//! Why a request failed, for every kind of container: each case is one `{error, Reason}`
//! of `docs/protocol.md`. The kinds return a [`Failure`]; the dispatcher renders it once,
//! with [`Failure::reason`], so that no reason term is built anywhere else.

use std::path::PathBuf;

use eetf::Term;

use crate::lxc::LxcError;
use crate::protocol::{atom, bin, tuple};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Input has ended: no name is reserved any more.
    Closing,
    NameInUse,
    NotFound,
    /// `destroy` of a container that is still booting.
    Booting,
    /// `log_tail` of a system container, which has a console instead.
    NoLog,
    /// Every static address of the subnet is leased.
    NoAddress,
    /// The lease files could not be used.
    Leases(String),
    /// A sandbox's agent socket that is not the client's to hand over.
    BadAgentSocket(PathBuf),
    /// The boot deadline passed in `phase`; the node's last output.
    BootTimeout {
        phase: &'static str,
        log: String,
    },
    /// The node exited while booting: how (a status, `killed`, `oom`, `unknown`), its output.
    BootFailed {
        status: Term,
        log: String,
    },
    /// The application container's directory could not be written.
    Rootfs(String),
    /// The liblxc call (or step) that failed.
    Lxc(&'static str),
    /// A template that downloads images from the internet.
    TemplateUnavailable(String),
    UnknownTemplate(String),
    Dhcp(String),
    CreateTimeout,
    CreateFailed(String),
    /// Writing to a console failed.
    Console(String),
    NoConsole,
    /// A system container's request (`start`) for an application container.
    NotSystem,
    AlreadyRunning,
    Stopped,
}

impl From<LxcError> for Failure {
    fn from(e: LxcError) -> Failure {
        Failure::Lxc(e.call)
    }
}

impl Failure {
    /// The `Reason` of `{error, Reason}`.
    pub fn reason(&self) -> Term {
        match self {
            Failure::Closing => atom("closing"),
            Failure::NameInUse => atom("name_in_use"),
            Failure::NotFound => atom("not_found"),
            Failure::Booting => atom("booting"),
            Failure::NoLog => atom("no_log"),
            Failure::NoAddress => atom("no_address"),
            Failure::Leases(e) => tuple(vec![atom("leases"), bin(e)]),
            Failure::BadAgentSocket(p) => tuple(vec![
                atom("bad_option_value"),
                atom("sandbox"),
                bin(p.to_string_lossy().as_bytes()),
            ]),
            Failure::BootTimeout { phase, log } => {
                tuple(vec![atom("boot_timeout"), atom(phase), bin(log)])
            }
            Failure::BootFailed { status, log } => {
                tuple(vec![atom("boot_failed"), status.clone(), bin(log)])
            }
            Failure::Rootfs(e) => tuple(vec![atom("rootfs"), bin(e)]),
            Failure::Lxc(call) => tuple(vec![atom("lxc"), atom(call)]),
            Failure::TemplateUnavailable(t) => tuple(vec![
                atom("template_unavailable"),
                bin(t),
                bin(format!(
                    "the {t} template downloads images from the internet, which this host does \
                     not reach; use busybox or debian (debootstrap from a Debian mirror)"
                )),
            ]),
            Failure::UnknownTemplate(t) => tuple(vec![atom("unknown_template"), bin(t)]),
            Failure::Dhcp(e) => tuple(vec![atom("dhcp"), bin(e)]),
            Failure::CreateTimeout => atom("create_timeout"),
            Failure::CreateFailed(e) => tuple(vec![atom("create_failed"), bin(e)]),
            Failure::Console(e) => tuple(vec![atom("console"), bin(e)]),
            Failure::NoConsole => atom("no_console"),
            Failure::NotSystem => atom("not_system"),
            Failure::AlreadyRunning => atom("already_running"),
            Failure::Stopped => atom("stopped"),
        }
    }
}

/// One example of every variant, written next to a pattern for it. The patterns make one
/// `match` without a wildcard, so a new variant does not compile until it is listed here
/// with an example; each example is checked against its own pattern. `--print-tables`
/// prints their reasons, and the Elixir library's tests compare them with its own table.
macro_rules! every_failure {
    ($($pattern:pat => $example:expr),+ $(,)?) => {
        impl Failure {
            /// One failure of every variant (see `every_failure!`).
            pub fn examples() -> Vec<Failure> {
                let examples = vec![$($example),+];
                for f in &examples {
                    match f {
                        $($pattern => {}),+
                    }
                }
                let patterns_matched = [$(matches!($example, $pattern)),+];
                assert!(patterns_matched.iter().all(|&m| m), "an example does not match its pattern");
                examples
            }
        }
    };
}

every_failure! {
    Failure::Closing => Failure::Closing,
    Failure::NameInUse => Failure::NameInUse,
    Failure::NotFound => Failure::NotFound,
    Failure::Booting => Failure::Booting,
    Failure::NoLog => Failure::NoLog,
    Failure::NoAddress => Failure::NoAddress,
    Failure::Leases(_) => Failure::Leases("x".into()),
    Failure::BadAgentSocket(_) => Failure::BadAgentSocket("/x".into()),
    Failure::BootTimeout { .. } => Failure::BootTimeout { phase: "epmd", log: String::new() },
    Failure::BootFailed { .. } => Failure::BootFailed { status: atom("oom"), log: String::new() },
    Failure::Rootfs(_) => Failure::Rootfs("x".into()),
    Failure::Lxc(_) => Failure::Lxc("start"),
    Failure::TemplateUnavailable(_) => Failure::TemplateUnavailable("download".into()),
    Failure::UnknownTemplate(_) => Failure::UnknownTemplate("x".into()),
    Failure::Dhcp(_) => Failure::Dhcp("x".into()),
    Failure::CreateTimeout => Failure::CreateTimeout,
    Failure::CreateFailed(_) => Failure::CreateFailed("x".into()),
    Failure::Console(_) => Failure::Console("x".into()),
    Failure::NoConsole => Failure::NoConsole,
    Failure::NotSystem => Failure::NotSystem,
    Failure::AlreadyRunning => Failure::AlreadyRunning,
    Failure::Stopped => Failure::Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atoms(t: &Term, out: &mut Vec<String>) {
        match t {
            Term::Atom(a) => out.push(a.name.clone()),
            Term::Tuple(t) => t.elements.iter().for_each(|e| atoms(e, out)),
            _ => {}
        }
    }

    /// The client decodes with `[safe]`: an atom it does not already have fails the decode.
    #[test]
    fn every_reason_atom_is_one_the_client_knows() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../elixir/ampule/protocol.ex"
        );
        let Ok(client) = std::fs::read_to_string(path) else {
            return;
        };
        let every = Failure::examples();
        for f in every {
            let mut found = Vec::new();
            atoms(&f.reason(), &mut found);
            for a in found {
                assert!(
                    client.contains(&format!(":{a},")) || client.contains(&format!(":{a}\n")),
                    "{a}"
                );
            }
        }
    }
}
