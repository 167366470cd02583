//! Why a container's init ended, as the kernel saw it.
//!
//! An init is not the port's child (liblxc's monitor is its parent and reaps it), so
//! `waitid` cannot tell the port its status, and a pidfd only says *that* it exited. The
//! init wrapper used to write `echo $? >exit_status` in the container's home and the port
//! read that file as root, following links, blocking, without bound: a container that
//! made it a FIFO froze the port, one that linked it to `/dev/zero` grew the port by
//! 1.5 GB/s, and any container could forge its status. Now the status comes from the
//! kernel's process events connector, which reports every process exit with its exit code
//! before it wakes the pidfd's waiters: nothing a container writes is read.
//!
//! Every exit on the host passes through here (tens of bytes each); only those of thread
//! group leaders are kept, in a ring of the last [`KEPT`], which a container's exit is
//! looked up in right after its pidfd turns readable. If the connector is unavailable
//! (a kernel without `CONFIG_PROC_EVENTS`, no access to the initial network namespace) or
//! its buffer overflowed, the status is [`Ended::Unknown`].

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::lxc;

/// How many recent exits are kept for a lookup.
const KEPT: usize = 8192;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// The kernel's report was not seen.
    Unknown,
}

impl Ended {
    /// From the wait-status-style `exit_code` of a process event.
    pub fn from_wait_status(code: u32) -> Ended {
        let signal = (code & 0x7f) as i32;
        if signal == 0 {
            Ended::Exited(((code >> 8) & 0xff) as i32)
        } else {
            Ended::Signaled(signal)
        }
    }
}

/// The exits the kernel reported lately.
#[derive(Default)]
pub struct Exits {
    recent: Mutex<VecDeque<(i32, Ended)>>,
    arrived: Notify,
    listening: std::sync::atomic::AtomicBool,
}

impl Exits {
    /// Subscribes to the kernel's process events and keeps reading them (call from within
    /// the runtime). Without them every status is `Unknown`, which is logged once here.
    pub fn start() -> Arc<Exits> {
        let exits = Arc::new(Exits::default());
        match lxc::proc_events_socket().and_then(|s| lxc::register(s, Interest::READABLE)) {
            Ok(sock) => {
                exits
                    .listening
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(read_events(sock, exits.clone()));
            }
            Err(e) => log::warn!(
                "cannot listen to the kernel's process events ({e}); \
                 containers' exit statuses will be unknown"
            ),
        }
        exits
    }

    /// How the process `pid` ended, waiting up to `limit` for the kernel's report: call it
    /// once the process has exited (its pidfd is readable), as the report precedes that.
    pub async fn of(&self, pid: i32, limit: Duration) -> Ended {
        if !self.listening.load(std::sync::atomic::Ordering::Relaxed) {
            return Ended::Unknown;
        }
        let find = async {
            loop {
                let arrived = self.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if let Some(e) = self.lookup(pid) {
                    return e;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(limit, find)
            .await
            .unwrap_or(Ended::Unknown)
    }

    fn lookup(&self, pid: i32) -> Option<Ended> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .rev()
            .find(|(p, _)| *p == pid)
            .map(|&(_, e)| e)
    }

    fn record(&self, exits: impl IntoIterator<Item = (i32, Ended)>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for e in exits {
            if recent.len() == KEPT {
                recent.pop_front();
            }
            recent.push_back(e);
        }
        drop(recent);
        self.arrived.notify_waiters();
    }
}

async fn read_events(sock: AsyncFd<OwnedFd>, exits: Arc<Exits>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut guard) = sock.readable().await else {
            return;
        };
        match guard.try_io(|fd| {
            nix::sys::socket::recv(
                fd.get_ref().as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            )
            .map_err(std::io::Error::from)
        }) {
            Ok(Ok(n)) => exits.record(parse_exits(&buf[..n])),
            // ENOBUFS: events were lost in a burst; the statuses they carried are unknown.
            Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                log::debug!("process events overflowed; some exit statuses are lost")
            }
            Ok(Err(e)) => {
                log::warn!("process events: {e}; exit statuses will be unknown from now on");
                return;
            }
            Err(_would_block) => continue,
        }
    }
}

/// `PROC_EVENT_EXIT` in `<linux/cn_proc.h>`.
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDR: usize = 16;
const CN_MSG_HDR: usize = 20;

/// The exits of thread group leaders (whole processes) in one datagram from the
/// connector: `nlmsghdr`, `cn_msg`, then `proc_event` (what, cpu, timestamp, then for an
/// exit: pid, tgid, exit_code, exit_signal). Anything malformed is skipped.
pub fn parse_exits(datagram: &[u8]) -> Vec<(i32, Ended)> {
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        b.get(at..at + 4)
            .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDR {
        let Some(len) = u32_at(rest, 0).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDR || len > rest.len() {
            break;
        }
        let msg = &rest[..len];
        let ev = NLMSG_HDR + CN_MSG_HDR;
        let is_proc = u32_at(msg, NLMSG_HDR) == Some(lxc::CN_IDX_PROC)
            && u32_at(msg, NLMSG_HDR + 4) == Some(lxc::CN_VAL_PROC);
        if is_proc && u32_at(msg, ev) == Some(PROC_EVENT_EXIT) {
            let data = ev + 16;
            if let (Some(pid), Some(tgid), Some(code)) = (
                u32_at(msg, data),
                u32_at(msg, data + 4),
                u32_at(msg, data + 8),
            ) {
                if pid == tgid {
                    out.push((pid as i32, Ended::from_wait_status(code)));
                }
            }
        }
        // Messages are aligned to 4 bytes.
        let step = (len + 3) & !3;
        rest = rest.get(step..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit_event(pid: u32, tgid: u32, code: u32) -> Vec<u8> {
        let mut ev = Vec::new();
        for v in [PROC_EVENT_EXIT, 0] {
            ev.extend_from_slice(&v.to_ne_bytes());
        }
        ev.extend_from_slice(&0u64.to_ne_bytes());
        for v in [pid, tgid, code, 17, 1, 1] {
            ev.extend_from_slice(&v.to_ne_bytes());
        }
        let mut cn = Vec::new();
        for v in [lxc::CN_IDX_PROC, lxc::CN_VAL_PROC, 0, 0] {
            cn.extend_from_slice(&v.to_ne_bytes());
        }
        cn.extend_from_slice(&(ev.len() as u16).to_ne_bytes());
        cn.extend_from_slice(&0u16.to_ne_bytes());
        cn.extend_from_slice(&ev);
        let mut msg = Vec::new();
        msg.extend_from_slice(&((NLMSG_HDR + cn.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&[0u8; 12]);
        msg.extend_from_slice(&cn);
        msg
    }

    #[test]
    fn exit_codes_and_signals_of_whole_processes() {
        let mut two = exit_event(42, 42, 7 << 8);
        two.extend(exit_event(43, 42, 0));
        two.extend(exit_event(50, 50, 9));
        assert_eq!(
            parse_exits(&two),
            vec![(42, Ended::Exited(7)), (50, Ended::Signaled(9))]
        );
    }

    #[test]
    fn malformed_datagrams_give_nothing_and_never_panic() {
        let good = exit_event(42, 42, 0);
        for cut in 0..good.len() {
            let _ = parse_exits(&good[..cut]);
        }
        assert!(parse_exits(&good[..good.len() - 1]).is_empty());
        let mut lying = good.clone();
        lying[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_exits(&lying).is_empty());
        lying[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse_exits(&lying).is_empty());
    }

    #[tokio::test]
    async fn the_kernel_reports_a_childs_exit_status() {
        lxc::proc_events_socket().expect("the process events connector (as root)");
        let exits = Exits::start();
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let _ = child.wait_with_output();
        assert_eq!(
            exits.of(pid, Duration::from_secs(5)).await,
            Ended::Exited(7)
        );
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "kill -9 $$"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let _ = child.wait_with_output();
        assert_eq!(
            exits.of(pid, Duration::from_secs(5)).await,
            Ended::Signaled(9)
        );
    }
}
