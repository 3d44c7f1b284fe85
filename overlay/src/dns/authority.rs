//! Who answers for the cluster zones: the SOA and NS at every zone apex name the live
//! coordinators, each as `<coordinator>.ns.<zone>.` with its DNS address as glue in that zone.
//!
//! Agents serve no authority of their own (made-up `ns.<zone>.` SOA and NS); coordinators, which
//! answer every zone for the whole cluster, pass the [`Authority`] of the coordinators alive.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{Name, RData};

use super::SnapshotBuilder;
use crate::model::{is_valid_label, CoordinatorRecord};

/// TTL of the SOA, NS and glue records: short, since coordinators come and go.
const AUTHORITY_TTL: u32 = 5;
/// SOA serial. Zone transfers are refused, so nothing compares serials; a fixed one keeps the
/// answers of every coordinator identical whatever changes each has seen.
const SERIAL: u32 = 1;
/// SOA refresh, retry and expire (seconds), as the made-up SOA has them.
const SOA_TIMERS: [i32; 3] = [3600, 600, 86400];
/// SOA minimum: the negative-caching TTL, the records' TTL.
const NEGATIVE_TTL: u32 = 5;

/// A server answering every cluster zone: a coordinator's name (a DNS label) and DNS address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NameServer {
    /// The coordinator's name.
    pub name: String,
    /// Where it answers DNS.
    pub addr: IpAddr,
}

/// The name servers of the cluster zones, sorted by name; none means made-up SOA and NS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authority {
    servers: Vec<NameServer>,
}

impl Authority {
    /// The authority of `servers` (sorted by name; a name given twice is kept once).
    pub fn new(servers: impl IntoIterator<Item = NameServer>) -> Authority {
        let mut servers: Vec<NameServer> = servers.into_iter().collect();
        servers.sort();
        servers.dedup_by(|a, b| a.name == b.name);
        Authority { servers }
    }

    /// The coordinators that answer DNS at a specific address, under valid names.
    pub fn of_coordinators<'a>(
        records: impl IntoIterator<Item = &'a CoordinatorRecord>,
    ) -> Authority {
        Authority::new(records.into_iter().filter_map(|c| {
            let addr = c.dns?.ip();
            (is_valid_label(&c.name) && !addr.is_unspecified()).then(|| NameServer {
                name: c.name.clone(),
                addr,
            })
        }))
    }

    /// The name servers, sorted by name (the first is the SOA's primary).
    pub fn servers(&self) -> &[NameServer] {
        &self.servers
    }

    /// Adds to `b`, for `zone` (declared once), the SOA naming the first server, one NS per
    /// server and each server's address at its NS name; nothing without servers.
    pub(crate) fn add(&self, b: &mut SnapshotBuilder, zone: &str) {
        let zone = zone.trim_end_matches('.');
        let names: Vec<(Name, IpAddr)> = self
            .servers
            .iter()
            .filter_map(|s| Some((Name::from_ascii(ns_name(&s.name, zone)).ok()?, s.addr)))
            .collect();
        let (Some((mname, _)), Ok(apex), Ok(rname)) = (
            names.first(),
            Name::from_ascii(format!("{zone}.")),
            Name::from_ascii(format!("hostmaster.{zone}.")),
        ) else {
            return;
        };
        let [refresh, retry, expire] = SOA_TIMERS;
        let soa = SOA::new(
            mname.clone(),
            rname,
            SERIAL,
            refresh,
            retry,
            expire,
            NEGATIVE_TTL,
        );
        let apex = apex.to_ascii();
        b.record(&apex, AUTHORITY_TTL, RData::SOA(soa));
        for (name, addr) in &names {
            b.record(&apex, AUTHORITY_TTL, RData::NS(NS(name.clone())));
            let glue = match *addr {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            b.record(&name.to_ascii(), AUTHORITY_TTL, glue);
        }
    }
}

/// The name of coordinator `server` as a name server of `zone`: `<server>.ns.<zone>.`.
pub fn ns_name(server: &str, zone: &str) -> String {
    format!("{server}.ns.{}.", zone.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::RecordType;

    use super::*;
    use crate::dns::answer::{respond, AnswerConfig, Outcome, Transport};
    use crate::dns::projection::{assemble, assemble_with, project_network, View};
    use crate::model::Network;
    use crate::state::ClusterState;

    fn record(name: &str, dns: Option<&str>) -> CoordinatorRecord {
        CoordinatorRecord {
            schema: 1,
            name: name.into(),
            api: format!("http://{name}:7480"),
            dns: dns.map(|d| d.parse().expect("addr")),
        }
    }

    #[test]
    fn only_coordinators_answering_dns_at_an_address_are_name_servers() {
        let records = [
            record("c2", Some("10.0.0.3:53")),
            record("c1", Some("[fd00::2]:53")),
            record("api-only", None),
            record("anywhere", Some("0.0.0.0:53")),
            record("Bad_Name", Some("10.0.0.9:53")),
        ];
        let a = Authority::of_coordinators(&records);
        let names: Vec<&str> = a.servers().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["c1", "c2"]);
        assert_eq!(
            a.servers()[0].addr,
            "fd00::2".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(Authority::of_coordinators(&[]), Authority::default());
    }

    fn ask(snap: &crate::dns::Snapshot, qname: &str, qtype: RecordType) -> Message {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(qname).expect("name"), qtype));
        let mut out = Vec::new();
        let client = "10.9.9.9".parse().expect("ip");
        let cfg = AnswerConfig::default();
        match respond(
            snap,
            &q.to_vec().expect("encode"),
            client,
            Transport::Udp,
            &cfg,
            &mut out,
        ) {
            Outcome::Reply(_) => Message::from_vec(&out).expect("parse"),
            other => panic!("no reply: {other:?}"),
        }
    }

    fn texts(records: &[hickory_proto::rr::Record]) -> Vec<String> {
        records.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn every_zone_names_the_servers_once_even_a_shared_reverse_zone() {
        // Two /20s inside 172.21.0.0/16 share the reverse zone 21.172.in-addr.arpa.
        let nets = [
            Network::new("a", "172.21.0.0/20".parse().expect("net"), 4096),
            Network::new("b", "172.21.16.0/20".parse().expect("net"), 4097),
        ];
        let state = ClusterState::new();
        let parts: Vec<_> = nets
            .iter()
            .map(|n| project_network(n, &[], &state))
            .collect();
        let authority = Authority::new([
            NameServer {
                name: "c2".into(),
                addr: "10.0.0.4".parse().expect("ip"),
            },
            NameServer {
                name: "c1".into(),
                addr: "fd00::3".parse().expect("ip"),
            },
        ]);
        let snap = assemble_with(&parts, View::Cluster, &authority).expect("one SOA per zone");
        for zone in ["a.local.", "b.local.", "21.172.in-addr.arpa."] {
            let ns = ask(&snap, zone, RecordType::NS);
            assert_eq!(
                texts(&ns.answers),
                [ns_name("c1", zone), ns_name("c2", zone)]
            );
            assert_eq!(texts(&ns.additionals), ["fd00::3", "10.0.0.4"], "glue");
            let soa = ask(&snap, zone, RecordType::SOA);
            match soa.answers.first().map(|r| &r.data) {
                Some(RData::SOA(s)) => {
                    assert_eq!(s.mname.to_string(), ns_name("c1", zone));
                    assert_eq!(s.minimum, NEGATIVE_TTL);
                }
                other => panic!("no SOA at {zone}: {other:?}"),
            }
        }
        // Agents pass no name servers: the made-up ns.<zone>.
        let made_up = assemble(&parts, View::Members).expect("snapshot");
        assert_eq!(
            texts(&ask(&made_up, "a.local.", RecordType::NS).answers),
            ["ns.a.local."]
        );
    }

    #[test]
    fn names_live_under_ns_of_each_zone() {
        assert_eq!(ns_name("c1", "backend.local"), "c1.ns.backend.local.");
        assert_eq!(
            ns_name("c1", "22.172.in-addr.arpa."),
            "c1.ns.22.172.in-addr.arpa."
        );
    }
}
