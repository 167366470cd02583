//! The protocol's two descriptors, as tokio pipes. The BEAM hands us fds 3 and 4
//! (`nouse_stdio`); we move them out of the way of children and make them non-blocking, so
//! reading is truly async (tokio's `stdin()` is a blocking thread that cannot be cancelled).

use std::io;
use std::os::fd::{OwnedFd, RawFd};

use nix::fcntl::OFlag;
pub use tokio::net::unix::pipe::{Receiver, Sender};

/// Reopens the pipe behind `fd` through `/proc/self/fd` as a private close-on-exec,
/// non-blocking descriptor, then closes `fd` itself: children never inherit the protocol,
/// and the port holds its descriptors without `unsafe`.
pub fn take_private(fd: RawFd, write: bool) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{fd}"))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("fd {fd} is not an open pipe ({e}): start the port with nouse_stdio"),
            )
        })?;
    nix::unistd::close(fd)?;
    Ok(OwnedFd::from(file))
}

/// Points fd 0 at `/dev/null` and fd 1 at stderr, so that nothing a child (or liblxc, or a
/// template) writes to its standard streams can reach the BEAM.
pub fn detach_stdio() -> io::Result<()> {
    let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR, nix::sys::stat::Mode::empty())?;
    nix::unistd::dup2(null, 0)?;
    nix::unistd::dup2(2, 1)?;
    if null > 2 {
        nix::unistd::close(null)?;
    }
    Ok(())
}
