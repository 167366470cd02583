//! Ampule's seccomp policy for application containers: which system calls a node may make,
//! and why. liblxc loads it (`lxc.seccomp.profile`, LXC's version-2 format); the port
//! writes it once at start under its state directory (see `host::prepare`).
//!
//! It is an allow-list, built from Docker's default profile (moby
//! `profiles/seccomp/default.json`): the calls Docker grants a container without extra
//! capabilities ([`ALLOWED`]), less the ones Ampule refuses with a reason ([`REFUSED`]),
//! with Docker's argument rules where LXC's format can say them (`clone` and `unshare`
//! without namespace flags, `socket` without `AF_VSOCK`, `personality` with Docker's five
//! values). A deny-list lets through every call a newer kernel adds: on 6.18,
//! `open_tree_attr`, `file_getattr`/`file_setattr` and the `lsm_*` calls reached the
//! kernel from any node. Here a call the list does not name fails with `ENOSYS`, the
//! kernel's own "no such call", so libc falls back to an older call where it has one
//! (Docker's file answers `EPERM` by default; runc answers `ENOSYS` for calls newer than
//! the profile, which is the case that matters). A call refused by name keeps the errno it
//! had: `EPERM` for what a process without the privilege would be refused anyway,
//! `ENOSYS` where a program should behave as on a kernel without the feature.
//!
//! Refused by name, besides Docker's refusals: the kernel interfaces that nothing in a
//! node uses and that have been the way out of containers (new user namespaces, which
//! hand a process every capability in a namespace of its own; keyrings, which are not
//! namespaced; io_uring and the rest, whose kernel code was behind many privilege
//! escalations), and the calls whose per-user counts are charged up the user-namespace
//! chain to root, the owner of every container's namespace (inotify, fanotify, POSIX
//! message queues): one container could use up the host root's share. `docs/security.md`
//! has the same lists with the same reasons; the hostile test groups make the calls from
//! inside containers.
//!
//! LXC's own `common.seccomp` entries are all kept. liblxc 5.0.2 on x86_64 builds the
//! filter for three ABIs (x86_64, 32-bit x86 through `int 0x80`, x32) with the same
//! default action and adds every rule to each ABI that has the call, whatever `[x86_64]`
//! or `[all]` section it is under: the 32-bit ABI gets the same allow-list, and its
//! calls the list does not name (`socketcall`, which hides `socket`'s family from a
//! filter, among them) get `ENOSYS`.

/// LXC's own profile (Debian's path), for `seccomp: lxc`.
pub const LXC_PROFILE: &str = "/usr/share/lxc/config/common.seccomp";

/// `EPERM`: what a process without the privilege would get from the kernel anyway.
const EPERM: u32 = 1;
/// `ENOSYS`: "this kernel has no such call", which makes libc fall back to an older one;
/// the answer to every call the list does not name.
pub const ENOSYS: u32 = 38;

/// The calls a node may make: Docker's unconditional list (moby's default profile, the
/// calls granted without extra capabilities, `ptrace` and `process_vm_*` with them, and
/// `arch_prctl`/`modify_ldt` for x86), less every name of [`REFUSED`] and the calls
/// allowed by argument only (`clone`, `unshare`, `socket`, `personality`, below). Names
/// that only another architecture has are left out; names libseccomp does not know are
/// skipped by liblxc.
pub const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "modify_ldt",
    "mprotect",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "pselect6_time64",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// System calls refused by name, by reason, with the errno they answer. Every one of
/// them is also off [`ALLOWED`]; naming them keeps the errno a program sees the one it
/// had (and documents why). The `ENOSYS` ones are the filter's default, so the profile
/// names them only in a comment.
pub const REFUSED: &[(&str, u32, &[&str])] = &[
    (
        // LXC's own list (common.seccomp), kept whole.
        "loading kernel code or a new kernel, and opening files by handle (LXC's own list)",
        EPERM,
        &[
            "kexec_load",
            "open_by_handle_at",
            "init_module",
            "finit_module",
            "delete_module",
        ],
    ),
    (
        "the rest of the kernel-code and file-handle calls LXC leaves out",
        EPERM,
        &["kexec_file_load", "name_to_handle_at"],
    ),
    (
        "kernel keyrings are not namespaced: keys and quotas are shared with the host's users",
        EPERM,
        &["add_key", "keyctl", "request_key"],
    ),
    (
        "io_uring, bpf, perf_event_open and userfaultfd: large kernel surfaces behind many \
         privilege escalations, which a node never uses",
        EPERM,
        &[
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "bpf",
            "perf_event_open",
            "userfaultfd",
        ],
    ),
    (
        "joining other namespaces (creating them is refused by flag, below), and changing \
         the root directory",
        EPERM,
        &["setns", "chroot"],
    ),
    (
        "mounting, should a process ever hold a mount namespace of its own",
        EPERM,
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
        ],
    ),
    (
        "host-wide state: the clock, swap, accounting, the kernel log, quotas, reboot",
        EPERM,
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "clock_adjtime",
            "clock_adjtime64",
            "swapon",
            "swapoff",
            "acct",
            "syslog",
            "quotactl",
            "quotactl_fd",
            "reboot",
            "vhangup",
        ],
    ),
    (
        "NUMA placement is the host's business, and move_pages/migrate_pages act on other \
         processes' memory",
        EPERM,
        &[
            "mbind",
            "get_mempolicy",
            "set_mempolicy",
            "set_mempolicy_home_node",
            "migrate_pages",
            "move_pages",
        ],
    ),
    (
        "reaching into another process: comparing its kernel objects (leaks kernel address \
         order), taking its file descriptors, advising on its memory",
        EPERM,
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    (
        "I/O ports and obsolete or privileged calls no program in a node makes",
        EPERM,
        &[
            "iopl",
            "ioperm",
            "vm86",
            "vm86old",
            "create_module",
            "get_kernel_syms",
            "query_module",
            "nfsservctl",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "lookup_dcookie",
        ],
    ),
    (
        "fanotify groups are counted per user up the user-namespace chain, to root, the \
         owner of every container's namespace: one container could use up the host's",
        EPERM,
        &["fanotify_init", "fanotify_mark"],
    ),
    (
        "inotify instances and watches, and POSIX message queue bytes, are counted per user \
         up the user-namespace chain to root: one container could use up the host root's \
         share (128 inotify instances on Debian); ENOSYS, as from a kernel without them, so \
         programs such as tail fall back to polling",
        ENOSYS,
        &[
            "inotify_init",
            "inotify_init1",
            "inotify_add_watch",
            "inotify_rm_watch",
            "mq_open",
            "mq_unlink",
            "mq_timedsend",
            "mq_timedsend_time64",
            "mq_timedreceive",
            "mq_timedreceive_time64",
            "mq_notify",
            "mq_getsetattr",
        ],
    ),
    (
        "clone3 passes its flags by pointer, out of a filter's reach: ENOSYS makes libc fall \
         back to clone, whose flags are filtered",
        ENOSYS,
        &["clone3"],
    ),
    (
        "the 32-bit x86 socket multiplexer, which hides the address family from the filter",
        EPERM,
        &["socketcall"],
    ),
];

/// Namespace flags of `clone` and `unshare`: refused, each by a masked-equality rule;
/// either call is allowed only with none of them. Only a new user namespace is open to an
/// unprivileged process (the others need CAP_SYS_ADMIN, which a node lacks), but nothing
/// in a node needs any, and a raw `config` that makes init root would open them all.
pub const NAMESPACE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_NEWNS", 0x0002_0000),
    ("CLONE_NEWCGROUP", 0x0200_0000),
    ("CLONE_NEWUTS", 0x0400_0000),
    ("CLONE_NEWIPC", 0x0800_0000),
    ("CLONE_NEWUSER", 0x1000_0000),
    ("CLONE_NEWPID", 0x2000_0000),
    ("CLONE_NEWNET", 0x4000_0000),
];

/// `unshare` only: in `clone`'s flags this bit is part of the exit signal.
const CLONE_NEWTIME: u64 = 0x80;

/// The argument that holds `clone`'s flags: the first, but the second on s390.
const CLONE_FLAGS_ARG: u32 = if cfg!(target_arch = "s390x") { 1 } else { 0 };

/// Address families `socket` refuses. `AF_VSOCK` reaches the hypervisor of a virtual
/// machine (a Firecracker or QEMU host listens there), around the container's network
/// namespace and Ampule's firewall. On the 32-bit x86 ABI liblxc adds no `socket` rule
/// (libseccomp names that call there only through `socketcall`), so under the allow-list
/// its direct `socket` fails with `ENOSYS` for every family and `socketcall` with
/// `EPERM` (checked with `int 0x80` from a 64-bit binary: without the policy it opened an
/// `AF_VSOCK` socket); under the former deny-list it could open one.
pub const SOCKET_FAMILIES: &[(&str, u64)] = &[("AF_VSOCK", 40)];

/// The `personality` values Docker allows: `PER_LINUX`, `UNAME26`, `PER_LINUX32`,
/// `PER_LINUX32 | UNAME26`, and `0xffffffff` (a query). Others (`ADDR_NO_RANDOMIZE`,
/// `READ_IMPLIES_EXEC`) turn off protections; they get `ENOSYS`.
pub const PERSONALITIES: &[u64] = &[0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Every namespace flag: `clone` is allowed only when its flags have none of them.
fn namespace_mask() -> u64 {
    NAMESPACE_FLAGS.iter().fold(0, |m, &(_, f)| m | f)
}

/// The profile, in LXC's seccomp format version 2.
pub fn profile() -> String {
    let mut p = format!(
        "2\n\
         allowlist errno {ENOSYS}\n\
         # Ampule's seccomp policy for application containers (docs/security.md): an\n\
         # allow-list; a call not named here fails with ENOSYS.\n\
         # LXC's own: umount2 with MNT_FORCE.\n\
         reject_force_umount\n\
         [all]\n\
         # Docker's default list, less Ampule's refusals\n"
    );
    for call in ALLOWED {
        p.push_str(call);
        p.push('\n');
    }
    for (reason, errno, calls) in REFUSED {
        p.push_str(&format!("# {reason}\n"));
        // libseccomp refuses a rule whose action is the filter's default (liblxc then
        // fails the start): the ENOSYS ones are left unnamed, and named in a comment.
        if *errno == ENOSYS {
            p.push_str(&format!("# (ENOSYS, the default): {}\n", calls.join(" ")));
            continue;
        }
        for call in *calls {
            p.push_str(&format!("{call} errno {errno}\n"));
        }
    }
    p.push_str("# clone and unshare without namespace flags; each namespace flag refused\n");
    let mask = namespace_mask();
    p.push_str(&format!(
        "clone allow [{CLONE_FLAGS_ARG},0,SCMP_CMP_MASKED_EQ,{mask}]\n"
    ));
    let unshare_mask = mask | CLONE_NEWTIME;
    p.push_str(&format!(
        "unshare allow [0,0,SCMP_CMP_MASKED_EQ,{unshare_mask}]\n"
    ));
    let flags = NAMESPACE_FLAGS
        .iter()
        .map(|&(_, f)| ("clone", CLONE_FLAGS_ARG, f));
    let unshare = NAMESPACE_FLAGS
        .iter()
        .map(|&(_, f)| f)
        .chain([CLONE_NEWTIME])
        .map(|f| ("unshare", 0, f));
    for (call, arg, flag) in flags.chain(unshare) {
        p.push_str(&format!(
            "{call} errno {EPERM} [{arg},{flag},SCMP_CMP_MASKED_EQ,{flag}]\n"
        ));
    }
    p.push_str("# socket address families\n");
    for (_, family) in SOCKET_FAMILIES {
        p.push_str(&format!("socket errno {EPERM} [0,{family},SCMP_CMP_EQ]\n"));
    }
    // One family refused (more would need one allow rule per family in between).
    if let [(_, family)] = SOCKET_FAMILIES {
        p.push_str(&format!("socket allow [0,{family},SCMP_CMP_NE]\n"));
    }
    p.push_str("# personality: Docker's values only\n");
    for value in PERSONALITIES {
        p.push_str(&format!("personality allow [0,{value},SCMP_CMP_EQ]\n"));
    }
    p
}

/// The profile file's name: by content, so that port instances of different versions
/// sharing a state directory never rewrite each other's.
pub fn file_name(profile: &str) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = profile.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("ampule-{hash:016x}.seccomp")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(p: &str) -> Vec<&str> {
        p.lines()
            .skip(2)
            .filter(|l| !l.starts_with('#') && !l.starts_with('['))
            .collect()
    }

    /// The calls the profile names with an action other than allow.
    fn refused(p: &str) -> Vec<(&str, Option<&str>)> {
        rules(p)
            .into_iter()
            .filter_map(|r| {
                let mut w = r.split(' ');
                let call = w.next()?;
                match w.next() {
                    Some("errno") => Some((call, w.next())),
                    None if call == "reject_force_umount" => Some((call, None)),
                    _ => None,
                }
            })
            .collect()
    }

    #[test]
    fn the_profile_is_a_version_2_allowlist_with_a_rule_a_line() {
        let p = profile();
        assert!(p.starts_with("2\nallowlist errno 38\n"));
        for rule in rules(&p) {
            let mut words = rule.split(' ');
            let call = words.next().unwrap();
            assert!(
                call.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{rule}"
            );
            match words.next() {
                // A bare name is allowed (the allow-list's rule action).
                None => {}
                Some("errno") => assert!(words.next().unwrap().parse::<u32>().is_ok(), "{rule}"),
                // liblxc reads what follows a name as its action: an argument rule must
                // say `allow` first.
                Some("allow") => assert!(words.next().unwrap().starts_with('['), "{rule}"),
                Some(other) => panic!("{rule}: {other}"),
            }
        }
    }

    #[test]
    fn every_entry_of_lxcs_own_profile_is_still_refused() {
        // The list as LXC 5.0.2 ships it; and the installed file's, where there is one.
        let mut lxc = vec![
            "reject_force_umount",
            "kexec_load",
            "open_by_handle_at",
            "init_module",
            "finit_module",
            "delete_module",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        if let Ok(text) = std::fs::read_to_string(LXC_PROFILE) {
            lxc.extend(
                text.lines()
                    .skip(2)
                    .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
                    .filter_map(|l| l.split_whitespace().next().map(String::from)),
            );
        }
        let p = profile();
        let refused: Vec<&str> = refused(&p).into_iter().map(|(c, _)| c).collect();
        for call in lxc {
            assert!(refused.contains(&call.as_str()), "{call} is not refused");
            assert!(!ALLOWED.contains(&call.as_str()), "{call} is allowed");
        }
    }

    #[test]
    fn no_call_is_both_allowed_and_refused_and_each_is_named_once() {
        let mut seen = std::collections::HashSet::new();
        let refused = REFUSED.iter().flat_map(|(_, _, calls)| calls.iter());
        for call in ALLOWED.iter().chain(refused) {
            assert!(seen.insert(*call), "{call} is named twice");
        }
        // The calls allowed by argument only are not allowed whole.
        for call in ["clone", "clone3", "unshare", "socket", "personality"] {
            assert!(!ALLOWED.contains(&call), "{call}");
        }
    }

    #[test]
    fn a_call_not_on_the_allow_list_gets_enosys() {
        let p = profile();
        // The default action of the whole filter: liblxc reads it from the second line.
        assert_eq!(p.lines().nth(1), Some("allowlist errno 38"));
        // Calls newer than the list (Linux 6.8 to 6.17), and calls Docker grants only with
        // a capability a node lacks, are not named at all, so they get that default.
        for call in [
            "lsm_list_modules",
            "lsm_get_self_attr",
            "lsm_set_self_attr",
            "open_tree_attr",
            "file_getattr",
            "file_setattr",
            "sethostname",
            "setdomainname",
        ] {
            assert!(
                !rules(&p).iter().any(|r| r.split(' ').next() == Some(call)),
                "{call} is named"
            );
        }
    }

    #[test]
    fn new_user_namespaces_and_clone3_are_refused_and_vsock_sockets_too() {
        let p = profile();
        assert!(p.contains("\nunshare errno 1 [0,268435456,SCMP_CMP_MASKED_EQ,268435456]\n"));
        assert!(p.contains("\nclone errno 1 [0,268435456,SCMP_CMP_MASKED_EQ,268435456]\n"));
        assert!(p.contains("\nunshare errno 1 [0,128,SCMP_CMP_MASKED_EQ,128]\n"));
        assert!(!p.contains("\nclone errno 1 [0,128,"));
        // Docker's own clone rule: allowed when no namespace flag is set.
        assert_eq!(namespace_mask(), 2_114_060_288);
        assert!(p.contains("\nclone allow [0,0,SCMP_CMP_MASKED_EQ,2114060288]\n"));
        assert!(p.contains("\nunshare allow [0,0,SCMP_CMP_MASKED_EQ,2114060416]\n"));
        // ENOSYS, the default: left unnamed (libseccomp refuses a rule with the default
        // action), and so refused.
        for call in ["clone3", "inotify_init1", "mq_open"] {
            assert!(!rules(&p).iter().any(|r| r.split(' ').next() == Some(call)));
            assert!(!ALLOWED.contains(&call));
        }
        assert!(p.contains("\nsocket errno 1 [0,40,SCMP_CMP_EQ]\n"));
        assert!(p.contains("\nsocket allow [0,40,SCMP_CMP_NE]\n"));
        assert!(p.contains("\npersonality allow [0,4294967295,SCMP_CMP_EQ]\n"));
        for call in [
            "io_uring_setup",
            "add_key",
            "keyctl",
            "bpf",
            "perf_event_open",
            "chroot",
            "pidfd_getfd",
            "fanotify_init",
        ] {
            assert!(p.contains(&format!("\n{call} errno 1\n")), "{call}");
        }
    }

    #[test]
    fn the_file_name_follows_the_content() {
        assert_eq!(file_name("a"), file_name("a"));
        assert_ne!(file_name("a"), file_name("b"));
        assert!(file_name(&profile()).starts_with("ampule-"));
    }
}
