//! A node that announces itself (`announce => true`): ready when it writes its own name,
//! `NAME@ADDRESS` and a newline, on the FIFO the port made for it and bind-mounted at
//! `/run/ampule/ready` (the Elixir library's nodes run `-s ampule_announce` at the end of
//! their boot, once distribution is up). As a `:peer` node connects back to its origin,
//! but through a file of its own: a container opens no connection to the host.
//!
//! Instead of polling the container's EPMD every few milliseconds and then completing a
//! handshake with a node still booting (`boot.rs`), the port sleeps until the node speaks.
//! The client's own connection is then the one handshake, and the check: the port has
//! not proven that the node answers with its cookie, only that it said it is up.
//!
//! What the node writes is untrusted, like every byte of a container: lines are bounded
//! ([`MAX_LINE`]), and only the exact expected name counts; anything else (another node's
//! name, `nonode@nohost` from a node whose distribution did not start, garbage) is
//! refused, logged once, and the wait goes on until the boot deadline. Each container has
//! its own FIFO, outside its rootfs and reachable from no other: a container can only
//! ever announce itself.

use std::io;
use std::path::Path;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::timeline::Timeline;

/// The longest line a node may write: a name is at most 40 + 1 + 15 bytes.
pub const MAX_LINE: usize = 256;

/// Opens a node's FIFO for the port to read. Read-write, so that the port is a writer too:
/// the FIFO never reads as closed while no node holds it open, and the node's blocking
/// open for writing finds a reader at once.
pub fn open(path: &Path) -> io::Result<pipe::Receiver> {
    pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
}

/// What a node wrote, cut into lines and judged.
#[derive(Debug, Default)]
pub struct Lines {
    line: Vec<u8>,
    /// The current line passed [`MAX_LINE`]: it is refused whatever its end.
    long: bool,
}

impl Lines {
    /// Takes what the node wrote next; the verdict on each line it completes: `Ok` for the
    /// expected name, `Err` with (the start of) the line for anything else.
    pub fn push(&mut self, bytes: &[u8], expected: &str) -> Vec<Result<(), String>> {
        let mut verdicts = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                let long = std::mem::take(&mut self.long);
                verdicts.push(if !long && line == expected.as_bytes() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&line).into_owned())
                });
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            } else {
                self.long = true;
            }
        }
        verdicts
    }
}

/// Returns once the node has announced `expected` on `fifo`; never otherwise (the caller
/// bounds the wait with the boot deadline and the init's exit).
pub async fn wait(fifo: &mut pipe::Receiver, name: &str, expected: &str, timeline: &Timeline) {
    let mut lines = Lines::default();
    let mut chunk = [0u8; 512];
    let mut refused = false;
    loop {
        let n = match fifo.read(&mut chunk).await {
            Ok(n) if n > 0 => n,
            // Cannot happen while the port holds a write end; if it does, the deadline ends it.
            Ok(_) => return std::future::pending().await,
            Err(e) => {
                log::warn!(container = name; "cannot read the ready FIFO: {e}");
                return std::future::pending().await;
            }
        };
        for verdict in lines.push(&chunk[..n], expected) {
            match verdict {
                Ok(()) => {
                    timeline.mark("announce");
                    return;
                }
                // Once: a node that writes wrong lines in a loop must not flood the log.
                Err(line) if !refused => {
                    refused = true;
                    log::warn!(container = name; "refused an announcement: {line:?} is not {expected:?}");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "a-k3x9-1@10.213.57.2";

    #[test]
    fn only_the_exact_name_on_a_line_of_its_own_counts() {
        let mut l = Lines::default();
        assert_eq!(l.push(b"a-k3x9-1@10.213.57", ME), vec![]);
        assert_eq!(l.push(b".2\n", ME), vec![Ok(())]);
        let mut l = Lines::default();
        assert_eq!(
            l.push(b"a-k3x9-2@10.213.57.3\nnonode@nohost\n\n", ME),
            vec![
                Err("a-k3x9-2@10.213.57.3".into()),
                Err("nonode@nohost".into()),
                Err(String::new())
            ]
        );
        // A name with a trailing space or a carriage return is not the name.
        assert_eq!(l.push(format!("{ME} \n{ME}\r\n").as_bytes(), ME).len(), 2);
        assert!(l
            .push(format!("{ME} \n{ME}\r\n").as_bytes(), ME)
            .iter()
            .all(Result::is_err));
    }

    #[test]
    fn a_long_line_is_refused_and_held_to_its_bound() {
        let mut l = Lines::default();
        let mut long = ME.as_bytes().to_vec();
        long.extend(std::iter::repeat_n(b'x', 10 * MAX_LINE));
        assert_eq!(l.push(&long, ME), vec![]);
        assert!(l.line.len() <= MAX_LINE);
        let v = l.push(b"\n", ME);
        assert!(matches!(&v[..], [Err(s)] if s.len() == MAX_LINE));
        // The next line starts afresh.
        assert_eq!(l.push(format!("{ME}\n").as_bytes(), ME), vec![Ok(())]);
    }
}
