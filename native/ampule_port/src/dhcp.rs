//! DHCP on Ampule's bridge for system containers, whose distributions run their own DHCP
//! client: one `dnsmasq` bound to the bridge only, DHCP only (no DNS), its pool the top
//! quarter of the subnet, apart from the addresses the port hands out itself.
//!
//! The first port instance that needs it starts it and owns it (its pid file names the
//! instance); others reuse it; the owner stops it on exit, and the start-up sweep stops one
//! whose owner died.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::host::Host;

/// The dnsmasq this instance started, if any.
#[derive(Default)]
pub struct Dhcp {
    owned: Mutex<Option<u32>>,
}

fn pid_file(state_dir: &Path) -> PathBuf {
    state_dir.join("dnsmasq.pid")
}

pub fn leases_file(state_dir: &Path) -> PathBuf {
    state_dir.join("dnsmasq.leases")
}

/// `PID INSTANCE` from the pid file, if that process is a live dnsmasq.
fn running(state_dir: &Path) -> Option<(u32, String)> {
    let text = fs::read_to_string(pid_file(state_dir)).ok()?;
    let mut f = text.split_whitespace();
    let pid: u32 = f.next()?.parse().ok()?;
    let owner = f.next().unwrap_or("").to_string();
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dnsmasq").then_some((pid, owner))
}

impl Dhcp {
    /// Makes sure a dnsmasq serves the bridge.
    pub fn ensure(&self, host: &Host) -> std::io::Result<()> {
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        if running(&host.state_dir).is_some() {
            return Ok(());
        }
        let (first, last) = host.subnet.dhcp_range();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--bind-interfaces",
                "--except-interface=lo",
            ])
            .arg(format!("--interface={}", host.bridge))
            .arg(format!("--listen-address={}", host.subnet.host()))
            .arg(format!("--dhcp-range={first},{last},1h"))
            .arg(format!(
                "--dhcp-leasefile={}",
                leases_file(&host.state_dir).display()
            ))
            .arg("--dhcp-authoritative")
            .arg("--log-facility=-")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        fs::write(
            pid_file(&host.state_dir),
            format!("{} {}\n", child.id(), host.instance),
        )?;
        log::info!("dnsmasq {} serves DHCP on {}", child.id(), host.bridge);
        *owned = Some(child.id());
        // The reaper collects it when it exits; the Child handle is not needed.
        drop(child);
        Ok(())
    }

    /// Stops the dnsmasq this instance started.
    pub fn stop(&self, state_dir: &Path) {
        let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(pid) = owned {
            let pid = Pid::from_raw(pid as i32);
            let _ = kill(pid, Signal::SIGTERM);
            // Our child: collect it now, or it stays a zombie after the port exits (ECHILD
            // means the reaper already did).
            let _ = nix::sys::wait::waitpid(pid, None);
            let _ = fs::remove_file(pid_file(state_dir));
        }
    }
}

/// Start-up sweep: stops a dnsmasq whose owning instance is dead.
pub fn sweep(state_dir: &Path, dead: &dyn Fn(&str) -> bool) -> bool {
    match running(state_dir) {
        Some((pid, owner)) if dead(&owner) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            let _ = fs::remove_file(pid_file(state_dir));
            true
        }
        Some(_) => false,
        None => {
            let _ = fs::remove_file(pid_file(state_dir));
            false
        }
    }
}
