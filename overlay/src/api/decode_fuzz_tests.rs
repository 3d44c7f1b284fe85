//! Property tests: every request body the APIs decode, fed arbitrary bytes, arbitrary JSON and mutated valid bodies, answers Ok or Err and never panics, and what decodes encodes back to itself.

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{
    ApiError, ApplyRequest, Attach, CniAdd, CniGc, CniTarget, CreateNetwork, DnsTraceRequest,
    Document, LinkNetworks, PolicySpec, ProbeRequest, RunContainer, ServiceSpec,
};

/// Decodes `bytes` as `T`; a value that decodes must survive a round trip unchanged.
fn decode_as<T>(bytes: &[u8]) -> Result<bool, TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(v) = serde_json::from_slice::<T>(bytes) else {
        return Ok(false);
    };
    let again = serde_json::to_vec(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = serde_json::from_slice(&again).map_err(|e| {
        TestCaseError::fail(format!(
            "{}: {v:?} encodes to {} which does not decode: {e}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&again)
        ))
    })?;
    prop_assert_eq!(back, v);
    Ok(true)
}

/// Every body type the coordinator and the agent decode; how many took `bytes`.
fn decode_all(bytes: &[u8]) -> Result<usize, TestCaseError> {
    let took = [
        decode_as::<CreateNetwork>(bytes)?,
        decode_as::<LinkNetworks>(bytes)?,
        decode_as::<ServiceSpec>(bytes)?,
        decode_as::<PolicySpec>(bytes)?,
        decode_as::<ApplyRequest>(bytes)?,
        decode_as::<Document>(bytes)?,
        decode_as::<RunContainer>(bytes)?,
        decode_as::<Attach>(bytes)?,
        decode_as::<CniAdd>(bytes)?,
        decode_as::<CniTarget>(bytes)?,
        decode_as::<CniGc>(bytes)?,
        decode_as::<ProbeRequest>(bytes)?,
        decode_as::<DnsTraceRequest>(bytes)?,
        decode_as::<ApiError>(bytes)?,
    ];
    Ok(took.iter().filter(|t| **t).count())
}

/// One valid body of each type, to mutate.
const SEEDS: [&str; 13] = [
    r#"{"name":"frontend","subnet":"172.21.0.0/24","subnet6":"fd00:21::/64","mtu":1400,"zone":"fe.local","forwarders":["1.1.1.1:53"],"internal":true}"#,
    r#"{"a":"frontend","b":"backend"}"#,
    r#"{"network":"frontend","name":"web","lb":"least-connections","port":80,"protocol":"tcp","health":{"probe":{"kind":"tcp","port":80},"interval_ms":1000,"rise":2,"fall":3}}"#,
    r#"{"name":"db","network":"database","service":"pg","rules":[{"action":"allow","direction":"ingress","peer":{"kind":"network","value":"backend"},"ports":[{"from":5432,"to":5432}],"proto":"tcp"},{"action":"deny","direction":"egress","peer":{"kind":"cidr","value":"10.0.0.0/8"},"proto":"any"}]}"#,
    r#"{"document":{"networks":[{"name":"fe","subnet":"172.21.0.0/24"}],"links":[{"a":"fe","b":"be"}],"services":[{"network":"fe","name":"web"}],"policies":[{"schema":1,"name":"p","network":"fe","rules":[]}]},"dry_run":true,"prune":false}"#,
    r#"{"name":"c1","networks":["frontend","backend"],"ip":"172.21.0.9","aliases":["www"],"service":"web","port":80,"weight":5,"rootfs":"/srv/root","command":["sleep","1"],"env":["A=b"],"cap_add":["NET_ADMIN"],"cap_drop":["ALL"]}"#,
    r#"{"network":"frontend","netns":"/run/netns/x","name":"x","ip":"172.21.0.7","aliases":["y"]}"#,
    r#"{"container_id":"c1","ifname":"eth0","netns":"/proc/1/ns/net","network":"frontend","name":"c1","aliases":["a"],"service":"web","port":80,"weight":3}"#,
    r#"{"container_id":"c1","ifname":"eth0","network":"frontend"}"#,
    r#"{"network":"frontend","valid":[{"container_id":"c1","ifname":"eth0"}]}"#,
    r#"{"kind":"dns","target":"fd00::1","port":53,"timeout_ms":500,"name":"web.fe.local"}"#,
    r#"{"network":"frontend","query":"web.frontend.local","type":"AAAA","client":"172.21.0.2"}"#,
    r#"{"error":"network \"x\" exists","kind":"duplicate","problems":[{"path":"networks/0/subnet","error":"bad"}]}"#,
];

/// Field names of the body types, so random objects sometimes hit real fields.
const FIELDS: [&str; 24] = [
    "name",
    "subnet",
    "subnet6",
    "mtu",
    "zone",
    "forwarders",
    "a",
    "b",
    "network",
    "rules",
    "action",
    "direction",
    "peer",
    "kind",
    "value",
    "ports",
    "proto",
    "document",
    "networks",
    "command",
    "health",
    "probe",
    "schema",
    "valid",
];

/// Arbitrary JSON, biased to the shapes of the bodies.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(&FIELDS[..]).prop_map(Value::from),
        prop::sample::select(
            &[
                "",
                "..",
                "a/b",
                "172.21.0.0/24",
                "10.0.0.0/33",
                "fd00::/64",
                "::",
                "1.1.1.1:53",
                "tcp",
                "any",
                "allow",
                "ingress",
                "network",
                "round_robin",
                "\u{0}",
                "é",
            ][..]
        )
        .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(&FIELDS[..]).prop_map(String::from),
                        ".{0,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A valid body broken by a few byte edits.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<prop::sample::Index>(), any::<u8>(), 0u8..4);
    (
        prop::sample::select(&SEEDS[..]),
        prop::collection::vec(edit, 1..6),
    )
        .prop_map(|(seed, edits)| {
            let mut b = seed.as_bytes().to_vec();
            for (at, byte, op) in edits {
                let i = at.index(b.len().max(1)).min(b.len());
                match op {
                    0 if i < b.len() => b[i] = byte,
                    1 => b.insert(i, byte),
                    2 if i < b.len() => {
                        b.remove(i);
                    }
                    _ => b.truncate(i),
                }
            }
            b
        })
}

#[test]
fn every_seed_decodes_as_its_type() {
    let took = |s: &str| decode_all(s.as_bytes()).expect("round trip");
    for seed in SEEDS {
        assert!(took(seed) >= 1, "seed decodes as nothing: {seed}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        let bytes = serde_json::to_vec(&v).expect("encode");
        decode_all(&bytes)?;
        // The same value wrapped as each body's likeliest container.
        let wrapped = serde_json::json!({"document": {"networks": [v.clone()], "policies": [v.clone()]}, "rules": [v]});
        decode_all(&serde_json::to_vec(&wrapped).expect("encode"))?;
    }

    #[test]
    fn mutated_bodies_never_panic(bytes in mutated()) {
        decode_all(&bytes)?;
    }
}
