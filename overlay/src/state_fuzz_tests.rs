//! Property tests: arbitrary values under every key prefix never panic `ClusterState`, are skipped without touching the other keys, and events leave the state equal to a fresh list of the same keys.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::model::{admit, SCHEMA_VERSION};

/// Names that collide often, plus some no valid object has.
const NAMES: [&str; 7] = ["a", "b", "x", "..", "a/b", "a+b", ""];
const SUBNETS: [&str; 6] = [
    "10.1.0.0/24",
    "10.1.0.0/16",
    "10.1.0.128/25",
    "10.2.0.0/24",
    "255.255.255.255/32",
    "0.0.0.0/0",
];

/// A key of every kind the schema has, tracked or not, or one outside it.
fn key() -> impl Strategy<Value = String> {
    let name = || prop::sample::select(&NAMES[..]).prop_map(String::from);
    let cidr = prop::sample::select(&["10.1.0.0/26", "10.1.0.64/26", "bogus", "10.1.0.1/26"][..]);
    prop_oneof![
        name().prop_map(|n| Key::Network(n).to_string()),
        name().prop_map(|n| Key::Node(n).to_string()),
        (name(), cidr).prop_map(|(network, c)| Key::IpamBlock {
            network,
            cidr: c.into()
        }
        .to_string()),
        (name(), name()).prop_map(|(network, id)| Key::Endpoint { network, id }.to_string()),
        (name(), name()).prop_map(|(network, id)| Key::Health { network, id }.to_string()),
        (name(), name()).prop_map(|(network, name)| Key::Service { network, name }.to_string()),
        name().prop_map(|n| Key::Coordinator(n).to_string()),
        name().prop_map(|n| Key::Policy(n).to_string()),
        (name(), name())
            .prop_map(|(policy, node)| Key::PolicyCounters { policy, node }.to_string()),
        (name(), name()).prop_map(|(network, node)| Key::Problem { network, node }.to_string()),
        (name(), name()).prop_map(|(a, b)| Key::Link(a, b).to_string()),
        name().prop_map(|n| Key::Tunnel(n).to_string()),
        name().prop_map(|n| Key::Rotation(n).to_string()),
        name().prop_map(|n| Key::Guard(n).to_string()),
        "/shibafu/v[0-9]/[a-z/]{0,12}",
        ".{0,20}",
    ]
}

/// A value that decodes at `key` when the kind is one built here (`pick` varies it).
fn valid_for(key: &str, pick: usize) -> Option<Vec<u8>> {
    let subnet = SUBNETS[pick % SUBNETS.len()].parse().ok()?;
    let json = match Key::parse(key)? {
        Key::Network(n) => serde_json::to_vec(&Network::new(&n, subnet, [0, 4096, 4097][pick % 3])),
        Key::Node(n) => serde_json::to_vec(&Node {
            schema: SCHEMA_VERSION,
            name: n,
            underlay: "10.0.0.1".parse().ok()?,
            version: "fuzz".into(),
            wg: None,
            started_at: pick as u64,
        }),
        Key::Endpoint { network, id } => {
            let ip = subnet.hosts().next().unwrap_or(subnet.addr());
            serde_json::to_vec(&Endpoint::new(&network, &id, "n1", ip))
        }
        Key::IpamBlock { network, cidr } => serde_json::to_vec(&IpamBlock {
            schema: SCHEMA_VERSION,
            network,
            cidr: cidr.parse().ok()?,
            node: "n1".into(),
        }),
        Key::Link(a, b) => serde_json::to_vec(&Link::new(&a, &b)),
        _ => return None,
    };
    json.ok()
}

/// Garbage, JSON of the wrong shape, a future schema, a valid value of the key or of another.
fn value_for(at: String) -> impl Strategy<Value = (String, Vec<u8>)> {
    let fallback = || b"{\"schema\":1}".to_vec();
    let k = at.clone();
    let valid = (0usize..64).prop_map(move |pick| valid_for(&k, pick).unwrap_or_else(fallback));
    let elsewhere =
        (key(), 0usize..64).prop_map(move |(k, p)| valid_for(&k, p).unwrap_or_else(fallback));
    let k = at.clone();
    let tweaked = (0usize..64, 0u64..4).prop_map(move |(pick, schema)| {
        let Some(mut v) =
            valid_for(&k, pick).and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            return fallback();
        };
        v["schema"] = schema.into();
        serde_json::to_vec(&v).unwrap_or_else(|_| fallback())
    });
    let junk: [&[u8]; 6] = [
        b"{}",
        b"null",
        b"[]",
        b"{\"schema\":1}",
        b"{\"schema\":\"1\"}",
        b"\xff",
    ];
    let value = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::sample::select(junk.to_vec()).prop_map(<[u8]>::to_vec),
        2 => valid,
        1 => elsewhere,
        1 => tweaked,
    ];
    value.prop_map(move |v| (at.clone(), v))
}

fn kv_strategy() -> impl Strategy<Value = (String, Vec<u8>)> {
    key().prop_flat_map(value_for)
}

fn kv(key: &str, value: &[u8], rev: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: value.to_vec(),
        create_revision: rev,
        mod_revision: rev,
        lease: 0,
    }
}

/// Objects under names the strategies never use: they must survive whatever is around them.
fn good() -> Vec<KeyValue> {
    let keys = [
        Key::Network("good".into()),
        Key::Network("good2".into()),
        Key::Node("good".into()),
        Key::Endpoint {
            network: "good".into(),
            id: "e1".into(),
        },
        Key::IpamBlock {
            network: "good".into(),
            cidr: "10.1.0.0/26".into(),
        },
        Key::Link("good".into(), "good2".into()),
    ];
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let key = k.to_string();
            let value = valid_for(&key, 3 * i + 1).expect("valid");
            kv(&key, &value, 1)
        })
        .collect()
}

fn holds_good(s: &ClusterState) -> Result<(), TestCaseError> {
    prop_assert!(s.networks().contains_key("good") && s.networks().contains_key("good2"));
    prop_assert!(s.nodes().contains_key("good"));
    prop_assert_eq!(s.endpoints_of("good").count(), 1);
    let cidr = "10.1.0.0/26"
        .parse()
        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert!(s.blocks().contains_key(&("good".to_string(), cidr)));
    prop_assert!(s.linked("good2", "good"));
    Ok(())
}

/// What an agent does with the networks of a state: admit the usable ones and use them.
fn use_networks(s: &ClusterState) {
    let (ok, _refused) = admit(s.networks().values());
    for n in ok {
        let _ = (n.gateway(), n.gateway6(), n.bridge_name(), n.vxlan_name());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn garbage_in_a_list_is_skipped_and_the_rest_decoded(kvs in prop::collection::vec(kv_strategy(), 0..24)) {
        let mut all = good();
        all.extend(kvs.iter().enumerate().map(|(i, (k, v))| kv(k, v, 2 + i as i64)));
        let s = ClusterState::from_kvs(&all, 99);
        prop_assert_eq!(s.revision(), 99);
        holds_good(&s)?;
        use_networks(&s);
    }

    #[test]
    fn events_leave_the_state_a_fresh_list_would_give(
        ops in prop::collection::vec((kv_strategy(), any::<bool>()), 1..32),
        batch in 1usize..6,
    ) {
        let mut s = ClusterState::from_kvs(&good(), 1);
        let mut held: BTreeMap<String, KeyValue> =
            good().into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        let mut rev = 1;
        for chunk in ops.chunks(batch) {
            let mut events = Vec::new();
            for ((key, value), delete) in chunk {
                rev += 1;
                if *delete {
                    held.remove(key);
                    events.push(WatchEvent::Delete { key: key.clone(), mod_revision: rev });
                } else {
                    let put = kv(key, value, rev);
                    held.insert(key.clone(), put.clone());
                    events.push(WatchEvent::Put(put));
                }
            }
            s.apply(&ClusterChange::Events(events));
            use_networks(&s);
        }
        let kvs: Vec<KeyValue> = held.into_values().collect();
        let fresh = ClusterState::from_kvs(&kvs, rev);
        prop_assert_eq!(&s, &fresh);
        // A re-list after compaction lands on the same state and announces nothing.
        let changes = s.apply(&ClusterChange::Snapshot { kvs, revision: rev });
        prop_assert_eq!(changes, vec![]);
        prop_assert_eq!(&s, &fresh);
    }

    #[test]
    fn garbage_events_never_remove_other_objects(ops in prop::collection::vec(kv_strategy(), 1..32)) {
        let mut s = ClusterState::from_kvs(&good(), 1);
        let events = ops
            .iter()
            .enumerate()
            .map(|(i, (k, v))| WatchEvent::Put(kv(k, v, 2 + i as i64)))
            .collect();
        s.apply(&ClusterChange::Events(events));
        holds_good(&s)?;
    }
}
