//! What containers and instances are called. Generated container names say whose they
//! are (`a-INSTANCE-N`: kind, then the port instance that made it), so that the start-up
//! sweep can attribute a cgroup left behind after its directory is gone; instance ids,
//! cookies and system veths are random strings from one generator.

/// What kind of container an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An application container whose node is reached over distribution.
    App,
    /// An application container whose node is reached through its agent (no network).
    Sandbox,
    System,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::App, Kind::Sandbox, Kind::System];

    /// The first letter of generated names (`a-INSTANCE-N`), which the start-up sweep
    /// reads to attribute leftover cgroups.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::App => "a",
            Kind::Sandbox => "x",
            Kind::System => "s",
        }
    }

    /// Transient, one node, removed by the port once destroyed (both application modes).
    pub fn is_application(self) -> bool {
        matches!(self, Kind::App | Kind::Sandbox)
    }

    /// The kind as the protocol names it (`info`'s `kind`).
    pub fn atom(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Sandbox => "sandbox",
            Kind::System => "system",
        }
    }
}

/// The name of the `seq`-th container of this port instance, when the client gave none.
pub fn generated(kind: Kind, instance: &str, seq: u64) -> String {
    format!("{}-{instance}-{seq}", kind.prefix())
}

/// The instance that made a container with a [`generated`] name; `None` for other names.
pub fn instance_of(name: &str) -> Option<&str> {
    let mut parts = name.splitn(3, '-');
    let (kind, owner) = (parts.next()?, parts.next()?);
    Kind::ALL
        .iter()
        .any(|k| k.prefix() == kind)
        .then_some(owner)
}

/// Instance ids: lower-case letters and digits.
pub const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Lower-case hexadecimal digits.
pub const HEX_ALPHABET: &[u8] = b"0123456789abcdef";
/// Upper-case letters, as `erl` makes its own cookies.
pub const COOKIE_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// `len` characters drawn uniformly from `alphabet`.
pub fn random(alphabet: &[u8], len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_say_whose_they_are() {
        for kind in Kind::ALL {
            let name = generated(kind, "k3x9ab", 7);
            assert_eq!(name, format!("{}-k3x9ab-7", kind.prefix()));
            assert_eq!(instance_of(&name), Some("k3x9ab"));
        }
        assert_eq!(instance_of("web_1"), None);
        assert_eq!(instance_of("b-k3x9ab-7"), None);
        assert_eq!(instance_of("a"), None);
    }

    #[test]
    fn random_strings_come_from_their_alphabet() {
        let id = random(ID_ALPHABET, 6);
        assert_eq!(id.len(), 6);
        assert!(id.bytes().all(|b| ID_ALPHABET.contains(&b)));
        assert!(random(HEX_ALPHABET, 64)
            .bytes()
            .all(|b| b.is_ascii_hexdigit()));
    }
}
