//! A system container's address: its distribution's DHCP client configured it, inside the
//! container, so the port reads it from the container's network namespace.

use std::path::Path;

/// The IPv4 address a system container's DHCP client configured, read from its network
/// namespace (`/proc/PID/net/fib_trie`: a `|-- ADDRESS` line followed by `/32 host LOCAL`).
pub fn netns_address(init_pid: i32) -> Option<String> {
    // The container's root can add addresses without end: read a bounded prefix.
    let trie = crate::untrusted::read_bounded(
        Path::new(&format!("/proc/{init_pid}/net/fib_trie")),
        1 << 20,
    )
    .ok()?;
    local_address(&String::from_utf8_lossy(&trie))
}

fn local_address(trie: &str) -> Option<String> {
    let lines: Vec<&str> = trie.lines().collect();
    lines.windows(2).find_map(|w| {
        let addr = w[0].trim().strip_prefix("|-- ")?;
        let local = w[1].trim() == "/32 host LOCAL";
        (local && !addr.starts_with("127.")).then(|| addr.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_local_address_in_fib_trie() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.213.57.200\n        /32 host LOCAL\n\
                    |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(local_address(trie), Some("10.213.57.200".to_string()));
        assert_eq!(local_address("|-- 127.0.0.1\n /32 host LOCAL\n"), None);
    }
}
