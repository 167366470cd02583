//! A port instance's identity on disk. Each instance holds a lock under
//! `STATE/instances/ID.lock` for its whole life: a live lock is how other instances know it
//! runs, and a lock anyone can take belongs to a dead instance, whose leftovers are theirs
//! to sweep. What an instance makes is marked with its id in an owner file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::names;

/// The owner file written into each container directory.
pub const OWNER_FILE: &str = "ampule-owner";

/// Containers marked persistent survive their port (system containers): the owner file
/// reads `persistent INSTANCE`, and only a dead instance's containers are adopted.
pub const PERSISTENT: &str = "persistent";

/// Takes this instance's lock. The file is locked under a private name and only then
/// linked to `ID.lock`: a sweep that could lock a visible lock file before its owner did
/// would take a live instance for a dead one (and hand its addresses out again).
pub fn take_lock(dir: &Path) -> io::Result<(String, Flock<fs::File>)> {
    loop {
        let id = names::random(names::ID_ALPHABET, 6);
        let private = dir.join(format!(".{id}.{}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&private)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| io::Error::from(e))?;
        let linked = fs::hard_link(&private, dir.join(format!("{id}.lock")));
        let _ = fs::remove_file(&private);
        match linked {
            Ok(()) => return Ok((id, lock)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The lock file of instance `id`, removed when it exits.
pub fn lock_file(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("instances").join(format!("{id}.lock"))
}

/// Whether the port instance `id` is alive (its lock file exists; a dead instance's lock is
/// removed by the first sweep that manages to take it).
pub fn live_instance(state_dir: &Path, id: &str) -> bool {
    !id.is_empty() && lock_file(state_dir, id).exists()
}

/// Where a sweep records an instance it found dead, until nothing of it is left.
pub fn tombstone(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("instances").join(format!("{id}.dead"))
}
