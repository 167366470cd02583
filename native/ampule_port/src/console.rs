//! Consoles streamed to the BEAM as `{event, console, {Name, Bytes}}` under a credit
//! window: the port reads at most [`WINDOW`] bytes ahead of the client's acknowledgements
//! (`{console_ack, Name, Bytes}`), so a slow reader stalls the container's console writes
//! instead of growing the port's memory. No byte is dropped or altered.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::Failure;
use crate::lxc::{self, ConsoleFds};
use crate::outbox::Outbox;
use crate::protocol::{bin, tuple};

/// Console bytes the port reads ahead of the client's acknowledgements.
pub const WINDOW: usize = 256 * 1024;
const CHUNK: usize = 16 * 1024;

struct Console {
    ptx: Arc<AsyncFd<OwnedFd>>,
    _sock: OwnedFd,
    credit: Arc<Credit>,
    reader: JoinHandle<()>,
}

#[derive(Default)]
struct Credit {
    unacked: Mutex<usize>,
    more: Notify,
}

impl Credit {
    fn unacked(&self) -> MutexGuard<'_, usize> {
        self.unacked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The open consoles, by container name.
#[derive(Default)]
pub struct Consoles {
    open: Mutex<HashMap<String, Console>>,
}

impl Consoles {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Console>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Detaches from a container's console (its reader stops, the monitor frees the tty).
    pub fn close(&self, name: &str) {
        if let Some(c) = self.lock().remove(name) {
            c.reader.abort();
        }
    }

    /// Attaches to a container's console and streams it to `out`, replacing an earlier
    /// attachment of the same name.
    pub fn attach(&self, out: &Outbox, name: &str, fds: ConsoleFds) -> io::Result<()> {
        fds.make_raw()?;
        let raw = fds.ptx.as_raw_fd();
        let flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL)?);
        fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let ptx = Arc::new(lxc::register(
            fds.ptx,
            Interest::READABLE | Interest::WRITABLE,
        )?);
        let credit = Arc::new(Credit::default());
        let reader = tokio::spawn(read_console(
            out.clone(),
            name.to_string(),
            ptx.clone(),
            credit.clone(),
        ));
        self.close(name);
        self.lock().insert(
            name.to_string(),
            Console {
                ptx,
                _sock: fds.sock,
                credit,
                reader,
            },
        );
        Ok(())
    }

    /// A writer on `name`'s console, if one is attached.
    pub fn writer(&self, name: &str) -> Option<Writer> {
        self.lock().get(name).map(|c| Writer(c.ptx.clone()))
    }

    /// The client has taken `n` more bytes of `name`'s console.
    pub fn ack(&self, name: &str, n: usize) -> Result<(), Failure> {
        let open = self.lock();
        let c = open.get(name).ok_or(Failure::NotFound)?;
        let mut unacked = c.credit.unacked();
        *unacked = unacked.saturating_sub(n);
        c.credit.more.notify_one();
        Ok(())
    }
}

/// The writing side of one console.
pub struct Writer(Arc<AsyncFd<OwnedFd>>);

impl Writer {
    /// Writes every byte of `data`, in order.
    pub async fn write_all(&self, data: &[u8]) -> Result<(), Failure> {
        let mut written = 0;
        while written < data.len() {
            let Ok(mut guard) = self.0.writable().await else {
                return Err(Failure::NoConsole);
            };
            match guard.try_io(|fd| {
                nix::unistd::write(fd.get_ref(), &data[written..]).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => written += n,
                Ok(Err(e)) => return Err(Failure::Console(e.to_string())),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

async fn read_console(out: Outbox, name: String, ptx: Arc<AsyncFd<OwnedFd>>, credit: Arc<Credit>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        loop {
            let waiting = credit.more.notified();
            if *credit.unacked() < WINDOW {
                break;
            }
            waiting.await;
        }
        let Ok(mut guard) = ptx.readable().await else {
            return;
        };
        match guard
            .try_io(|fd| nix::unistd::read(fd.as_raw_fd(), &mut buf).map_err(io::Error::from))
        {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => {
                *credit.unacked() += n;
                out.event("console", tuple(vec![bin(&name), bin(&buf[..n])]));
            }
            // EIO: the other side of the pty is gone (the container stopped).
            Ok(Err(_)) => return,
            Err(_would_block) => continue,
        }
    }
}
