//! Tracing one query through a server's engine: which zones the requester sees, whether the
//! answer is local (which zone, prebuilt or composed), from the forwarder's cache, or from an
//! upstream (which, how long each try took), with the records and their TTLs. The answer path
//! never calls this: it is a separate entry point over the same snapshot and forwarder.

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::op::{Message, Query as Question};
use hickory_proto::rr::{Name, Record, RecordType};
use serde::{Deserialize, Serialize};

use super::answer::{respond, AnswerConfig, Outcome, Transport};
use super::forward::{ForwardPath, Forwarder};
use super::wire::parse_query;
use super::Snapshot;

/// Where a traced answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceSource {
    /// The server's own zones.
    Local {
        /// The zone that answered (empty when the name is in no zone, as for REFUSED).
        zone: String,
        /// Copied from the answers prebuilt with the snapshot (else composed).
        prebuilt: bool,
    },
    /// The forwarder (its cache or its upstreams).
    Forwarded {
        /// How it answered.
        path: ForwardPath,
    },
}

/// One record of a traced answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Owner name.
    pub name: String,
    /// TTL in seconds, as the requester would get it.
    pub ttl: u32,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Data as text.
    pub data: String,
}

/// What tracing one query found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsTrace {
    /// The name asked.
    pub query: String,
    /// The type asked.
    #[serde(rename = "type")]
    pub qtype: String,
    /// The requester the answer was computed for.
    pub client: IpAddr,
    /// The zones that requester sees (its view).
    pub view: Vec<String>,
    /// Every zone the server holds.
    pub zones: Vec<String>,
    /// Where the answer came from.
    pub source: TraceSource,
    /// Response code (`NoError`, `NXDomain`, ...), empty when nothing was answered.
    pub rcode: String,
    /// Answer section.
    pub answers: Vec<TraceRecord>,
    /// Authority section (the SOA of negative answers).
    pub authority: Vec<TraceRecord>,
    /// Time taken, in microseconds.
    pub micros: u64,
}

/// Why a query cannot be traced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The name is not a DNS name.
    #[error("{0:?} is not a DNS name")]
    BadName(String),
    /// The query could not be encoded or was not answered.
    #[error("cannot trace {0}: the engine did not take the query")]
    NotTaken(String),
}

fn record(r: &Record) -> TraceRecord {
    TraceRecord {
        name: r.name.to_string(),
        ttl: r.ttl,
        rtype: r.record_type().to_string(),
        data: r.data.to_string(),
    }
}

/// Traces `qname`/`qtype` as asked by `client` of a server answering from `snap` with
/// `forwarder` and `cfg`.
pub async fn trace(
    snap: &Snapshot,
    forwarder: Option<&Forwarder>,
    cfg: &AnswerConfig,
    qname: &str,
    qtype: RecordType,
    client: IpAddr,
) -> Result<DnsTrace, TraceError> {
    let name = Name::from_ascii(qname).map_err(|_| TraceError::BadName(qname.into()))?;
    let mut m = Message::query();
    m.metadata.id = 0x5a5a;
    m.metadata.recursion_desired = true;
    m.add_query(Question::query(name.clone(), qtype));
    let packet = m.to_vec().map_err(|_| TraceError::NotTaken(qname.into()))?;
    let zones: Vec<String> = snap.zones().map(str::to_string).collect();
    let view = (0..snap.zones.len())
        .filter_map(|z| u16::try_from(z).ok())
        .filter(|z| snap.visible(client, *z))
        .map(|z| snap.zone_name(z).to_string())
        .collect();
    let started = Instant::now();
    let mut out = Vec::new();
    // TCP: the whole answer, never truncated.
    let source = match respond(snap, &packet, client, Transport::Tcp, cfg, &mut out) {
        Outcome::Reply(r) => TraceSource::Local {
            zone: r
                .zone
                .map(|z| snap.zone_name(z).to_string())
                .unwrap_or_default(),
            prebuilt: r.prebuilt,
        },
        Outcome::Drop => return Err(TraceError::NotTaken(qname.into())),
        Outcome::Forward => {
            let (Some(f), Ok(q)) = (forwarder, parse_query(&packet)) else {
                return Err(TraceError::NotTaken(qname.into()));
            };
            out.clear();
            TraceSource::Forwarded {
                path: f.trace(&packet, &q, &mut out).await,
            }
        }
    };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let reply = Message::from_vec(&out).ok();
    Ok(DnsTrace {
        query: name.to_string(),
        qtype: qtype.to_string(),
        client,
        view,
        zones,
        source,
        rcode: reply
            .as_ref()
            .map(|r| format!("{:?}", r.metadata.response_code))
            .unwrap_or_default(),
        answers: reply
            .as_ref()
            .map(|r| r.answers.iter().map(record).collect())
            .unwrap_or_default(),
        authority: reply
            .as_ref()
            .map(|r| r.authorities.iter().map(record).collect())
            .unwrap_or_default(),
        micros,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::RData;

    use super::*;
    use crate::dns::forward::fake_upstream::{a, table, Behaviour, FakeUpstream};
    use crate::dns::forward::ForwardConfig;
    use crate::dns::SnapshotBuilder;

    fn snapshot() -> Snapshot {
        let mut b = SnapshotBuilder::new();
        b.zone("frontend.local")
            .zone("backend.local")
            .record("web.frontend.local", 30, RData::A(A::new(10, 0, 0, 5)))
            .record("api.backend.local", 30, RData::A(A::new(10, 0, 1, 5)))
            .view("10.0.0.5".parse().expect("ip"), &["frontend.local"]);
        b.build().expect("snapshot")
    }

    fn cfg(forwarding: bool) -> AnswerConfig {
        AnswerConfig {
            forwarding,
            ..AnswerConfig::default()
        }
    }

    #[tokio::test]
    async fn a_local_name_names_its_zone_and_the_requesters_view() {
        let snap = snapshot();
        let t = trace(
            &snap,
            None,
            &cfg(false),
            "web.frontend.local",
            RecordType::A,
            "10.0.0.5".parse().expect("ip"),
        )
        .await
        .expect("trace");
        assert_eq!(
            t.source,
            TraceSource::Local {
                zone: "frontend.local.".into(),
                prebuilt: true
            }
        );
        assert_eq!(t.view, ["frontend.local."]);
        assert_eq!(t.zones, ["frontend.local.", "backend.local."]);
        assert_eq!(t.rcode, "NoError");
        assert_eq!(t.answers.len(), 1);
        assert_eq!(
            (t.answers[0].data.as_str(), t.answers[0].ttl),
            ("10.0.0.5", 30)
        );
        let hidden = trace(
            &snap,
            None,
            &cfg(false),
            "api.backend.local",
            RecordType::A,
            "10.0.0.5".parse().expect("ip"),
        )
        .await
        .expect("trace");
        assert_eq!(hidden.rcode, "NXDomain", "outside the requester's view");
        let missing = trace(
            &snap,
            None,
            &cfg(false),
            "nope.frontend.local",
            RecordType::A,
            "10.0.0.5".parse().expect("ip"),
        )
        .await
        .expect("trace");
        assert_eq!(missing.rcode, "NXDomain");
        assert_eq!(missing.authority[0].rtype, "SOA");
    }

    #[tokio::test]
    async fn an_external_name_names_the_upstream_then_the_cache() {
        let records = table(vec![a("example.org.", 60, [192, 0, 2, 1])]);
        let upstream = FakeUpstream::start(records, Behaviour::Answer, Duration::ZERO).await;
        let f = Forwarder::new(ForwardConfig {
            upstreams: vec![upstream.addr],
            timeout: Duration::from_secs(2),
            ..Default::default()
        });
        let snap = snapshot();
        let client = "10.0.0.5".parse().expect("ip");
        let first = trace(
            &snap,
            Some(&f),
            &cfg(true),
            "example.org",
            RecordType::A,
            client,
        )
        .await
        .expect("trace");
        let TraceSource::Forwarded {
            path: ForwardPath::Upstream { tries },
        } = &first.source
        else {
            panic!("not from the upstream: {first:?}");
        };
        assert_eq!(tries.len(), 1);
        assert_eq!(tries[0].upstream, upstream.addr);
        assert!(tries[0].error.is_none());
        assert_eq!(first.rcode, "NoError");
        assert_eq!(first.answers[0].data, "192.0.2.1");
        let second = trace(
            &snap,
            Some(&f),
            &cfg(true),
            "example.org",
            RecordType::A,
            client,
        )
        .await
        .expect("trace");
        assert!(
            matches!(
                second.source,
                TraceSource::Forwarded {
                    path: ForwardPath::Cache { .. }
                }
            ),
            "{second:?}"
        );
    }
}
