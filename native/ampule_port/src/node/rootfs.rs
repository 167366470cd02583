//! A node container's directory and rootfs skeleton: no image, only the mount points, the
//! host's merged-usr links, a tiny `/etc` and the node's home, owned by the container's
//! mapped root (the home by the node's uid). The host's `/usr` is bind-mounted read-only
//! over it at start (see `config.rs`). Blocks: call it from a blocking thread.
//!
//! # A tmpfs for each rootfs
//!
//! The rootfs is a tmpfs of its own, sized by the container's memory limit and with at
//! most [`ROOTFS_INODES`] inodes. Every container used to share `STATE/apps` (half of RAM,
//! and inodes to match): issue 19 saw one sandbox make 300,000 inodes in 2.2 s, and three
//! leave 1.2 GB there, which every other container's files then lacked (and removing
//! 300,000 inodes by descriptor takes the port 2.4 s of a blocking thread). Pages written
//! were charged to the writer's memory cgroup already, so the size is a second wall; the
//! inode limit is the new bound. Its cost, measured on the 2-core machine of
//! issue 19: a mount 35 µs, an unmount 40 µs (150 µs with a few files in it), against a
//! 105 ms cold start; a full one (65,536 inodes) unmounts in 0.2 s, behind `destroy`'s
//! answer. It goes with `teardown::remove_container_dir`, by the release or the sweep.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::{dir, ready_fifo, rootfs, NodeSpec, Reach, HOME, NODE_UID};
use crate::host::Host;
use crate::instance::OWNER_FILE;

fn chown(p: &Path, (uid, gid): (u32, u32)) -> io::Result<()> {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
}

fn write_file(p: &Path, contents: &[u8], mode: u32, ids: (u32, u32)) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(p)?;
    f.write_all(contents)?;
    chown(p, ids)
}

/// Writes the container's directory: claims the name (the directory must not exist yet),
/// records the owner, builds the rootfs skeleton and the cookie.
pub fn prepare(host: &Host, spec: &NodeSpec) -> io::Result<()> {
    let d = dir(host, &spec.name);
    fs::create_dir(&d)?;
    fs::write(d.join(OWNER_FILE), &host.instance)?;
    let root = rootfs(host, &spec.name);
    let root_ids = (host.uids.start, host.gids.start);
    let node_ids = (root_ids.0 + NODE_UID, root_ids.1 + NODE_UID);
    fs::create_dir(&root)?;
    mount_rootfs(&root, spec.opts.limits.memory)?;
    for sub in ["usr", "proc", "sys", "dev", "tmp", "etc", "home", "run"] {
        fs::create_dir(root.join(sub))?;
    }
    // The host's merged-usr links (bin -> usr/bin, ...), copied as they are.
    for link in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        if let Ok(target) = fs::read_link(Path::new("/").join(link)) {
            std::os::unix::fs::symlink(target, root.join(link))?;
        }
    }
    write_etc(host, spec, &root.join("etc"), root_ids)?;
    let home = root.join(HOME.trim_start_matches('/'));
    fs::create_dir(&home)?;
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
    match &spec.reach {
        Reach::Dist {
            cookie, announce, ..
        } => {
            write_file(
                &home.join(".erlang.cookie"),
                cookie.as_bytes(),
                0o400,
                node_ids,
            )?;
            if *announce {
                make_ready_fifo(&ready_fifo(host, &spec.name), node_ids)?;
                mount_point(&root, "ready", root_ids)?;
            }
        }
        Reach::Agent { .. } => mount_point(&root, "agent.sock", root_ids)?,
    }
    chown(&home, node_ids)?;
    for sub in ["etc", "home", "usr", "proc", "sys", "dev", "tmp", "run"] {
        chown(&root.join(sub), root_ids)?;
    }
    chown(&root, root_ids)?;
    fs::set_permissions(&d, fs::Permissions::from_mode(0o711))?;
    Ok(())
}

/// How many inodes a node's rootfs may hold: its skeleton takes 30, an Erlang node writes
/// a handful; room for an application's scratch files (`/tmp` is another tmpfs, of
/// 256 MiB), and a bound on what one container's files cost the kernel to free.
pub const ROOTFS_INODES: u32 = 65_536;

/// The rootfs's own tmpfs, as the apps tmpfs is mounted (no set-uid, no devices, no
/// executables: those come from the host's `/usr`).
fn mount_rootfs(root: &Path, memory: u64) -> io::Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let options = format!("mode=0755,size={memory},nr_inodes={ROOTFS_INODES}");
    mount(
        Some("ampule"),
        root,
        Some("tmpfs"),
        flags,
        Some(options.as_str()),
    )?;
    Ok(())
}

/// `/etc`: the node's user, and hosts that name the node (and, for a distributed one, the
/// host as `ampule-host`).
fn write_etc(host: &Host, spec: &NodeSpec, etc: &Path, ids: (u32, u32)) -> io::Result<()> {
    let hosts = match &spec.reach {
        Reach::Dist { lease, .. } => format!(
            "127.0.0.1 localhost\n{} {}\n{} ampule-host\n",
            lease.address,
            spec.name,
            host.subnet.host()
        ),
        Reach::Agent { .. } => format!("127.0.0.1 localhost {}\n", spec.name),
    };
    let files: [(&str, String); 5] = [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/bin/sh\nampule:x:{NODE_UID}:{NODE_UID}::{HOME}:/bin/sh\n"
            ),
        ),
        ("group", format!("root:x:0:\nampule:x:{NODE_UID}:\n")),
        ("hosts", hosts),
        ("hostname", format!("{}\n", spec.name)),
        ("nsswitch.conf", "hosts: files\n".to_string()),
    ];
    for (f, text) in files {
        write_file(&etc.join(f), text.as_bytes(), 0o644, ids)?;
    }
    Ok(())
}

/// The mount point of what the port hands the node under `/run/ampule` (the agent's
/// socket, the ready FIFO), the container root's like the rest.
fn mount_point(root: &Path, file: &str, ids: (u32, u32)) -> io::Result<()> {
    let run = root.join("run/ampule");
    fs::create_dir(&run)?;
    fs::write(run.join(file), b"")?;
    chown(&run.join(file), ids)?;
    chown(&run, ids)
}

/// An announcing node's FIFO: the node's uid may only write to it (it never reads what
/// the port reads), and it lives where the container cannot replace it.
fn make_ready_fifo(path: &Path, node_ids: (u32, u32)) -> io::Result<()> {
    use nix::sys::stat::Mode;
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o200))?;
    // mkfifo's mode is masked by the umask: set it exactly.
    fs::set_permissions(path, fs::Permissions::from_mode(0o200))?;
    chown(path, node_ids)
}
