//! Ampule's seccomp policy for application containers: which system calls a node may not
//! make, and why. liblxc loads it (`lxc.seccomp.profile`, LXC's version-2 format); the port
//! writes it once at start under its state directory (see `host::prepare`).
//!
//! The model is Docker's default profile, written as a denylist because LXC's format is
//! one: a node keeps every system call the BEAM, `os:cmd` and the host's `/usr/bin` need,
//! and loses the kernel interfaces that nothing in a node uses and that have been the way
//! out of containers (new user namespaces, which hand a process every capability in a
//! namespace of its own; keyrings, which are not namespaced; io_uring, bpf,
//! perf_event_open and userfaultfd, whose kernel code was behind many privilege
//! escalations). `docs/security.md` has the same list with the same reasons; the hostile
//! test group makes the calls from inside a container.
//!
//! LXC's own `common.seccomp` entries are all kept. LXC applies an `[all]` rule to the
//! 32-bit x86 ABI too (a 64-bit process can make 32-bit calls through `int 0x80`), except
//! for calls that libseccomp multiplexes there (`socket` and its family, through
//! `socketcall`): those cannot be filtered by argument on that ABI (see [`SOCKET_FAMILIES`]).

/// LXC's own profile (Debian's path), for `seccomp: lxc`.
pub const LXC_PROFILE: &str = "/usr/share/lxc/config/common.seccomp";

/// `EPERM`: what Docker answers for a refused call, and what a process without the
/// privilege would get from the kernel anyway.
const EPERM: u32 = 1;
/// `ENOSYS`: "this kernel has no such call", which makes libc fall back to an older one.
const ENOSYS: u32 = 38;

/// System calls refused outright, by reason.
pub const REFUSED: &[(&str, &[&str])] = &[
    (
        // LXC's own list (common.seccomp), kept whole.
        "loading kernel code or a new kernel, and opening files by handle (LXC's own list)",
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
        &["kexec_file_load", "name_to_handle_at"],
    ),
    (
        "kernel keyrings are not namespaced: keys and quotas are shared with the host's users",
        &["add_key", "keyctl", "request_key"],
    ),
    (
        "io_uring, bpf, perf_event_open and userfaultfd: large kernel surfaces behind many \
         privilege escalations, which a node never uses",
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
        "joining other namespaces (creating them is refused by flag, below)",
        &["setns"],
    ),
    (
        "mounting, should a process ever hold a mount namespace of its own",
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
        &[
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
            "migrate_pages",
            "move_pages",
        ],
    ),
    (
        "comparing kernel objects between processes (leaks kernel address order)",
        &["kcmp"],
    ),
    (
        "I/O ports and obsolete or privileged calls no program in a node makes",
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
        "the 32-bit x86 socket multiplexer, which hides the address family from the filter",
        &["socketcall"],
    ),
];

/// Namespace flags of `clone` and `unshare`: refused, each by a masked-equality rule.
/// Only a new user namespace is open to an unprivileged process (the others need
/// CAP_SYS_ADMIN, which a node lacks), but nothing in a node needs any, and a raw `config`
/// that makes init root would open them all.
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
/// namespace and Ampule's firewall. A 32-bit x86 program's direct `socket` call cannot be
/// filtered by family in LXC's format (libseccomp names it only through `socketcall`,
/// which is refused whole above).
pub const SOCKET_FAMILIES: &[(&str, u64)] = &[("AF_VSOCK", 40)];

/// The profile, in LXC's seccomp format version 2.
pub fn profile() -> String {
    let mut p = String::from(
        "2\n\
         denylist\n\
         # Ampule's seccomp policy for application containers (docs/security.md).\n\
         # LXC's own: umount2 with MNT_FORCE.\n\
         reject_force_umount\n\
         [all]\n",
    );
    for (reason, calls) in REFUSED {
        p.push_str(&format!("# {reason}\n"));
        for call in *calls {
            p.push_str(&format!("{call} errno {EPERM}\n"));
        }
    }
    p.push_str(
        "# clone3 passes its flags by pointer, out of a filter's reach: ENOSYS makes libc \
         fall back to clone, whose flags are filtered\n",
    );
    p.push_str(&format!("clone3 errno {ENOSYS}\n"));
    p.push_str("# new namespaces\n");
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

    #[test]
    fn the_profile_is_a_version_2_denylist_with_a_rule_a_line() {
        let p = profile();
        assert!(p.starts_with("2\ndenylist\n"));
        for rule in rules(&p) {
            let mut words = rule.split(' ');
            let call = words.next().unwrap();
            assert!(
                call.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{rule}"
            );
            if call != "reject_force_umount" {
                assert_eq!(words.next(), Some("errno"), "{rule}");
                assert!(words.next().unwrap().parse::<u32>().is_ok(), "{rule}");
            }
        }
    }

    #[test]
    fn every_entry_of_lxcs_own_profile_is_kept() {
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
        let ours: Vec<&str> = rules(&p)
            .into_iter()
            .filter_map(|r| r.split(' ').next())
            .collect();
        for call in lxc {
            assert!(ours.contains(&call.as_str()), "{call} is missing");
        }
    }

    #[test]
    fn new_user_namespaces_and_clone3_are_refused_and_vsock_sockets_too() {
        let p = profile();
        assert!(p.contains("\nunshare errno 1 [0,268435456,SCMP_CMP_MASKED_EQ,268435456]\n"));
        assert!(p.contains("\nclone errno 1 [0,268435456,SCMP_CMP_MASKED_EQ,268435456]\n"));
        assert!(p.contains("\nunshare errno 1 [0,128,SCMP_CMP_MASKED_EQ,128]\n"));
        assert!(!p.contains("\nclone errno 1 [0,128,"));
        assert!(p.contains("\nclone3 errno 38\n"));
        assert!(p.contains("\nsocket errno 1 [0,40,SCMP_CMP_EQ]\n"));
        for call in [
            "io_uring_setup",
            "add_key",
            "keyctl",
            "bpf",
            "perf_event_open",
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
