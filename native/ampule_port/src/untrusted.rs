//! Reading what a container controls. Everything under a container's rootfs (its home and
//! the node's `boot.log` in it above all) is the container's to change at any moment: a
//! link to a host file, a FIFO that never answers, a link to `/dev/zero`. The root port
//! reads such a file only through [`read_tail`]: opened beneath the container's directory
//! with no link followed, without blocking, only if it is a regular file, and never more
//! than the bound asked for. Files the kernel makes but a container can make large
//! (`/proc/PID/net/fib_trie`) are read through [`read_bounded`].

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// The last `max` bytes of the regular file `rel` below the directory `dir` (a directory
/// of the port's own, such as a container's `STATE/apps/NAME`). An error if the path
/// crosses a link or a mount point, or is not a regular file.
pub fn read_tail(dir: &Path, rel: &Path, max: usize) -> io::Result<Vec<u8>> {
    let base = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    let file = crate::lxc::open_beneath(&base, rel, OFlag::O_RDONLY)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            rel.display()
        )));
    }
    let start = meta.len().saturating_sub(max as u64);
    let mut out = vec![0u8; max.min(meta.len() as usize)];
    let mut got = 0;
    while got < out.len() {
        match file.read_at(&mut out[got..], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    out.truncate(got);
    Ok(out)
}

/// At most `max` bytes of `path` from its start.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ampule-untrusted-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("home")).unwrap();
        d
    }

    #[test]
    fn the_tail_of_a_regular_file_and_no_more() {
        let d = scratch("tail");
        fs::write(d.join("home/log"), b"0123456789").unwrap();
        assert_eq!(read_tail(&d, Path::new("home/log"), 4).unwrap(), b"6789");
        assert_eq!(
            read_tail(&d, Path::new("home/log"), 100).unwrap(),
            b"0123456789"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn links_fifos_and_devices_are_refused_at_once() {
        let d = scratch("hostile");
        let secret = d.join("secret");
        fs::write(&secret, b"host only").unwrap();
        symlink(&secret, d.join("home/to_host_file")).unwrap();
        symlink("/dev/zero", d.join("home/to_zero")).unwrap();
        symlink("/", d.join("home/to_root")).unwrap();
        symlink("../secret", d.join("home/relative")).unwrap();
        nix::unistd::mkfifo(&d.join("home/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        for rel in [
            "home/to_host_file",
            "home/to_zero",
            "home/to_root/etc/passwd",
            "home/relative",
            "home/fifo",
            "../secret",
            "/etc/passwd",
        ] {
            let began = std::time::Instant::now();
            assert!(read_tail(&d, Path::new(rel), 1 << 20).is_err(), "{rel}");
            assert!(began.elapsed() < std::time::Duration::from_secs(1), "{rel}");
        }
        // A directory replaced by a link is not crossed either.
        fs::rename(d.join("home"), d.join("home.real")).unwrap();
        symlink(d.join("home.real"), d.join("home")).unwrap();
        fs::write(d.join("home.real/log"), b"x").unwrap();
        assert!(read_tail(&d, Path::new("home/log"), 10).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bounded_reads_stop_at_the_bound() {
        assert_eq!(
            read_bounded(Path::new("/dev/zero"), 4096).unwrap().len(),
            4096
        );
    }
}
