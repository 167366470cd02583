//! An IPv4 subnet such as `10.213.57.0/24`, and how Ampule divides its bridge's subnet: the
//! host's own address first, application containers' static addresses, the top quarter
//! for system containers' DHCP, and the subnets (LXC's, Docker's) it must never take.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 subnet such as `10.213.57.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s}: expected ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s}: bad address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("{s}: bad prefix"))?;
        if !(16..=28).contains(&prefix) {
            return Err(format!("{s}: prefix must be between /16 and /28"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Subnet {
    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    /// The `n`-th address of the subnet.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    /// The host's own address on the bridge: the first one.
    pub fn host(&self) -> Ipv4Addr {
        self.nth(1)
    }

    /// Host indices for application containers: everything but the network, host and
    /// broadcast addresses and the top quarter, which is the DHCP pool of system containers.
    pub fn static_range(&self) -> std::ops::Range<u32> {
        2..self.size() - self.size() / 4
    }

    /// The DHCP pool handed to dnsmasq for system containers.
    pub fn dhcp_range(&self) -> (Ipv4Addr, Ipv4Addr) {
        (
            self.nth(self.size() - self.size() / 4),
            self.nth(self.size() - 2),
        )
    }

    /// Whether the subnet overlaps `other`.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        let mask = u32::MAX << (32 - p);
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }
}

/// Subnets that Ampule must never take: LXC's and Docker's defaults.
pub fn reserved_subnets() -> [Subnet; 2] {
    [
        Subnet {
            network: Ipv4Addr::new(10, 0, 3, 0),
            prefix: 24,
        },
        Subnet {
            network: Ipv4Addr::new(172, 17, 0, 0),
            prefix: 16,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_subnets() {
        let s: Subnet = "10.213.57.9/24".parse().unwrap();
        assert_eq!(s.to_string(), "10.213.57.0/24");
        assert_eq!(s.host(), Ipv4Addr::new(10, 213, 57, 1));
        assert_eq!(s.static_range(), 2..192);
        assert_eq!(
            s.dhcp_range(),
            (
                Ipv4Addr::new(10, 213, 57, 192),
                Ipv4Addr::new(10, 213, 57, 254)
            )
        );
        assert!("10.0.0.0".parse::<Subnet>().is_err());
        assert!("10.0.0.0/8".parse::<Subnet>().is_err());
    }

    #[test]
    fn default_subnet_avoids_lxc_and_docker() {
        let ours: Subnet = "10.213.57.0/24".parse().unwrap();
        for r in reserved_subnets() {
            assert!(!ours.overlaps(&r));
        }
        let lxc: Subnet = "10.0.3.0/24".parse().unwrap();
        assert!(lxc.overlaps(&reserved_subnets()[0]));
    }
}
