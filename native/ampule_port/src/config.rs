//! The `lxc.*` items every container Ampule makes shares, whatever its kind: its log, its id
//! map, capabilities no container needs, its network (a veth on the bridge, or none but
//! loopback), cgroup limits and a seccomp profile. Each kind adds its own after these.

use std::path::Path;

use crate::cgroup::Cgroups;
use crate::host::Host;
use crate::protocol::Limits;

/// The CFS period of a CPU quota: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

fn limit_items(cg: Cgroups, l: &Limits) -> Vec<(String, String)> {
    let quota_us = l.cpu_millis.map(|m| m * CPU_PERIOD_US / 1000);
    let mut items: Vec<(String, String)> = match cg {
        Cgroups::V1 => vec![
            (
                "lxc.cgroup.memory.limit_in_bytes".into(),
                l.memory.to_string(),
            ),
            ("lxc.cgroup.pids.max".into(), l.pids.to_string()),
            ("lxc.cgroup.cpu.shares".into(), l.cpu_shares.to_string()),
        ],
        Cgroups::V2 => vec![
            ("lxc.cgroup2.memory.max".into(), l.memory.to_string()),
            ("lxc.cgroup2.memory.swap.max".into(), "0".into()),
            ("lxc.cgroup2.pids.max".into(), l.pids.to_string()),
            (
                "lxc.cgroup2.cpu.weight".into(),
                (l.cpu_shares * 100 / 1024).clamp(1, 10000).to_string(),
            ),
        ],
    };
    match (cg, quota_us) {
        (_, None) => {}
        (Cgroups::V1, Some(q)) => items.extend([
            (
                "lxc.cgroup.cpu.cfs_period_us".into(),
                CPU_PERIOD_US.to_string(),
            ),
            ("lxc.cgroup.cpu.cfs_quota_us".into(), q.to_string()),
        ]),
        (Cgroups::V2, Some(q)) => {
            items.push(("lxc.cgroup2.cpu.max".into(), format!("{q} {CPU_PERIOD_US}")))
        }
    }
    items
}

/// The items that load seccomp profile `path`. Stacked on any filter the port itself runs
/// under (liblxc would otherwise skip loading it, silently, if the port were confined).
pub fn seccomp_items(path: &str) -> [(String, String); 2] {
    [
        ("lxc.seccomp.profile".into(), path.into()),
        ("lxc.seccomp.allow_nesting".into(), "1".into()),
    ]
}

/// The items common to every container Ampule makes: id map, network, limits, and
/// capabilities that no container needs. `dir` is the container's directory (its log's).
pub fn base_config(
    host: &Host,
    name: &str,
    dir: &Path,
    veth: Option<&str>,
    limits: &Limits,
) -> Vec<(String, String)> {
    let mut c: Vec<(String, String)> = vec![
        ("lxc.uts.name".into(), name.into()),
        (
            "lxc.log.file".into(),
            dir.join("lxc.log").display().to_string(),
        ),
        ("lxc.log.level".into(), "WARN".into()),
        (
            "lxc.idmap".into(),
            format!("u 0 {} {}", host.uids.start, host.uids.count.min(65536)),
        ),
        (
            "lxc.idmap".into(),
            format!("g 0 {} {}", host.gids.start, host.gids.count.min(65536)),
        ),
        (
            "lxc.cap.drop".into(),
            "sys_module sys_rawio sys_time sys_boot mac_admin mac_override net_raw".into(),
        ),
    ];
    match veth {
        Some(veth) => c.extend([
            ("lxc.net.0.type".into(), "veth".into()),
            ("lxc.net.0.link".into(), host.bridge.clone()),
            ("lxc.net.0.flags".into(), "up".into()),
            ("lxc.net.0.veth.pair".into(), veth.into()),
        ]),
        // A network namespace with only loopback in it; `up` has liblxc bring loopback up
        // (without it `lo` stays down, and nothing in the sandbox reaches 127.0.0.1).
        None => c.extend([
            ("lxc.net.0.type".into(), "empty".into()),
            ("lxc.net.0.flags".into(), "up".into()),
        ]),
    }
    c.extend(limit_items(host.cgroups, limits));
    c
}

/// The last lines liblxc logged for the container whose directory is `dir` (warnings and
/// errors).
pub fn lxc_log_tail(dir: &Path) -> String {
    let text = crate::untrusted::read_tail(dir, Path::new("lxc.log"), 1500).unwrap_or_default();
    String::from_utf8_lossy(&text).into_owned()
}
