//! Names in the snapshot's form (lowercased wire bytes, from text or from hickory names), and the
//! reverse names and zones of addresses.

use std::net::IpAddr;

use hickory_proto::rr::Name;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::dns::wire::MAX_NAME;

/// Parses a dotted name (absolute, the final dot optional; "." is the root) into lowercased wire
/// form. Labels may hold any printable character but a dot; escapes are not supported.
pub(crate) fn text_to_wire(text: &str) -> Result<Box<[u8]>, String> {
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    let mut wire = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err("empty label (two dots in a row, or a leading dot)".into());
            }
            if label.len() > 63 {
                return Err(format!("label {label:?} is longer than 63 bytes"));
            }
            if !label.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "label {label:?} holds a blank or a non-ASCII character"
                ));
            }
            wire.push(label.len() as u8);
            wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    wire.push(0);
    if wire.len() > MAX_NAME {
        return Err(format!(
            "name is {} bytes long in wire form, over 255",
            wire.len()
        ));
    }
    Ok(wire.into_boxed_slice())
}

/// A hickory name in lowercased wire form (always taken as absolute).
pub(crate) fn name_to_wire(name: &Name) -> Box<[u8]> {
    let mut wire = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        wire.push(label.len() as u8);
        wire.extend(label.iter().map(|b| b.to_ascii_lowercase()));
    }
    wire.push(0);
    wire.into_boxed_slice()
}

/// The reverse-lookup name of an address: `5.0.0.10.in-addr.arpa.` or the nibble form under
/// `ip6.arpa.`, as used for PTR records.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                s.push(nibble(byte & 0x0f));
                s.push('.');
                s.push(nibble(byte >> 4));
                s.push('.');
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

fn nibble(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// The reverse zone holding the PTR records of an IPv4 subnet (enclosing octet boundary).
pub fn reverse_zone_v4(net: &Ipv4Net) -> String {
    let octets = usize::from(net.prefix_len() / 8);
    let o = net.network().octets();
    let mut labels: Vec<String> = o[..octets].iter().rev().map(u8::to_string).collect();
    labels.push("in-addr.arpa".into());
    labels.join(".")
}

/// The reverse zone of an IPv6 subnet (enclosing nibble boundary).
pub fn reverse_zone_v6(net: &Ipv6Net) -> String {
    let nibbles = usize::from(net.prefix_len() / 4);
    let o = net.network().octets();
    let all: Vec<u8> = o.iter().flat_map(|b| [b >> 4, b & 0x0f]).collect();
    let mut labels: Vec<String> = all[..nibbles]
        .iter()
        .rev()
        .map(|n| format!("{n:x}"))
        .collect();
    labels.push("ip6.arpa".into());
    labels.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_are_lowercased_and_the_final_dot_is_optional() {
        let a = text_to_wire("Web.Test.Local.").expect("valid");
        let b = text_to_wire("web.test.local").expect("valid");
        assert_eq!(a, b);
        assert_eq!(&a[..], b"\x03web\x04test\x05local\x00");
        assert_eq!(&text_to_wire(".").expect("valid")[..], b"\x00");
    }

    #[test]
    fn bad_text_names_are_rejected_with_a_reason() {
        assert!(text_to_wire("a..b")
            .expect_err("must be rejected")
            .contains("empty label"));
        assert!(text_to_wire(&"x".repeat(64))
            .expect_err("must be rejected")
            .contains("63"));
        assert!(text_to_wire(&["abcdefghi"; 30].join("."))
            .expect_err("must be rejected")
            .contains("255"));
        assert!(text_to_wire("a b.c")
            .expect_err("must be rejected")
            .contains("blank"));
    }

    #[test]
    fn reverse_names_for_both_families() {
        assert_eq!(
            reverse_name("10.0.0.5".parse().expect("valid")),
            "5.0.0.10.in-addr.arpa."
        );
        let v6 = reverse_name("fd00::5".parse().expect("valid"));
        assert!(v6.starts_with("5.0.0.0.0.0.0.0."));
        assert!(v6.ends_with("0.0.d.f.ip6.arpa."));
        assert_eq!(v6.split('.').count(), 32 + 3);
    }
}
