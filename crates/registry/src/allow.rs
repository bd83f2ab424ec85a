//! Who may change the registry: a list of CIDR networks checked against the peer address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

/// One network, such as `127.0.0.0/8` or `::1/128`. A bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A network that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{text}` is not a network (expected an address or address/prefix, e.g. 127.0.0.0/8)")]
pub struct CidrError {
    text: String,
}

impl Cidr {
    /// The network of `address` with `prefix` bits (clamped to the address length). An
    /// IPv4-mapped IPv6 network with a prefix of 96 bits or more (`::ffff:10.0.0.0/104`) is the
    /// IPv4 network it maps (`10.0.0.0/8`).
    pub fn new(address: IpAddr, prefix: u8) -> Cidr {
        let (address, prefix) = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix.min(128) - 96),
                _ => (address, prefix.min(128)),
            },
            IpAddr::V4(_) => (address, prefix.min(32)),
        };
        Cidr { network: mask(address, prefix), prefix }
    }

    /// Whether `address` is in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a
    /// dual-stack listener reports IPv4 peers) is checked as the IPv4 address it carries, so IPv4
    /// peers are in IPv4 networks only (including mapped ones of /96 or longer, which
    /// [`Cidr::new`] makes IPv4), never in IPv6 networks such as `::/0`.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        address.is_ipv4() == self.network.is_ipv4() && mask(address, self.prefix) == self.network
    }

    /// Whether every address of this network is a loopback address (in `127.0.0.0/8`, or `::1`).
    pub fn is_loopback(&self) -> bool {
        match self.network {
            IpAddr::V4(v4) => v4.is_loopback() && self.prefix >= 8,
            IpAddr::V6(v6) => v6.is_loopback() && self.prefix == 128,
        }
    }
}

fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & mask))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let error = || CidrError { text: text.to_owned() };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| error())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(error)?,
            None => max,
        };
        Ok(Cidr::new(address, prefix))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The networks allowed to register, renew, cancel and change instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<Cidr>,
}

impl AllowList {
    /// An allow list of these networks (empty: nobody may change the registry).
    pub fn new(networks: Vec<Cidr>) -> AllowList {
        AllowList { networks }
    }

    /// Loopback only (`127.0.0.0/8` and `::1`), the default: services on the gateway's own machine.
    pub fn loopback() -> AllowList {
        AllowList::new(vec![Cidr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8), Cidr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128)])
    }

    /// Parses each entry with [`Cidr::from_str`].
    ///
    /// # Errors
    /// The first entry that is not a network.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, CidrError> {
        entries.iter().map(|e| e.as_ref().parse()).collect::<Result<Vec<_>, _>>().map(AllowList::new)
    }

    /// Whether `address` may change the registry.
    pub fn allows(&self, address: IpAddr) -> bool {
        self.networks.iter().any(|network| network.contains(address))
    }

    /// The networks.
    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }
}

impl Default for AllowList {
    fn default() -> Self {
        AllowList::loopback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn loopback_is_the_default() {
        let allow = AllowList::default();
        assert!(allow.allows(ip("127.0.0.1")));
        assert!(allow.allows(ip("127.9.8.7")));
        assert!(allow.allows(ip("::1")));
        assert!(allow.allows(ip("::ffff:127.0.0.1")));
        assert!(!allow.allows(ip("10.0.0.1")));
        assert!(!allow.allows(ip("::2")));
    }

    #[test]
    fn loopback_networks_are_told_apart() {
        for loopback in ["127.0.0.0/8", "127.0.0.1", "127.1.0.0/16", "::1", "::ffff:127.0.0.1"] {
            assert!(loopback.parse::<Cidr>().unwrap().is_loopback(), "{loopback}");
        }
        for other in ["127.0.0.0/7", "0.0.0.0/0", "10.0.0.1", "::/0", "::1/127", "::2"] {
            assert!(!other.parse::<Cidr>().unwrap().is_loopback(), "{other}");
        }
    }

    #[test]
    fn networks_parse_and_match() {
        let allow = AllowList::parse(&["10.1.0.0/16", "192.168.1.7", "fd00::/8", "0.0.0.0/0"][..3]).unwrap();
        assert!(allow.allows(ip("10.1.200.3")));
        assert!(!allow.allows(ip("10.2.0.1")));
        assert!(allow.allows(ip("192.168.1.7")));
        assert!(!allow.allows(ip("192.168.1.8")));
        assert!(allow.allows(ip("fd12::1")));
        assert!(AllowList::parse(&["0.0.0.0/0"]).unwrap().allows(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::1/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!("10.1.2.3/16".parse::<Cidr>().unwrap().to_string(), "10.1.0.0/16");
    }

    #[test]
    fn mapped_networks_keep_their_width() {
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert_eq!(mapped, "10.0.0.0/8".parse().unwrap());
        assert!(mapped.contains(ip("10.200.1.2")) && mapped.contains(ip("::ffff:10.200.1.2")));
        assert!(!mapped.contains(ip("11.0.0.1")));
        assert_eq!("::ffff:10.1.2.3".parse::<Cidr>().unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(Cidr::new(ip("::ffff:192.168.0.0"), 112).to_string(), "192.168.0.0/16", "Cidr::new converts too");
        assert_eq!(Cidr::new(ip("::ffff:192.168.0.7"), 200).to_string(), "192.168.0.7/32");
        // Wider than the mapped range: an IPv6 network, which holds no IPv4 peer.
        let wide = Cidr::new(ip("::ffff:0.0.0.0"), 80);
        assert_eq!(wide.to_string(), "::/80");
        assert!(wide.contains(ip("::1")) && !wide.contains(ip("::ffff:10.0.0.1")) && !wide.contains(ip("fd00::1")));
    }
}
