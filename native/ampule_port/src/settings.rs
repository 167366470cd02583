//! The port's command line: which bridge and subnet, where the state lives, how much to log.

use std::path::PathBuf;

use crate::subnet::{self, Subnet};

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bridge: String,
    pub subnet: Subnet,
    pub state_dir: PathBuf,
    pub log_level: log::LevelFilter,
    /// Log lines also to stderr after the hello (`--log-stderr`).
    pub log_stderr: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            bridge: "ampule0".into(),
            subnet: "10.213.57.0/24".parse().expect("default subnet"),
            state_dir: PathBuf::from("/var/lib/ampule"),
            log_level: log::LevelFilter::Info,
            log_stderr: false,
        }
    }
}

impl Settings {
    /// Parses `--bridge`, `--subnet`, `--state-dir`, `--log-level`, `--log-stderr`.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Settings, String> {
        let mut s = Settings::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bridge" => {
                    let b = value()?;
                    if b.is_empty()
                        || b.len() > 15
                        || !b
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                    {
                        return Err(format!("--bridge {b}: not an interface name"));
                    }
                    s.bridge = b;
                }
                "--subnet" => {
                    let n: Subnet = value()?.parse()?;
                    if let Some(r) = subnet::reserved_subnets().iter().find(|r| r.overlaps(&n)) {
                        return Err(format!(
                            "--subnet {n} overlaps {r}, which LXC or Docker use"
                        ));
                    }
                    s.subnet = n;
                }
                "--state-dir" => {
                    let d = PathBuf::from(value()?);
                    if !d.is_absolute() {
                        return Err("--state-dir must be absolute".into());
                    }
                    s.state_dir = d;
                }
                "--log-level" => {
                    // Erlang's Logger says `warning`, the log crate `warn`: both are taken.
                    let v = value()?;
                    let v = if v == "warning" {
                        "warn".to_string()
                    } else {
                        v
                    };
                    s.log_level = v.parse().map_err(|_| {
                        "--log-level: error, warning (or warn), info or debug".to_string()
                    })?
                }
                "--log-stderr" => s.log_stderr = true,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_args() {
        let s = Settings::from_args(
            ["--bridge", "br9", "--subnet", "10.99.0.0/24"]
                .iter()
                .map(|s| s.to_string()),
        )
        .unwrap();
        assert_eq!(s.bridge, "br9");
        assert_eq!(s.subnet.to_string(), "10.99.0.0/24");
        let lxc = Settings::from_args(["--subnet", "10.0.3.0/24"].iter().map(|s| s.to_string()));
        assert!(lxc.unwrap_err().contains("overlaps"));
        assert!(Settings::from_args(["--nope".to_string()]).is_err());
        let w = Settings::from_args(["--log-level", "warning"].iter().map(|s| s.to_string()));
        assert_eq!(w.unwrap().log_level, log::LevelFilter::Warn);
        assert!(!Settings::default().log_stderr);
        assert!(
            Settings::from_args(["--log-stderr".to_string()])
                .unwrap()
                .log_stderr
        );
        assert!(Settings::from_args(["--bridge".to_string()]).is_err());
    }
}
