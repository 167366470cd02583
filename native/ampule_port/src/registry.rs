//! The containers this instance owns, of every kind, by name: each an [`Entry`] whose
//! [`State`] changes only through [`Registry::transition`], after the state's `can_*`
//! predicate said yes.
//!
//! | from | to | when | allowed by |
//! |---|---|---|---|
//! | — | `Booting` | a name is reserved | [`Registry::reserve`] |
//! | `Booting` | `Running` | a node answered, a sandbox's init runs, a system booted | `can_run` |
//! | `Running`, `Stopped` | `Destroying` | `destroy` | `can_destroy` |
//! | `Running` | `Destroying` | a node's init exits | `can_end` |
//! | `Running` | `Stopped` | a system container's init exits | `can_end` |
//! | `Running` | `Stopping` | a system container's `stop` | `can_stop` |
//! | `Stopping` | `Stopped` | the halt `stop` began is over | `can_halt` |
//! | `Stopped` | `Booting` | a system container's `start` | `can_start` |
//! | `Booting` | `Destroying` | a node's boot fails | `can_fail` |
//! | `Booting` | `Stopped` | a system container's `start` fails | `can_fail` |
//! | all but `Destroying` | `Destroying` | end of input (nodes) | `can_shut_down` |
//!
//! A `Destroying` entry is forgotten once its container is removed. A `Stopping` one is
//! neither destroyed nor stopped again nor ended by its init's exit: the `stop` under way
//! does all that.
//!
//! A name is claimed by a [`Reservation`], which forgets it again if the container is
//! never made. A destroyed application container's name is free as soon as `destroy`
//! answered: a reservation of it waits for the release still running (see
//! [`Entry::releasing`]).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::error::Failure;
use crate::leases::Lease;
use crate::names::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Booting,
    Running,
    /// A system container that `stop` is halting (its disk stays).
    Stopping,
    Stopped,
    Destroying,
}

impl State {
    pub fn atom(self) -> &'static str {
        match self {
            State::Booting => "booting",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Destroying => "destroying",
        }
    }

    /// A booting container becomes ready (its node answered, or its init runs).
    pub fn can_run(self) -> bool {
        self == State::Booting
    }

    /// `destroy` takes a running or stopped container; a booting one answers `booting`;
    /// one being destroyed is gone already, and one being stopped is left to its `stop`
    /// (both answer `not_found`, as before `Stopping` had a name of its own).
    pub fn can_destroy(self) -> bool {
        matches!(self, State::Running | State::Stopped)
    }

    /// Only a running system container stops.
    pub fn can_stop(self) -> bool {
        self == State::Running
    }

    /// A stop's halt is over: only the container it was stopping becomes stopped (not one
    /// that something else took meanwhile).
    pub fn can_halt(self) -> bool {
        self == State::Stopping
    }

    /// A boot that fails undoes only itself: a booting container goes (a node) or is
    /// stopped again (a system container's `start`); one the end of input took meanwhile
    /// is the end of input's.
    pub fn can_fail(self) -> bool {
        self == State::Booting
    }

    /// End of input takes every node not being destroyed already.
    pub fn can_shut_down(self) -> bool {
        self != State::Destroying
    }

    /// An init's exit ends only a running container (a booting one's spawn sees the exit
    /// itself; one being destroyed or stopped is ended already, and one being stopped is
    /// its `stop`'s to end).
    pub fn can_end(self) -> bool {
        self == State::Running
    }

    /// Only a stopped system container starts again.
    pub fn can_start(self) -> bool {
        self == State::Stopped
    }
}

/// What only one kind of container has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// A distributed node: its address, once leased, and its name, once started.
    App {
        lease: Option<Lease>,
        nodename: Option<String>,
    },
    /// A sandbox's agent socket (the client's, in `agents_dir`), removed with it.
    Sandbox { socket: Option<PathBuf> },
    /// Kept (stopped, disk intact) when the port exits, and adopted by the next one.
    System { persistent: bool },
}

impl Detail {
    pub fn kind(&self) -> Kind {
        match self {
            Detail::App { .. } => Kind::App,
            Detail::Sandbox { .. } => Kind::Sandbox,
            Detail::System { .. } => Kind::System,
        }
    }
}

/// One container this instance owns.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub state: State,
    pub init_pid: Option<i32>,
    /// A pidfd on the init, from its exit watch: `destroy` kills through it, so that it can
    /// never reach a process that reused the pid.
    pub init_fd: Option<Arc<AsyncFd<OwnedFd>>>,
    pub detail: Detail,
}

impl Entry {
    /// A new entry in `state`.
    pub fn new(seq: u64, state: State, detail: Detail) -> Entry {
        Entry {
            seq,
            state,
            init_pid: None,
            init_fd: None,
            detail,
        }
    }

    pub fn kind(&self) -> Kind {
        self.detail.kind()
    }

    /// An application container's address lease, if it has one.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.detail {
            Detail::App { lease, .. } => lease.as_ref(),
            _ => None,
        }
    }

    /// An application container that `destroy` has answered for and whose veth, cgroups,
    /// files and address are still being released: gone for the BEAM, not yet for the port.
    pub fn releasing(&self) -> bool {
        self.kind().is_application() && self.state == State::Destroying
    }
}

/// Why [`Registry::transition`] did not move an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    /// The entry is of this kind and in this state.
    In(Kind, State),
}

/// The containers of this instance.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<String, Entry>>,
    seq: AtomicU64,
    /// Woken whenever a name is forgotten: a spawn that wants the name of a container still
    /// being released, and the final sweep, wait on it.
    released: Notify,
    /// Set when input ends: no name is reserved any more.
    closing: AtomicBool,
}

impl Registry {
    /// A registry that starts with `adopted` (system containers of a dead instance).
    pub fn new(adopted: impl IntoIterator<Item = (String, Entry)>) -> Registry {
        Registry {
            entries: Mutex::new(adopted.into_iter().collect()),
            ..Registry::default()
        }
    }

    /// The entries, locked. A panic while holding this lock would be a bug; the map itself
    /// stays consistent (every update is a single insert/remove/field write), so keep
    /// serving.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// `name`'s kind, if it is an entry.
    pub fn kind_of(&self, name: &str) -> Option<Kind> {
        self.lock().get(name).map(Entry::kind)
    }

    /// Runs `f` on `name`'s entry, if there is one (for fields other than the state).
    pub fn with<T>(&self, name: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        self.lock().get_mut(name).map(f)
    }

    /// Moves `name` to `to` if `can` says yes of its entry, then runs `then` on it; the one
    /// place a state changes.
    pub fn transition<T>(
        &self,
        name: &str,
        to: State,
        can: impl FnOnce(&Entry) -> bool,
        then: impl FnOnce(&mut Entry) -> T,
    ) -> Result<T, Refusal> {
        let mut entries = self.lock();
        let e = entries.get_mut(name).ok_or(Refusal::Missing)?;
        if !can(e) {
            return Err(Refusal::In(e.kind(), e.state));
        }
        e.state = to;
        Ok(then(e))
    }

    /// Moves every container of `kind` that `can` takes to `to`; returns them, moved.
    pub fn transition_all(
        &self,
        kind: Kind,
        to: State,
        can: impl Fn(&Entry) -> bool,
    ) -> Vec<(String, Entry)> {
        self.lock()
            .iter_mut()
            .filter(|(_, e)| e.kind() == kind && can(e))
            .map(|(n, e)| {
                e.state = to;
                (n.clone(), e.clone())
            })
            .collect()
    }

    /// Takes a running or stopped container for `destroy`: the entry as it was.
    pub fn claim_for_destroy(&self, name: &str) -> Result<Entry, Failure> {
        self.transition(
            name,
            State::Destroying,
            |e| e.state.can_destroy(),
            |e| e.clone(),
        )
        .map_err(|r| match r {
            Refusal::In(_, State::Booting) => Failure::Booting,
            _ => Failure::NotFound,
        })
    }

    /// Claims `name` for a new container, or says why not. `taken` says whether something
    /// else on disk already has the name. A destroyed container's name is free as soon as
    /// `destroy` answered: if its release is still running, this waits for it (up to
    /// `limit`, then the name is in use) rather than refusing the name.
    pub async fn reserve(
        &self,
        name: &str,
        detail: Detail,
        limit: Duration,
        taken: impl Fn() -> bool,
    ) -> Result<Reservation<'_>, Failure> {
        let wait = self.after_releases(|| match self.try_reserve(name, &detail, &taken) {
            Err(None) => None,
            Err(Some(f)) => Some(Err(f)),
            Ok(seq) => Some(Ok(seq)),
        });
        let seq = tokio::time::timeout(limit, wait)
            .await
            .unwrap_or(Err(Failure::NameInUse))?;
        Ok(Reservation {
            registry: self,
            name: name.to_string(),
            seq,
            committed: false,
        })
    }

    /// `Err(None)`: the name belongs to an application container being released.
    fn try_reserve(
        &self,
        name: &str,
        detail: &Detail,
        taken: &impl Fn() -> bool,
    ) -> Result<u64, Option<Failure>> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(Some(Failure::Closing));
        }
        let mut entries = self.lock();
        if entries.get(name).is_some_and(Entry::releasing) {
            return Err(None);
        }
        if entries.contains_key(name) || taken() {
            return Err(Some(Failure::NameInUse));
        }
        let seq = self.next_seq();
        entries.insert(
            name.to_string(),
            Entry::new(seq, State::Booting, detail.clone()),
        );
        Ok(seq)
    }

    /// Runs `check` now and again after every release until it gives an answer. The wake-up
    /// is armed before each check, so a release between the two is never missed.
    async fn after_releases<T>(&self, mut check: impl FnMut() -> Option<T>) -> T {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(answer) = check() {
                return answer;
            }
            released.await;
        }
    }

    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
        self.released.notify_waiters();
    }

    /// Waits until no application container is still being released.
    pub async fn releases_done(&self) {
        self.after_releases(|| (!self.lock().values().any(Entry::releasing)).then_some(()))
            .await
    }

    /// The application containers still being released.
    pub fn releasing(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.releasing())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Input has ended: no name is reserved from now on, and a spawn waiting for a release
    /// must not take the name (and an address) now.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.released.notify_waiters();
    }
}

/// A name claimed by [`Registry::reserve`]: forgotten again when dropped, unless
/// [`commit`](Reservation::commit)ted (from then on, the container's removal forgets it).
pub struct Reservation<'a> {
    registry: &'a Registry,
    name: String,
    seq: u64,
    committed: bool,
}

impl Reservation<'_> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container is being made: its removal, not this reservation, forgets the name.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let mine = self
            .registry
            .lock()
            .get(&self.name)
            .is_some_and(|e| e.seq == self.seq);
        if mine {
            self.registry.forget(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Detail {
        Detail::App {
            lease: None,
            nodename: None,
        }
    }

    #[tokio::test]
    async fn a_reservation_forgets_its_name_unless_committed() {
        let reg = Registry::default();
        let limit = Duration::from_millis(10);
        let r = reg.reserve("a", app(), limit, || false).await.unwrap();
        assert_eq!(
            reg.reserve("a", app(), limit, || false).await.err(),
            Some(Failure::NameInUse)
        );
        drop(r);
        assert!(reg.kind_of("a").is_none());
        reg.reserve("a", app(), limit, || false)
            .await
            .unwrap()
            .commit();
        assert_eq!(reg.kind_of("a"), Some(Kind::App));
        assert_eq!(
            reg.reserve("b", app(), limit, || true).await.err(),
            Some(Failure::NameInUse)
        );
        reg.close();
        assert_eq!(
            reg.reserve("c", app(), limit, || false).await.err(),
            Some(Failure::Closing)
        );
    }

    #[tokio::test]
    async fn a_stale_reservation_leaves_a_new_owner_of_its_name_alone() {
        let reg = Registry::default();
        let limit = Duration::from_millis(10);
        let r = reg.reserve("a", app(), limit, || false).await.unwrap();
        reg.forget("a");
        reg.reserve("a", app(), limit, || false)
            .await
            .unwrap()
            .commit();
        drop(r);
        assert_eq!(reg.kind_of("a"), Some(Kind::App));
    }

    #[test]
    fn states_change_only_where_their_predicate_allows() {
        let reg = Registry::new([(
            "s".to_string(),
            Entry::new(0, State::Stopped, Detail::System { persistent: true }),
        )]);
        let stop =
            |reg: &Registry| reg.transition("s", State::Stopping, |e| e.state.can_stop(), |_| ());
        assert_eq!(stop(&reg), Err(Refusal::In(Kind::System, State::Stopped)));
        let start = reg.transition("s", State::Booting, |e| e.state.can_start(), |_| ());
        assert_eq!(start, Ok(()));
        assert_eq!(reg.claim_for_destroy("s").err(), Some(Failure::Booting));
        assert_eq!(reg.claim_for_destroy("t").err(), Some(Failure::NotFound));
    }

    /// Every predicate against every state: the table in this module's doc, row by row.
    #[test]
    fn each_predicate_allows_exactly_the_states_of_the_table() {
        use State::*;
        let all = [Booting, Running, Stopping, Stopped, Destroying];
        type Row = (&'static str, fn(State) -> bool, &'static [State]);
        let table: [Row; 8] = [
            ("can_run", State::can_run, &[Booting]),
            ("can_destroy", State::can_destroy, &[Running, Stopped]),
            ("can_stop", State::can_stop, &[Running]),
            ("can_halt", State::can_halt, &[Stopping]),
            ("can_end", State::can_end, &[Running]),
            ("can_start", State::can_start, &[Stopped]),
            ("can_fail", State::can_fail, &[Booting]),
            (
                "can_shut_down",
                State::can_shut_down,
                &[Booting, Running, Stopping, Stopped],
            ),
        ];
        for (name, can, allowed) in table {
            for s in all {
                assert_eq!(can(s), allowed.contains(&s), "{name}({s:?})");
            }
        }
    }

    #[test]
    fn a_stop_under_way_is_left_to_itself() {
        let reg = Registry::new([(
            "s".to_string(),
            Entry::new(0, State::Running, Detail::System { persistent: true }),
        )]);
        let to =
            |to: State, can: fn(State) -> bool| reg.transition("s", to, |e| can(e.state), |_| ());
        assert_eq!(to(State::Stopping, State::can_stop), Ok(()));
        // Neither a second stop, nor its init's exit, nor destroy takes it from the stop.
        let stopping = Err(Refusal::In(Kind::System, State::Stopping));
        assert_eq!(to(State::Stopping, State::can_stop), stopping);
        assert_eq!(to(State::Stopped, State::can_end), stopping);
        assert_eq!(reg.claim_for_destroy("s").err(), Some(Failure::NotFound));
        assert_eq!(to(State::Stopped, State::can_halt), Ok(()));
        assert_eq!(
            to(State::Stopped, State::can_halt),
            Err(Refusal::In(Kind::System, State::Stopped))
        );
        assert!(reg.claim_for_destroy("s").is_ok());
    }
}
