//! The forwarder against scripted upstreams on 127.0.0.1: routing, caching, coalescing,
//! failover, TCP retry, serve-stale, spoofing resistance, the raw cache-hit path.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query as Question, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::fake_upstream::{a, name, table, Behaviour, FakeUpstream, Table};
use super::*;
use crate::dns::wire::{parse_query, Reject};

const NO_DELAY: Duration = Duration::ZERO;

fn www() -> Table {
    table(vec![a("www.example.test.", 300, [10, 0, 0, 1])])
}

fn config(upstreams: &[&FakeUpstream]) -> ForwardConfig {
    ForwardConfig {
        upstreams: upstreams.iter().map(|u| u.addr).collect(),
        timeout: Duration::from_millis(300),
        ..ForwardConfig::default()
    }
}

fn query(qname: &str) -> Message {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Question::query(name(qname), RecordType::A));
    q
}

/// Resolves `q` the way the server hands a query over: encoded, parsed once, answered as bytes,
/// which are decoded here.
async fn resolve(fwd: &Forwarder, q: &Message) -> Result<Message, ForwardError> {
    let packet = q.to_vec().expect("encode");
    let parsed = parse_query(&packet).expect("a query the server answers");
    let mut out = Vec::new();
    fwd.resolve(&packet, &parsed, &mut out).await?;
    Ok(Message::from_vec(&out).expect("decodes"))
}

/// [`Forwarder::answer_from_cache`] for raw bytes, parsed as the server does.
fn from_cache(fwd: &Forwarder, packet: &[u8], transport: Transport, out: &mut Vec<u8>) -> bool {
    let parsed = parse_query(packet).expect("a query the server answers");
    fwd.answer_from_cache(packet, &parsed, transport, out)
}

fn first_a(m: &Message) -> Option<[u8; 4]> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0.octets()),
        _ => None,
    })
}

fn upstream_stats(f: &Forwarder, addr: SocketAddr) -> UpstreamStats {
    f.stats()
        .upstreams
        .into_iter()
        .find(|u| u.addr == addr)
        .expect("upstream listed in stats")
}

#[tokio::test]
async fn forwards_caches_and_echoes_the_question_as_asked() {
    let up = FakeUpstream::start(www(), Behaviour::Answer, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&up]));
    let q = query("WwW.Example.TEST.");
    let r = resolve(&fwd, &q).await.expect("answer");
    assert_eq!(r.metadata.id, q.metadata.id);
    assert!(r.metadata.recursion_available && r.metadata.recursion_desired);
    assert!(r.queries[0]
        .name()
        .eq_ignore_root_case(&name("WwW.Example.TEST.")));
    assert_eq!((first_a(&r), r.answers[0].ttl), (Some([10, 0, 0, 1]), 300));

    fwd.advance_clock(Duration::from_secs(10));
    let again = resolve(&fwd, &query("www.example.test."))
        .await
        .expect("cached");
    assert_eq!(again.answers[0].ttl, 290);
    assert_eq!(up.udp_queries(), 1);
    let s = fwd.stats();
    assert_eq!((s.cache_hits, s.cache_misses, s.cache_entries), (1, 1, 1));
}

#[tokio::test]
async fn nxdomain_is_cached_for_the_soa_minimum() {
    let up = FakeUpstream::start(www(), Behaviour::Answer, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&up]));
    let r = resolve(&fwd, &query("nope.example.test."))
        .await
        .expect("answer");
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities[0].ttl, 60);
    fwd.advance_clock(Duration::from_secs(59));
    let cached = resolve(&fwd, &query("nope.example.test."))
        .await
        .expect("answer");
    assert_eq!(cached.authorities[0].ttl, 1);
    assert_eq!(up.udp_queries(), 1);
    fwd.advance_clock(Duration::from_secs(1));
    resolve(&fwd, &query("nope.example.test."))
        .await
        .expect("answer");
    assert_eq!(up.udp_queries(), 2);
}

#[tokio::test]
async fn conditional_forwarders_longest_label_wise_suffix_wins() {
    let default = FakeUpstream::start(Table::new(), Behaviour::Answer, NO_DELAY).await;
    let corp = FakeUpstream::start(Table::new(), Behaviour::Answer, NO_DELAY).await;
    let sub = FakeUpstream::start(Table::new(), Behaviour::Answer, NO_DELAY).await;
    let mut cfg = config(&[&default]);
    cfg.zones = vec![
        ("corp.example".into(), vec![corp.addr]),
        ("A.Corp.Example.".into(), vec![sub.addr]),
    ];
    let fwd = Forwarder::new(cfg);
    for (qname, target) in [
        ("corp.example.", &corp),
        ("x.corp.example.", &corp),
        ("x.a.corp.example.", &sub),
        ("a.corp.example.", &sub),
        ("xcorp.example.", &default),
        ("other.test.", &default),
    ] {
        let before = target.udp_queries();
        resolve(&fwd, &query(qname)).await.expect("answer");
        assert_eq!(
            target.udp_queries(),
            before + 1,
            "{qname} must go to its route"
        );
    }
    let total = default.udp_queries() + corp.udp_queries() + sub.udp_queries();
    assert_eq!(total, 6);

    let zones_only = Forwarder::new(ForwardConfig {
        zones: vec![("corp.example".into(), vec![corp.addr])],
        ..ForwardConfig::default()
    });
    assert!(zones_only.has_route(&name("X.CORP.example.")));
    assert!(!zones_only.has_route(&name("xcorp.example.")));
    assert_eq!(
        resolve(&zones_only, &query("other.test.")).await,
        Err(ForwardError::NoRoute("other.test.".into()))
    );
}

#[tokio::test]
async fn identical_concurrent_queries_share_one_upstream_query() {
    let up = FakeUpstream::start(www(), Behaviour::Answer, Duration::from_millis(150)).await;
    let fwd = Forwarder::new(ForwardConfig {
        timeout: Duration::from_secs(5),
        ..config(&[&up])
    });
    let asks = (0..20).map(|i| {
        let fwd = fwd.clone();
        let qname = if i % 2 == 0 {
            "www.example.test."
        } else {
            "WWW.EXAMPLE.TEST."
        };
        tokio::spawn(async move { resolve(&fwd, &query(qname)).await })
    });
    for r in futures::future::join_all(asks).await {
        let r = r.expect("task").expect("answer");
        assert_eq!(first_a(&r), Some([10, 0, 0, 1]));
    }
    assert_eq!(up.udp_queries(), 1);
    assert_eq!(fwd.stats().coalesced, 19);
}

#[tokio::test]
async fn silent_upstream_times_out_and_the_next_one_answers() {
    let silent = FakeUpstream::start(www(), Behaviour::Silent, NO_DELAY).await;
    let good = FakeUpstream::start(www(), Behaviour::Answer, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&silent, &good]));
    let r = resolve(&fwd, &query("www.example.test."))
        .await
        .expect("answer");
    assert_eq!(first_a(&r), Some([10, 0, 0, 1]));
    assert_eq!(silent.udp_queries(), 1);
    let s = upstream_stats(&fwd, silent.addr);
    assert_eq!((s.queries, s.timeouts, s.failures), (1, 1, 0));
    assert_eq!(upstream_stats(&fwd, good.addr).queries, 1);
}

#[tokio::test]
async fn servfail_and_refused_fail_over_and_exhaustion_is_an_error() {
    let servfail =
        FakeUpstream::start(www(), Behaviour::Rcode(ResponseCode::ServFail), NO_DELAY).await;
    let refused =
        FakeUpstream::start(www(), Behaviour::Rcode(ResponseCode::Refused), NO_DELAY).await;
    let good = FakeUpstream::start(www(), Behaviour::Answer, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&servfail, &refused, &good]));
    let r = resolve(&fwd, &query("www.example.test."))
        .await
        .expect("answer");
    assert_eq!(first_a(&r), Some([10, 0, 0, 1]));
    assert_eq!(upstream_stats(&fwd, servfail.addr).failures, 1);
    assert_eq!(upstream_stats(&fwd, refused.addr).failures, 1);

    let failing = Forwarder::new(config(&[&servfail, &refused]));
    match resolve(&failing, &query("www.example.test.")).await {
        Err(ForwardError::AllFailed { tried: 2, last, .. }) => {
            assert_eq!(last, UpstreamError::Rcode(ResponseCode::Refused));
        }
        other => panic!("expected AllFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn truncated_udp_answer_is_retried_over_tcp() {
    let up = FakeUpstream::start(www(), Behaviour::TruncateUdp, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&up]));
    let r = resolve(&fwd, &query("www.example.test."))
        .await
        .expect("answer");
    assert_eq!(first_a(&r), Some([10, 0, 0, 1]));
    assert!(!r.metadata.truncation);
    assert_eq!((up.udp_queries(), up.tcp_queries()), (1, 1));
    let s = upstream_stats(&fwd, up.addr);
    assert_eq!((s.queries, s.tcp_retries, s.failures), (1, 1, 0));
}

#[tokio::test]
async fn stale_answer_is_served_for_a_bounded_time_when_upstreams_die() {
    let up = FakeUpstream::start(www(), Behaviour::Answer, NO_DELAY).await;
    let addr = up.addr;
    let fwd = Forwarder::new(ForwardConfig {
        stale_for: Duration::from_secs(600),
        ..config(&[&up])
    });
    resolve(&fwd, &query("www.example.test."))
        .await
        .expect("answer");
    up.stop().await;
    fwd.advance_clock(Duration::from_secs(301));

    let stale = resolve(&fwd, &query("www.example.test."))
        .await
        .expect("stale answer");
    assert_eq!(first_a(&stale), Some([10, 0, 0, 1]));
    assert_eq!(stale.answers[0].ttl, STALE_TTL);
    assert_eq!(upstream_stats(&fwd, addr).queries, 2);
    // Within the failure-recheck time the stale answer comes without asking upstream again.
    resolve(&fwd, &query("www.example.test."))
        .await
        .expect("stale answer");
    assert_eq!(upstream_stats(&fwd, addr).queries, 2);
    assert_eq!(fwd.stats().stale_served, 2);

    fwd.advance_clock(Duration::from_secs(600));
    assert!(matches!(
        resolve(&fwd, &query("www.example.test.")).await,
        Err(ForwardError::AllFailed { .. })
    ));
}

#[tokio::test]
async fn answers_with_wrong_id_or_question_are_ignored() {
    let up = FakeUpstream::start(www(), Behaviour::SpoofFirst, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&up]));
    let r = resolve(&fwd, &query("www.example.test."))
        .await
        .expect("answer");
    assert_eq!(first_a(&r), Some([10, 0, 0, 1]));
    let s = upstream_stats(&fwd, up.addr);
    assert_eq!((s.queries, s.failures, s.timeouts), (1, 0, 0));
}

#[tokio::test]
async fn malformed_answer_fails_that_upstream_over_to_the_next() {
    let junk = FakeUpstream::start(www(), Behaviour::Garbage, NO_DELAY).await;
    let good = FakeUpstream::start(www(), Behaviour::Answer, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&junk, &good]));
    let r = resolve(&fwd, &query("www.example.test."))
        .await
        .expect("answer");
    assert_eq!(first_a(&r), Some([10, 0, 0, 1]));
    assert_eq!(upstream_stats(&fwd, junk.addr).failures, 1);
}

#[tokio::test]
async fn raw_cache_hits_patch_id_question_ttl_and_opt() {
    let up = FakeUpstream::start(www(), Behaviour::Answer, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&up]));
    let mut out = Vec::new();
    let mut q = query("WWW.example.TEST.");
    let mut edns = Edns::new();
    edns.set_max_payload(1400);
    q.edns = Some(edns);
    let packet = q.to_vec().expect("encode");
    assert!(!from_cache(&fwd, &packet, Transport::Udp, &mut out));

    resolve(&fwd, &query("www.example.test."))
        .await
        .expect("answer");
    fwd.advance_clock(Duration::from_secs(100));
    assert!(from_cache(&fwd, &packet, Transport::Udp, &mut out));
    let r = Message::from_vec(&out).expect("decodes");
    assert_eq!(r.metadata.id, q.metadata.id);
    assert!(r.metadata.recursion_available && r.metadata.recursion_desired);
    assert!(r.queries[0]
        .name()
        .eq_ignore_root_case(&name("WWW.example.TEST.")));
    assert_eq!((first_a(&r), r.answers[0].ttl), (Some([10, 0, 0, 1]), 200));
    assert_eq!(r.edns.map(|e| e.max_payload()), Some(ADVERTISED_UDP_SIZE));
    assert_eq!(fwd.stats().cache_hits, 1);
    assert_eq!(up.udp_queries(), 1);
}

#[tokio::test]
async fn raw_path_leaves_oversized_udp_answers_to_the_general_path() {
    let many = (0..40)
        .map(|i| a("big.example.test.", 300, [10, 0, 1, i]))
        .collect();
    let up = FakeUpstream::start(table(many), Behaviour::Answer, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&up]));
    let r = resolve(&fwd, &query("big.example.test."))
        .await
        .expect("answer");
    assert_eq!(r.answers.len(), 40);
    let packet = query("big.example.test.").to_vec().expect("encode");
    let mut out = Vec::new();
    assert!(!from_cache(&fwd, &packet, Transport::Udp, &mut out));
    assert!(from_cache(&fwd, &packet, Transport::Tcp, &mut out));
    assert_eq!(Message::from_vec(&out).expect("decodes").answers.len(), 40);
}

#[tokio::test]
async fn queries_it_cannot_forward_are_errors() {
    let up = FakeUpstream::start(www(), Behaviour::Answer, NO_DELAY).await;
    let fwd = Forwarder::new(config(&[&up]));
    // Two questions never reach the forwarder: the one parser answers them FORMERR.
    let mut two = query("a.test.");
    two.add_query(Question::query(name("b.test."), RecordType::A));
    let packet = two.to_vec().expect("encode");
    assert!(matches!(parse_query(&packet), Err(Reject::FormErr)));
    for ty in [RecordType::AXFR, RecordType::IXFR, RecordType::OPT] {
        let mut m = Message::query();
        m.add_query(Question::query(name("example.test."), ty));
        assert!(
            matches!(resolve(&fwd, &m).await, Err(ForwardError::BadQuery(_))),
            "{ty}"
        );
    }
    assert!(!Forwarder::new(ForwardConfig::default()).has_route(&name("a.test.")));
    assert_eq!(up.udp_queries(), 0);
}
