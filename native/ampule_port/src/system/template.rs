//! Building a system container from an LXC template: `lxc-create` in a process of its own,
//! the rootfs shifted into the container's id range where the template built it as root,
//! the console login set. Everything here blocks: call it from a blocking thread.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::login::{busybox_console_login, set_login, DEFAULT_USER};
use crate::config::{base_config, seccomp_items};
use crate::error::Failure;
use crate::host::Host;
use crate::instance::{OWNER_FILE, PERSISTENT};
use crate::lxc::Container;
use crate::names;
use crate::network::SYSTEM_VETH_PREFIX;
use crate::protocol::CreateOpts;
use crate::seccomp::LXC_PROFILE;

/// Templates that download images from the internet: refused at once, never tried.
const NEEDS_INTERNET: [&str; 4] = ["download", "ubuntu", "ubuntu-cloud", "oci"];

/// Refuses a template that cannot work here, before anything is made.
pub fn check(template: &str) -> Result<(), Failure> {
    if NEEDS_INTERNET.contains(&template) {
        return Err(Failure::TemplateUnavailable(template.to_string()));
    }
    if !Path::new("/usr/share/lxc/templates")
        .join(format!("lxc-{template}"))
        .exists()
    {
        return Err(Failure::UnknownTemplate(template.to_string()));
    }
    Ok(())
}

fn system_config(host: &Host, name: &str, opts: &CreateOpts) -> Vec<(String, String)> {
    let veth = format!(
        "{SYSTEM_VETH_PREFIX}{}",
        names::random(names::HEX_ALPHABET, 6)
    );
    let dir = host.lxcpath.join(name);
    let mut c = base_config(host, name, &dir, Some(&veth), &opts.limits);
    if opts.privileged {
        c.retain(|(k, _)| k != "lxc.idmap");
    }
    // A distribution's DHCP client needs raw sockets, which application nodes never do.
    for (k, v) in c.iter_mut() {
        if k == "lxc.cap.drop" {
            *v = v.replace(" net_raw", "");
        }
    }
    // LXC's own denylist, which the debian template's common.conf loads and busybox's
    // config does not: every system container gets it (a distribution's init and services
    // use namespaces and keyrings, which Ampule's policy for nodes refuses).
    c.extend(seccomp_items(LXC_PROFILE));
    c.extend(opts.config.iter().cloned());
    c
}

fn template_args(opts: &CreateOpts) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(r) = &opts.release {
        args.extend(["--release".to_string(), r.clone()]);
    }
    args.extend(opts.template_args.iter().cloned());
    args
}

/// Runs the template and prepares the rootfs (blocking).
pub fn build(host: &Host, name: &str, opts: &CreateOpts) -> io::Result<()> {
    // Claimed before the template runs, so that no other instance's start-up sweep takes
    // the half-made directory for a crashed one's.
    let dir = host.lxcpath.join(name);
    fs::create_dir(&dir)?;
    fs::write(dir.join(OWNER_FILE), &host.instance)?;
    // Busybox's template shifts ownership itself; the distribution templates refuse a user
    // namespace (debootstrap needs real root), so they build as root and the rootfs is then
    // shifted into the container's id range, and the container still runs unprivileged.
    let shift_after = !opts.privileged && opts.template != "busybox";
    let config: Vec<(String, String)> = system_config(host, name, opts)
        .into_iter()
        .filter(|(k, _)| !(shift_after && k == "lxc.idmap"))
        .collect();
    run_template(host, name, opts, &config)?;
    if shift_after {
        shift_into_userns(host, name, opts)?;
    }
    if opts.persistent {
        fs::write(
            dir.join(OWNER_FILE),
            format!("{PERSISTENT} {}", host.instance),
        )?;
    }
    let rootfs = dir.join("rootfs");
    let (user, password) = opts
        .user
        .clone()
        .unwrap_or((DEFAULT_USER.0.into(), DEFAULT_USER.1.into()));
    let ids = if opts.privileged {
        (0, 0)
    } else {
        (host.uids.start, host.gids.start)
    };
    set_login(&rootfs, &user, &password, ids)?;
    if opts.template == "busybox" {
        busybox_console_login(&rootfs, ids)?;
    }
    Ok(())
}

/// Shifts a rootfs a distribution template built as root into the container's id range,
/// and gives the container the template's user-namespace configuration.
fn shift_into_userns(host: &Host, name: &str, opts: &CreateOpts) -> io::Result<()> {
    let dir = host.lxcpath.join(name);
    shift_ids(&dir.join("rootfs"), (host.uids.start, host.gids.start))?;
    let c = Container::open(name, &host.lxcpath).map_err(io::Error::other)?;
    let userns = format!("/usr/share/lxc/config/{}.userns.conf", opts.template);
    let include = if Path::new(&userns).exists() {
        userns
    } else {
        "/usr/share/lxc/config/userns.conf".to_string()
    };
    c.set_config_item("lxc.include", &include)
        .map_err(io::Error::other)?;
    // The userns include resets capabilities; ours come after it, with the id map.
    for (k, v) in system_config(host, name, opts)
        .into_iter()
        .filter(|(k, _)| k == "lxc.idmap" || k == "lxc.cap.drop")
    {
        c.set_config_item(&k, &v).map_err(io::Error::other)?;
    }
    c.save_config().map_err(io::Error::other)
}

/// Runs the template through `lxc-create`, in its own process: liblxc's `create()` inside
/// the port fails ("error 0") and disturbs containers starting in other threads while it
/// runs, as liblxc keeps process-wide state across its forks.
fn run_template(
    host: &Host,
    name: &str,
    opts: &CreateOpts,
    config: &[(String, String)],
) -> io::Result<()> {
    use std::io::Read;
    let dir = host.lxcpath.join(name);
    let file = dir.join("create.conf");
    let text: String = config.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    fs::write(&file, text)?;
    let mut child = std::process::Command::new("lxc-create")
        .arg("-P")
        .arg(&host.lxcpath)
        .args(["-n", name, "-t", &opts.template, "-f"])
        .arg(&file)
        .arg("--")
        .args(template_args(opts))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    // The port's reaper may collect the child first (ECHILD): then the result is judged
    // by what the template left.
    let status = child.wait().ok();
    let _ = fs::remove_file(&file);
    let made = dir.join("config").exists() && dir.join("rootfs").is_dir();
    if status.is_some_and(|s| s.success()) || (status.is_none() && made) {
        Ok(())
    } else {
        let tail: String = stderr.lines().rev().take(6).collect::<Vec<_>>().join(" | ");
        Err(io::Error::other(format!("lxc-create: {tail}")))
    }
}

/// Moves every uid and gid under `root` up by `by`, so that a rootfs a template built as
/// host root is owned by the container's mapped root instead. `chown` clears setuid and
/// setgid bits, so each mode is put back; ids already in the range are left alone.
pub fn shift_ids(root: &Path, by: (u32, u32)) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::symlink_metadata(root)?.dev();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p)?;
        if m.dev() != dev {
            continue;
        }
        if m.uid() < by.0 || m.gid() < by.1 {
            let uid = if m.uid() < by.0 {
                m.uid() + by.0
            } else {
                m.uid()
            };
            let gid = if m.gid() < by.1 {
                m.gid() + by.1
            } else {
                m.gid()
            };
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid))?;
            if !m.file_type().is_symlink() {
                fs::set_permissions(&p, fs::Permissions::from_mode(m.mode() & 0o7777))?;
            }
        }
        if m.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

/// The directory a template caches its downloads in, for the docs and `ampule.check`.
pub fn cache_dir(template: &str) -> PathBuf {
    Path::new("/var/cache/lxc").join(template)
}
