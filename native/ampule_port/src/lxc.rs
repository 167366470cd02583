//! The only `unsafe` in the port: a safe wrapper over liblxc (`lxc-sys`) and the small
//! system calls that belong to a container's init (a pidfd to watch it exit and kill it,
//! the kernel's process events to learn its exit status).
//!
//! Every liblxc call blocks (start forks and waits on the monitor socket): call these from a
//! blocking thread, never from an async task. A [`Container`] is deliberately not `Send`:
//! liblxc's handle carries raw pointers and locks of its own, so each blocking job opens its
//! own handle by name.

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;

use lxc_sys::lxc_container;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A liblxc call that failed; `call` names the liblxc method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LxcError {
    pub call: &'static str,
    pub detail: String,
}

impl fmt::Display for LxcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "liblxc {} failed: {}", self.call, self.detail)
    }
}

impl std::error::Error for LxcError {}

fn err(call: &'static str, detail: impl Into<String>) -> LxcError {
    LxcError {
        call,
        detail: detail.into(),
    }
}

fn cstring(call: &'static str, s: &str) -> Result<CString, LxcError> {
    CString::new(s).map_err(|_| err(call, format!("NUL byte in {s:?}")))
}

/// liblxc's version string, e.g. `5.0.2`.
pub fn version() -> String {
    // SAFETY: lxc_get_version returns a pointer to a static NUL-terminated string.
    unsafe {
        let p = lxc_sys::lxc_get_version();
        if p.is_null() {
            return String::from("unknown");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// An open liblxc handle on one container (which may or may not exist on disk yet).
pub struct Container {
    ptr: NonNull<lxc_container>,
}

macro_rules! method {
    ($self:ident, $name:ident) => {
        // SAFETY: ptr is a live container returned by lxc_container_new; the method table is
        // filled in by liblxc for every container it returns.
        unsafe { (*$self.ptr.as_ptr()).$name }.ok_or_else(|| err(stringify!($name), "missing"))?
    };
}

impl Container {
    /// Opens the container `name` under `lxcpath` (liblxc loads its config if one is saved).
    pub fn open(name: &str, lxcpath: &Path) -> Result<Container, LxcError> {
        let name_c = cstring("lxc_container_new", name)?;
        let path_c = cstring("lxc_container_new", &lxcpath.to_string_lossy())?;
        // SAFETY: both arguments are valid NUL-terminated strings that outlive the call.
        let ptr = unsafe { lxc_sys::lxc_container_new(name_c.as_ptr(), path_c.as_ptr()) };
        NonNull::new(ptr)
            .map(|ptr| Container { ptr })
            .ok_or_else(|| err("lxc_container_new", format!("cannot open {name}")))
    }

    fn last_error(&self) -> String {
        // SAFETY: ptr is live; error_string is either NULL or a NUL-terminated string owned
        // by the container.
        unsafe {
            let c = self.ptr.as_ptr();
            let s = (*c).error_string;
            if s.is_null() {
                format!("error {}", (*c).error_num)
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        }
    }

    fn check(&self, call: &'static str, ok: bool) -> Result<(), LxcError> {
        if ok {
            Ok(())
        } else {
            Err(err(call, self.last_error()))
        }
    }

    /// Sets one configuration item in memory (`lxc.*` key).
    pub fn set_config_item(&self, key: &str, value: &str) -> Result<(), LxcError> {
        let f = method!(self, set_config_item);
        let k = cstring("set_config_item", key)?;
        let v = cstring("set_config_item", value)?;
        // SAFETY: live container; key and value are valid C strings for the call.
        let ok = unsafe { f(self.ptr.as_ptr(), k.as_ptr(), v.as_ptr()) };
        if ok {
            Ok(())
        } else {
            Err(err(
                "set_config_item",
                format!("{key} = {value} was refused"),
            ))
        }
    }

    /// Removes every value of one configuration item (e.g. all `lxc.idmap` lines).
    pub fn clear_config_item(&self, key: &str) -> Result<(), LxcError> {
        let f = method!(self, clear_config_item);
        let k = cstring("clear_config_item", key)?;
        // SAFETY: live container; key is a valid C string for the call.
        let ok = unsafe { f(self.ptr.as_ptr(), k.as_ptr()) };
        self.check("clear_config_item", ok)
    }

    /// Writes the in-memory configuration to the container's config file.
    pub fn save_config(&self) -> Result<(), LxcError> {
        let f = method!(self, save_config);
        // SAFETY: live container; NULL means "the default config file".
        let ok = unsafe { f(self.ptr.as_ptr(), std::ptr::null()) };
        self.check("save_config", ok)
    }

    /// Starts the container daemonized, running `argv` as its init (no lxc-init in between).
    pub fn start(&self, argv: &[String]) -> Result<(), LxcError> {
        let f = method!(self, start);
        let owned: Vec<CString> = argv
            .iter()
            .map(|a| cstring("start", a))
            .collect::<Result<_, _>>()?;
        let mut ptrs: Vec<*mut libc::c_char> = owned
            .iter()
            .map(|c| c.as_ptr() as *mut libc::c_char)
            .collect();
        ptrs.push(std::ptr::null_mut());
        // SAFETY: argv is a NULL-terminated array of valid C strings that outlive the call;
        // liblxc only reads it.
        let ok = unsafe { f(self.ptr.as_ptr(), 0, ptrs.as_ptr()) };
        self.check("start", ok)
    }

    /// Starts the container with its configured init (`lxc.init.cmd` or `/sbin/init`).
    pub fn start_init(&self) -> Result<(), LxcError> {
        let f = method!(self, start);
        // SAFETY: live container; NULL argv means the configured init.
        let ok = unsafe { f(self.ptr.as_ptr(), 0, std::ptr::null()) };
        self.check("start", ok)
    }

    /// Whether liblxc knows a config for this container on disk.
    pub fn is_defined(&self) -> bool {
        let Ok(f) = (|| Ok::<_, LxcError>(method!(self, is_defined)))() else {
            return false;
        };
        // SAFETY: live container.
        unsafe { f(self.ptr.as_ptr()) }
    }

    /// Whether the container's init is running.
    pub fn is_running(&self) -> bool {
        let Ok(f) = (|| Ok::<_, LxcError>(method!(self, is_running)))() else {
            return false;
        };
        // SAFETY: live container.
        unsafe { f(self.ptr.as_ptr()) }
    }

    /// The host pid of the container's init, if it runs.
    pub fn init_pid(&self) -> Option<i32> {
        let f = (|| Ok::<_, LxcError>(method!(self, init_pid)))().ok()?;
        // SAFETY: live container.
        let pid = unsafe { f(self.ptr.as_ptr()) };
        (pid > 0).then_some(pid)
    }

    /// Kills the container (SIGKILL to its init, so to its whole pid namespace) and waits
    /// until liblxc reports it stopped.
    pub fn stop(&self) -> Result<(), LxcError> {
        let f = method!(self, stop);
        // SAFETY: live container.
        let ok = unsafe { f(self.ptr.as_ptr()) };
        self.check("stop", ok)
    }

    /// Asks init to shut down cleanly (SIGPWR), waiting up to `timeout_s` seconds.
    pub fn shutdown(&self, timeout_s: i32) -> Result<(), LxcError> {
        let f = method!(self, shutdown);
        // SAFETY: live container.
        let ok = unsafe { f(self.ptr.as_ptr(), timeout_s) };
        self.check("shutdown", ok)
    }

    /// Waits until the container reaches `state` (e.g. `STOPPED`), up to `timeout_s`.
    pub fn wait(&self, state: &str, timeout_s: i32) -> bool {
        let Ok(f) = (|| Ok::<_, LxcError>(method!(self, wait)))() else {
            return false;
        };
        let Ok(s) = cstring("wait", state) else {
            return false;
        };
        // SAFETY: live container; s outlives the call.
        unsafe { f(self.ptr.as_ptr(), s.as_ptr(), timeout_s) }
    }

    /// Removes the container's config and rootfs through liblxc (templated containers).
    pub fn destroy(&self) -> Result<(), LxcError> {
        let f = method!(self, destroy);
        // SAFETY: live container.
        let ok = unsafe { f(self.ptr.as_ptr()) };
        self.check("destroy", ok)
    }

    /// Attaches to the container's console (tty 0): liblxc's monitor hands over the master
    /// of a proxy pty, and keeps it allocated for as long as the command socket stays open.
    pub fn console(&self) -> Result<ConsoleFds, LxcError> {
        let f = method!(self, console_getfd);
        let mut ttynum: libc::c_int = 0;
        let mut ptx: libc::c_int = -1;
        // SAFETY: live container; both out-pointers are valid for the call.
        let sock = unsafe { f(self.ptr.as_ptr(), &mut ttynum, &mut ptx) };
        if sock < 0 || ptx < 0 {
            return Err(err("console_getfd", self.last_error()));
        }
        // SAFETY: liblxc handed both descriptors over to us; nobody else owns them.
        let (sock, ptx) = unsafe { (OwnedFd::from_raw_fd(sock), OwnedFd::from_raw_fd(ptx)) };
        Ok(ConsoleFds { sock, ptx })
    }
}

/// A console attachment: the pty master to read and write, and the monitor's command
/// socket that keeps it allocated (closing it releases the console).
pub struct ConsoleFds {
    pub sock: OwnedFd,
    pub ptx: OwnedFd,
}

impl ConsoleFds {
    /// Makes the proxy pty transparent. liblxc's monitor copies the container's console
    /// into the slave side of this pty, whose default line discipline would turn `\n` into
    /// `\r\n` (and interpret control bytes we write): raw mode on both sides passes every
    /// byte value through unchanged.
    pub fn make_raw(&self) -> std::io::Result<()> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        // SAFETY: TIOCGPTPEER takes the master fd and open flags and returns a new
        // descriptor for the slave side, or -1.
        let peer = unsafe {
            libc::ioctl(
                self.ptx.as_raw_fd(),
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        if peer < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
        let peer = unsafe { OwnedFd::from_raw_fd(peer) };
        for fd in [&peer, &self.ptx] {
            let mut t = tcgetattr(fd)?;
            cfmakeraw(&mut t);
            tcsetattr(fd, SetArg::TCSANOW, &t)?;
        }
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SAFETY: ptr came from lxc_container_new and is released exactly once.
        unsafe {
            lxc_sys::lxc_container_put(self.ptr.as_ptr());
        }
    }
}

/// A pidfd for `pid` (Linux 5.3+), registered with tokio: it turns readable when that
/// process exits, whether or not it is our child — which a container's init is not
/// (liblxc's monitor is its parent). Call from within the runtime.
pub fn watch_exit(pid: i32) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    register(owned, Interest::READABLE)
}

/// Sends SIGKILL through a pidfd from [`watch_exit`]: unlike `kill(pid)`, it can never
/// reach another process that reused the pid.
pub fn kill_pidfd(fd: &AsyncFd<OwnedFd>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal takes a pidfd we own (kept open by `fd`), a signal number,
    // a null siginfo (the kernel fills it in) and flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.get_ref().as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Registers an owned descriptor with tokio's reactor (call from within the runtime).
pub fn register(fd: OwnedFd, interest: Interest) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of the descriptor, so it stays open exactly as
    // long as it is registered with the reactor.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into())
}

/// The kernel's process-events connector (`NETLINK_CONNECTOR`, `CN_IDX_PROC`), subscribed:
/// a datagram socket on which the kernel reports every process's exit with its exit code.
/// See `exits.rs` for why the port listens to it. The connector exists only in the
/// initial network namespace; a port started in another one (a test's "host" in a netns)
/// opens it from a short-lived thread that enters the initial namespace first, if it may
/// (the socket stays bound to the namespace it was made in).
pub fn proc_events_socket() -> std::io::Result<OwnedFd> {
    let here = match open_proc_events() {
        Ok(sock) => return Ok(sock),
        Err(e) => e,
    };
    // Outside the initial namespace the subscription is refused (ECONNREFUSED).
    let Ok(init) = std::fs::File::open("/proc/1/ns/net") else {
        return Err(here);
    };
    std::thread::spawn(move || {
        // SAFETY: setns takes a namespace descriptor we hold open and a namespace type; it
        // changes only this thread, which ends right after making the socket.
        if unsafe { libc::setns(init.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        open_proc_events()
    })
    .join()
    .map_err(|_| std::io::Error::other("the thread opening the process events socket panicked"))?
    .map_err(|_| here)
}

/// `NETLINK_CONNECTOR` in `<linux/netlink.h>` (not in the libc crate).
const NETLINK_CONNECTOR: libc::c_int = 11;
/// `CN_IDX_PROC` and `CN_VAL_PROC` in `<linux/connector.h>`.
pub const CN_IDX_PROC: u32 = 1;
pub const CN_VAL_PROC: u32 = 1;
/// `PROC_CN_MCAST_LISTEN` in `<linux/cn_proc.h>`.
const PROC_CN_MCAST_LISTEN: u32 = 1;

fn open_proc_events() -> std::io::Result<OwnedFd> {
    // SAFETY: socket takes a family, a type and a protocol and returns a new descriptor
    // or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            NETLINK_CONNECTOR,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Every exit on the host arrives here, a fork bomb's too: a large buffer keeps a burst
    // from overflowing it (an overflow costs statuses, never correctness).
    let size: libc::c_int = 8 << 20;
    // SAFETY: SO_RCVBUFFORCE reads a c_int from the pointer, valid for the call.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value before the fields set.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = CN_IDX_PROC;
    // SAFETY: addr is a valid sockaddr_nl of the given length for the call.
    let bound = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let request = subscribe_message();
    // SAFETY: the buffer is valid for its length for the call.
    let sent = unsafe {
        libc::send(
            sock.as_raw_fd(),
            request.as_ptr() as *const libc::c_void,
            request.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// `nlmsghdr` + `cn_msg` + `PROC_CN_MCAST_LISTEN`, in host byte order.
fn subscribe_message() -> Vec<u8> {
    let op = PROC_CN_MCAST_LISTEN.to_ne_bytes();
    let mut cn = Vec::with_capacity(24);
    for v in [CN_IDX_PROC, CN_VAL_PROC, 0, 0] {
        cn.extend_from_slice(&v.to_ne_bytes());
    }
    cn.extend_from_slice(&(op.len() as u16).to_ne_bytes());
    cn.extend_from_slice(&0u16.to_ne_bytes());
    cn.extend_from_slice(&op);
    let mut msg = Vec::with_capacity(16 + cn.len());
    msg.extend_from_slice(&((16 + cn.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&cn);
    msg
}

/// Opens `rel` below the directory `dir` without ever leaving it: no symbolic link, magic
/// link or mount point is followed on the way (`openat2` with `RESOLVE_BENEATH`,
/// `RESOLVE_NO_SYMLINKS`, `RESOLVE_NO_XDEV`), and `O_NOFOLLOW`/`O_NONBLOCK` are added to
/// `flags`, so a FIFO put there does not block the open. For paths a container controls.
pub fn open_beneath(
    dir: &std::fs::File,
    rel: &Path,
    flags: nix::fcntl::OFlag,
) -> std::io::Result<std::fs::File> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let fd = nix::fcntl::openat2(dir.as_raw_fd(), rel, how)?;
    // SAFETY: openat2 just returned this descriptor to us; nobody else owns it.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}
