//! Behaviour tests of the authoritative engine, on packet bytes: queries are encoded and answers
//! decoded with hickory, an independent implementation of the wire format.
#![allow(clippy::unwrap_used)] // test inputs are fixed; a failed unwrap is a failed test

mod answering;
mod chains;
mod fuzz;
mod protocol;
mod views;

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{RData, Record, RecordType};

use super::answer::{respond, AnswerConfig, Outcome, Transport};
use super::{Snapshot, SnapshotBuilder};

/// A small deterministic generator (xorshift) for randomized tests, so a failing seed replays.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next number below `n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A client address without any view.
pub(super) const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));

/// The zones and records most tests answer from.
pub(super) fn sample() -> Snapshot {
    let mut b = SnapshotBuilder::new();
    b.zone("test.local")
        .zone("10.in-addr.arpa")
        .zone("d.f.ip6.arpa");
    let rec = |t: RecordType, s: &str| RData::try_from_str(t, s).unwrap();
    b.record("test.local", 60, rec(RecordType::A, "10.0.0.5"))
        .record("web.test.local.", 60, rec(RecordType::AAAA, "fd00::5"))
        .record("web.test.local", 60, rec(RecordType::A, "10.0.0.6"))
        .record("svc.test.local", 30, rec(RecordType::A, "10.0.1.1"))
        .record("svc.test.local", 30, rec(RecordType::A, "10.0.1.2"))
        .record("svc.test.local", 30, rec(RecordType::A, "10.0.1.3"))
        .record(
            "alias.test.local",
            20,
            rec(RecordType::CNAME, "alias2.test.local."),
        )
        .record(
            "alias2.test.local",
            20,
            rec(RecordType::CNAME, "web.test.local."),
        )
        .record(
            "dangling.test.local",
            20,
            rec(RecordType::CNAME, "nothing.test.local."),
        )
        .record(
            "away.test.local",
            20,
            rec(RecordType::CNAME, "www.example.org."),
        )
        .record(
            "loop1.test.local",
            20,
            rec(RecordType::CNAME, "loop2.test.local."),
        )
        .record(
            "loop2.test.local",
            20,
            rec(RecordType::CNAME, "loop1.test.local."),
        )
        .record(
            "_http._tcp.web.test.local",
            60,
            rec(RecordType::SRV, "10 5 8080 web.test.local."),
        )
        .record(
            "txt.test.local",
            60,
            rec(RecordType::TXT, "\"hello world\" \"second\""),
        )
        .record(
            "5.0.0.10.in-addr.arpa",
            60,
            rec(RecordType::PTR, "test.local."),
        )
        .record(
            "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
            60,
            rec(RecordType::PTR, "web.test.local."),
        )
        .order("svc.test.local", super::AnswerOrder::RoundRobin);
    for i in 0..100 {
        b.record(
            "big.test.local",
            60,
            rec(RecordType::A, &format!("10.1.0.{i}")),
        );
    }
    b.build().unwrap()
}

/// A query for `name`/`ty` with RD set and id 0x1234.
pub(super) fn query(name: &str, ty: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        hickory_proto::rr::Name::from_str(name).unwrap(),
        ty,
    ));
    m
}

/// The same query with an OPT record of `payload` bytes and `version`.
pub(super) fn with_edns(mut m: Message, payload: u16, version: u8) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(payload).set_version(version);
    m.edns = Some(e);
    m
}

/// Answers raw bytes over `transport` with forwarding off; None when the server stays silent.
pub(super) fn ask_raw(snap: &Snapshot, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match respond(
        snap,
        packet,
        CLIENT,
        transport,
        &AnswerConfig::default(),
        &mut out,
    ) {
        Outcome::Reply(_) => Some(out),
        Outcome::Drop => None,
        Outcome::Forward => panic!("forwarding is off"),
    }
}

/// Answers a message over UDP and decodes the response.
pub(super) fn ask(snap: &Snapshot, m: &Message) -> Message {
    let bytes = ask_raw(snap, &m.to_vec().unwrap(), Transport::Udp).expect("a response");
    Message::from_vec(&bytes).expect("a parseable response")
}

/// Record data of a section, as text, in order.
pub(super) fn datas(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.data.to_string()).collect()
}
