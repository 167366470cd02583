//! The start gate. Starting a container holds it shared; the port's shutdown shuts it for
//! good, so that no container can be started behind the back of the final sweep: a
//! request still in flight then waits at the gate until the process exits.

use std::sync::Arc;

use tokio::sync::{OwnedRwLockReadGuard, RwLock};

/// Shared by every start, taken exclusively (and never given back) by the shutdown.
#[derive(Default)]
pub struct Gate(Arc<RwLock<()>>);

/// A start in progress; the gate cannot shut while one is held.
pub type Permit = OwnedRwLockReadGuard<()>;

impl Gate {
    /// Waits for the gate to be open (it is, until the shutdown), and holds it open.
    pub async fn permit(&self) -> Permit {
        self.0.clone().read_owned().await
    }

    /// Waits for the starts in flight, then shuts the gate for the life of the process:
    /// the write guard is leaked on purpose, since nothing may start after the sweep.
    pub async fn shut(&self) {
        std::mem::forget(self.0.clone().write_owned().await);
    }
}
