//! The console login of a system container: the user the seed's example logs in as, in the
//! rootfs' passwd, shadow and group files, and for busybox a getty on the console.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The console login the seed's example expects.
pub const DEFAULT_USER: (&str, &str) = ("ubuntu", "ubuntu");

fn write_owned(p: &Path, text: &str, mode: u32, ids: (u32, u32)) -> io::Result<()> {
    fs::write(p, text)?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(p, Some(ids.0), Some(ids.1))
}

/// Adds (or replaces) a login `user` with `password` in the rootfs' passwd, shadow and
/// group files, with a home directory; the files stay owned by the container's root.
pub fn set_login(rootfs: &Path, user: &str, password: &str, ids: (u32, u32)) -> io::Result<()> {
    let params =
        sha_crypt::Sha512Params::new(5000).map_err(|e| io::Error::other(format!("{e:?}")))?;
    let hash = sha_crypt::sha512_simple(password, &params)
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    let etc = rootfs.join("etc");
    let read = |f: &str| fs::read_to_string(etc.join(f)).unwrap_or_default();
    let without = |text: String| -> String {
        text.lines()
            .filter(|l| l.split(':').next() != Some(user))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let (uid, home) = if user == "root" {
        (0, "/root".to_string())
    } else {
        (1000, format!("/home/{user}"))
    };
    let shell = if rootfs.join("bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let passwd = if user == "root" {
        read("passwd")
    } else {
        without(read("passwd")) + &format!("{user}:x:{uid}:{uid}::{home}:{shell}\n")
    };
    let mut shadow = without(read("shadow"));
    shadow.push_str(&format!("{user}:{hash}:19000:0:99999:7:::\n"));
    write_owned(&etc.join("passwd"), &passwd, 0o644, ids)?;
    write_owned(&etc.join("shadow"), &shadow, 0o600, ids)?;
    if user != "root" {
        let group = without(read("group")) + &format!("{user}:x:{uid}:\n");
        write_owned(&etc.join("group"), &group, 0o644, ids)?;
        let h = rootfs.join(home.trim_start_matches('/'));
        fs::create_dir_all(&h)?;
        std::os::unix::fs::chown(&h, Some(ids.0 + uid), Some(ids.1 + uid))?;
    }
    Ok(())
}

/// Busybox's template opens a root shell on the console ("press Enter"); the seed's
/// example logs in, so put a getty there, and give udhcpc a script to apply its lease.
pub fn busybox_console_login(rootfs: &Path, ids: (u32, u32)) -> io::Result<()> {
    let inittab = "::sysinit:/etc/init.d/rcS\n\
                   console::respawn:/bin/getty -L console 115200 vt100\n\
                   ::ctrlaltdel:/bin/reboot\n\
                   ::shutdown:/bin/umount -a -r\n";
    write_owned(&rootfs.join("etc/inittab"), inittab, 0o644, ids)?;
    let rcs = "#!/bin/sh\n/bin/syslogd\n/bin/mount -a\n\
               /bin/udhcpc -b -i eth0 -s /etc/udhcpc.script -q -t 20 >/dev/null 2>&1 &\n";
    write_owned(&rootfs.join("etc/init.d/rcS"), rcs, 0o755, ids)?;
    let script = "#!/bin/sh\n\
                  case \"$1\" in\n\
                  bound|renew)\n\
                  \t/bin/ip addr flush dev \"$interface\"\n\
                  \t/bin/ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n\
                  \t[ -n \"$router\" ] && /bin/ip route add default via ${router%% *} dev \"$interface\"\n\
                  \t;;\n\
                  deconfig) /bin/ip addr flush dev \"$interface\" ;;\n\
                  esac\n\
                  exit 0\n";
    write_owned(&rootfs.join("etc/udhcpc.script"), script, 0o755, ids)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_lines_replace_an_existing_user() {
        let root = std::env::temp_dir().join(format!("ampule-login-{}", std::process::id()));
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nubuntu:x:5:5::/x:/bin/sh\n",
        )
        .unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let ids = (me.0.saturating_sub(1000), me.1.saturating_sub(1000));
        let ids = if me.0 == 0 { (0, 0) } else { ids };
        set_login(&root, "ubuntu", "secret", ids).unwrap();
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert_eq!(
            passwd.lines().filter(|l| l.starts_with("ubuntu:")).count(),
            1
        );
        assert!(passwd.contains("ubuntu:x:1000:1000::/home/ubuntu:/bin/sh"));
        let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
        let hash = shadow.split(':').nth(1).unwrap();
        assert!(hash.starts_with("$6$"));
        assert!(sha_crypt::sha512_check("secret", hash).is_ok());
        fs::remove_dir_all(&root).unwrap();
    }
}
