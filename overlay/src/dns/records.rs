//! The records file of standalone mode: one record per line, `NAME [TTL] [IN] TYPE DATA`.
//!
//! Names are absolute, the final dot optional; `#` and `;` start comments (outside quotes).

use std::str::FromStr;

use hickory_proto::rr::{RData, RecordType};

use super::snapshot::names::text_to_wire;
use super::SnapshotBuilder;

/// A line of a records file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct RecordsError {
    /// The file name (or other source) as given.
    pub source_name: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Parses a records file and adds its records to `builder`; every owner must lie in one of
/// `zones`. Records without a TTL get `default_ttl`. Returns the number of records added.
/// Nothing is added when any line is bad.
pub fn parse_records(
    text: &str,
    source_name: &str,
    zones: &[String],
    default_ttl: u32,
    builder: &mut SnapshotBuilder,
) -> Result<usize, RecordsError> {
    let zone_wires: Vec<Box<[u8]>> = zones.iter().filter_map(|z| text_to_wire(z).ok()).collect();
    let mut parsed = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let err = |message: String| RecordsError {
            source_name: source_name.to_string(),
            line: i + 1,
            message,
        };
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let (name, ttl, rdata) = parse_line(line, default_ttl).map_err(err)?;
        let wire = text_to_wire(name).map_err(|e| err(format!("bad name {name:?}: {e}")))?;
        if !zone_wires
            .iter()
            .any(|z| wire.ends_with(z) && label_boundary(&wire, z.len()))
        {
            return Err(err(format!(
                "{name} is outside every zone ({}); add --zone for it",
                zones.join(", ")
            )));
        }
        parsed.push((name.to_string(), ttl, rdata));
    }
    let count = parsed.len();
    for (name, ttl, rdata) in parsed {
        builder.record(&name, ttl, rdata);
    }
    Ok(count)
}

/// Whether the last `suffix_len` bytes of `wire` start at a label boundary.
fn label_boundary(wire: &[u8], suffix_len: usize) -> bool {
    let start = wire.len() - suffix_len;
    super::wire::label_starts(wire)
        .chain(std::iter::once(wire.len() - 1))
        .any(|s| s == start)
}

/// The line without its comment (a `#` or `;` outside double quotes).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '#' | ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Splits `NAME [TTL] [IN] TYPE DATA` and parses the data for the type.
fn parse_line(line: &str, default_ttl: u32) -> Result<(&str, u32, RData), String> {
    let mut rest = line;
    let mut next = || {
        let s = rest.trim_start();
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        let (tok, tail) = s.split_at(end);
        rest = tail;
        tok
    };
    let name = next();
    let mut tok = next();
    let mut ttl = default_ttl;
    if tok.bytes().all(|b| b.is_ascii_digit()) && !tok.is_empty() {
        ttl = tok
            .parse()
            .map_err(|_| format!("TTL {tok} is out of range (at most 4294967295)"))?;
        tok = next();
    }
    if tok.eq_ignore_ascii_case("IN") {
        tok = next();
    }
    if tok.is_empty() {
        return Err("expected NAME [TTL] TYPE DATA, the type is missing".into());
    }
    let rtype = RecordType::from_str(&tok.to_ascii_uppercase())
        .map_err(|_| format!("unknown record type {tok:?}"))?;
    let data = rest.trim();
    if data.is_empty() {
        return Err(format!("{rtype} record without data"));
    }
    let rdata =
        RData::try_from_str(rtype, data).map_err(|e| format!("bad {rtype} data {data:?}: {e}"))?;
    Ok((name, ttl, rdata))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<usize, RecordsError> {
        let zones = vec!["test.local".to_string(), "10.in-addr.arpa.".to_string()];
        parse_records(text, "recs", &zones, 60, &mut SnapshotBuilder::new())
    }

    #[test]
    fn accepts_the_documented_syntax() {
        let text = "# services\n\
            test.local A 10.0.0.5\n\
            web.test.local. 60 AAAA fd00::5 ; v6\n\
            _http._tcp.web.test.local. SRV 10 5 8080 web.test.local.\n\
            \n\
            txt.test.local 30 IN TXT \"a;b#c\" \"two\"\n\
            5.0.0.10.in-addr.arpa PTR test.local.\n";
        assert_eq!(parse(text).expect("valid"), 5);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse("test.local A 10.0.0.5\nweb.test.local AAAA nonsense\n")
            .expect_err("must be rejected");
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("recs:2: bad AAAA data"), "{e}");
        let e = parse("other.zone A 10.0.0.1").expect_err("must be rejected");
        assert!(e.message.contains("outside every zone"), "{e}");
        let e = parse("xtest.local A 10.0.0.1").expect_err("must be rejected");
        assert!(e.message.contains("outside every zone"), "{e}");
        assert!(parse("a.test.local BOGUS 1")
            .expect_err("must be rejected")
            .message
            .contains("unknown record type"));
        assert!(parse("a.test.local 60")
            .expect_err("must be rejected")
            .message
            .contains("type is missing"));
        assert!(parse("a.test.local A")
            .expect_err("must be rejected")
            .message
            .contains("without data"));
    }
}
