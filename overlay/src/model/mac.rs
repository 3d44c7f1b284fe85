//! Ethernet MAC addresses as a value type (parsed once, compared as bytes).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The all-zeros address (the VXLAN "flood to every VTEP" FDB key).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address as bytes, as netlink wants it.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Builds an address from netlink bytes; `None` unless exactly 6 bytes.
    pub fn from_slice(b: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(b).ok().map(MacAddr)
    }

    /// The MAC of an endpoint: locally administered, derived from its IPv4 address, so it is
    /// unique within a network and the same on every node.
    pub fn for_endpoint(ip: std::net::Ipv4Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// Is this a unicast address (group bit clear) other than all zeros?
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && *self != MacAddr::ZERO
    }
}

/// Error of parsing a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: use six hex bytes like 02:00:ac:15:00:02")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<MacAddr, MacParseError> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = MacParseError;

    fn try_from(s: String) -> Result<MacAddr, MacParseError> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m: MacAddr = "02:AB:cd:00:10:ff".parse().expect("mac");
        assert_eq!(m.0, [0x02, 0xab, 0xcd, 0x00, 0x10, 0xff]);
        assert_eq!(m.to_string(), "02:ab:cd:00:10:ff");
        assert!(m.is_unicast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert!(!"01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .expect("mac")
            .is_unicast());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "02-00-00-00-00-00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert_eq!(MacAddr::from_slice(&[1, 2, 3]), None);
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
    }

    #[test]
    fn serde_as_string() {
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        let s = serde_json::to_string(&m).expect("ser");
        assert_eq!(s, "\"02:00:00:00:00:01\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&s).expect("de"), m);
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
    }
}
