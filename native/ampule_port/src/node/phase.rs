//! The step a node's boot is in, shared between the boot and whoever reports its timeout
//! (`{boot_timeout, Phase, Log}`): `create` and `start` here, `epmd` and `handshake` while
//! a distributed node is awaited (`app/boot.rs`), `announce` while an announcing one is
//! (`app/announce.rs`).

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// The step a boot was in; reported by `boot_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Create = 0,
    Start = 1,
    Epmd = 2,
    Handshake = 3,
    Announce = 4,
}

impl Phase {
    pub fn atom(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Start => "start",
            Phase::Epmd => "epmd",
            Phase::Handshake => "handshake",
            Phase::Announce => "announce",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.atom())
    }
}

/// The current phase, shared between a boot and whoever reports its timeout.
#[derive(Debug, Default)]
pub struct PhaseCell(AtomicU8);

impl PhaseCell {
    pub fn set(&self, p: Phase) {
        self.0.store(p as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            0 => Phase::Create,
            1 => Phase::Start,
            2 => Phase::Epmd,
            3 => Phase::Handshake,
            _ => Phase::Announce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_cell_round_trips() {
        let c = PhaseCell::default();
        assert_eq!(c.get(), Phase::Create);
        for p in [Phase::Start, Phase::Epmd, Phase::Handshake, Phase::Announce] {
            c.set(p);
            assert_eq!(c.get(), p);
        }
    }
}
