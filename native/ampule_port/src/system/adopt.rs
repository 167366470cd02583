//! What a new port does with the system containers of a dead one: the persistent ones are
//! adopted, stopped (their monitors killed if still there), and claimed by writing this
//! instance into their owner file; the others are the start-up sweep's to remove.

use std::fs;
use std::time::Duration;

use crate::host::Host;
use crate::instance::{live_instance, OWNER_FILE, PERSISTENT};
use crate::registry::{Detail, Entry, State};
use crate::teardown;

/// System containers an earlier port instance made: adopted as stopped.
pub fn adopt(host: &Host) -> Vec<(String, Entry)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&host.lxcpath) else {
        return out;
    };
    for e in entries.flatten() {
        let owner = fs::read_to_string(e.path().join(OWNER_FILE)).unwrap_or_default();
        let mut f = owner.split_whitespace();
        if f.next() != Some(PERSISTENT) {
            continue;
        }
        if f.next().is_some_and(|i| live_instance(&host.state_dir, i)) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        teardown::stop(&host.lxcpath, &name);
        teardown::remove_cgroups(&name, Duration::from_secs(2));
        let claimed = format!("{PERSISTENT} {}", host.instance);
        if fs::write(e.path().join(OWNER_FILE), claimed).is_err() {
            continue;
        }
        let detail = Detail::System { persistent: true };
        out.push((name, Entry::new(0, State::Stopped, detail)));
    }
    out
}
