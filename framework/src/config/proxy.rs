//! Running behind proxies: which peers are trusted to say who the client is,
//! and which header they say it in.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP address or a CIDR block (`"10.0.0.0/8"`, `"fd00::/8"`; a bare address
/// is the block of that one address), as `trusted_proxies` lists them.
///
/// ```
/// use framework::config::IpCidr;
/// let private: IpCidr = "10.0.0.0/8".parse().unwrap();
/// assert!(private.contains("10.1.2.3".parse().unwrap()));
/// assert!(!private.contains("192.0.2.1".parse().unwrap()));
/// let one: IpCidr = "127.0.0.1".parse().unwrap();
/// assert_eq!(one.to_string(), "127.0.0.1/32");
/// // An IPv4 block also holds the IPv4-mapped IPv6 form of its addresses.
/// assert!(one.contains("::ffff:127.0.0.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<IpCidr>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr(ipnet::IpNet);

impl IpCidr {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as the
    /// IPv4 address it maps).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for IpCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            // `10.1.2.3/8` means the block, not the address.
            return Ok(IpCidr(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| IpCidr(ip.to_canonical().into()))
            .map_err(|_| {
                format!("`{s}` is not an IP address or a CIDR block like 10.0.0.0/8 or fd00::/8")
            })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for IpCidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpCidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `trusted_proxies` as written: a list, or one block alone
/// (`FRAMEWORK_TRUSTED_PROXIES=10.0.0.0/8`).
pub(super) fn cidr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpCidr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<IpCidr>),
        One(IpCidr),
    }
    Ok(match Raw::deserialize(d) {
        Ok(Raw::List(list)) => list,
        Ok(Raw::One(one)) => vec![one],
        Err(_) => {
            return Err(serde::de::Error::custom(
                "expected a list of IP addresses or CIDR blocks, like [\"10.0.0.0/8\", \"::1\"]",
            ))
        }
    })
}

/// The header a trusted HTTP proxy names the client in (`forwarded_header`).
/// Only the configured one is read: a proxy passes the other on as the client
/// sent it, so reading it would let a client choose its own address.
///
/// ```
/// use framework::config::ForwardedHeader;
/// assert_eq!(ForwardedHeader::default(), ForwardedHeader::XForwardedFor);
/// assert_eq!(ForwardedHeader::Forwarded.name(), "forwarded");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx's
    /// `$proxy_add_x_forwarded_for`, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` (`for` parameters only).
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, in lower case.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_and_match() {
        let v6: IpCidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let host: IpCidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(host.to_string(), "10.0.0.0/8");
        let mapped: IpCidr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.1/32");
        for bad in ["", "10.0.0.0/", "10.0.0/8", "localhost", "::1/129"] {
            assert!(bad.parse::<IpCidr>().is_err(), "{bad:?}");
        }
    }
}
