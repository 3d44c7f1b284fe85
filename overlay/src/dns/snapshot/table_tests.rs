//! Tests of the prebuilt-answer table: lookups, patches that share shards, resharding.

use super::*;
use crate::dns::snapshot::{Composed, Cut, Packed};

fn packed(bytes: &[u8], an: u16) -> Packed {
    Packed {
        bytes: bytes.into(),
        meta: Composed {
            an,
            rotations: 1,
            additional_at: bytes.len(),
            ..Composed::default()
        },
    }
}

#[test]
fn finds_every_key_and_nothing_else() {
    let entries: Vec<_> = (0..500u32)
        .map(|i| {
            let key: Box<[u8]> = format!("k{i}").into_bytes().into();
            let variants = if i % 7 == 0 {
                vec![packed(b"a", 1), packed(b"b", 1)]
            } else {
                vec![packed(&i.to_le_bytes(), 2)]
            };
            let cuts = if i % 11 == 0 {
                vec![Cut {
                    zone: 1,
                    at: 0,
                    an: 0,
                }]
            } else {
                Vec::new()
            };
            (key, Prebuilt::new(i as u16, variants, cuts))
        })
        .collect();
    let t = Table::build(entries);
    for i in 0..500u32 {
        match t.get(format!("k{i}").as_bytes()) {
            Some(Found::Fixed { zone, meta, bytes }) => {
                assert!(i % 7 != 0 && i % 11 != 0, "k{i} should vary");
                assert_eq!((zone, meta.an, bytes), (i as u16, 2, &i.to_le_bytes()[..]));
            }
            Some(Found::Varying(p)) => {
                assert_eq!(p.zone, i as u16);
                assert!(i % 7 == 0 || i % 11 == 0, "k{i} should be inline");
                assert_eq!(p.cut_for(|_| false).is_some(), i % 11 == 0);
            }
            None => panic!("k{i} missing"),
        }
    }
    assert!(t.get(b"k500").is_none());
    assert!(t.get(b"").is_none());
    assert!(Table::default().get(b"k1").is_none());
}

fn key(name: &str, qtype: u16) -> Box<[u8]> {
    let mut k = name.as_bytes().to_vec();
    k.extend(qtype.to_be_bytes());
    k.into()
}

/// An entry of name `n{i}` and `qtype` answering `bytes`.
fn entry(i: u32, qtype: u16, bytes: &[u8]) -> (Box<[u8]>, Prebuilt) {
    let pre = Prebuilt::new(0, vec![packed(bytes, 1)], Vec::new());
    (key(&format!("n{i}"), qtype), pre)
}

/// Names `n0`.. each with an A and an AAAA entry.
fn names(range: std::ops::Range<u32>) -> Vec<(Box<[u8]>, Prebuilt)> {
    let bytes = |i: u32, q: u16| (i * 100 + u32::from(q)).to_le_bytes();
    range
        .flat_map(|i| [entry(i, 1, &bytes(i, 1)), entry(i, 28, &bytes(i, 28))])
        .collect()
}

/// What `t` answers at `key`.
fn answer(t: &Table, key: &[u8]) -> Option<Vec<u8>> {
    match t.get(key)? {
        Found::Fixed { bytes, .. } => Some(bytes.to_vec()),
        Found::Varying(p) => Some(p.variants[0].bytes.to_vec()),
    }
}

/// `a` and `b` hold the same keys with the same answers.
fn same(a: &Table, b: &Table) {
    let sorted = |t: &Table| {
        let mut k: Vec<Vec<u8>> = t.keys().into_iter().map(<[u8]>::to_vec).collect();
        k.sort();
        k
    };
    let keys = sorted(a);
    assert_eq!(keys, sorted(b));
    for k in &keys {
        assert_eq!(answer(a, k), answer(b, k), "{k:?}");
    }
}

#[test]
fn a_patch_lays_out_only_the_shards_of_changed_names() {
    let t = Table::build(names(0..2000));
    let n = t.shard_count();
    assert!(n >= 32, "{n} shards for 4,000 keys");
    let dirty: FastSet<Box<[u8]>> = ["n5", "n7", "n5000"]
        .iter()
        .map(|s| s.as_bytes().into())
        .collect();
    let added = vec![entry(5, 1, b"new"), entry(5000, 28, b"added")];
    let p = t.patched(&dirty, added.clone());
    let mut expected: Vec<_> = names(0..2000)
        .into_iter()
        .filter(|(k, _)| !dirty.contains(&k[..k.len() - 2]))
        .collect();
    expected.extend(added);
    same(&p, &Table::build(expected));
    assert_eq!(answer(&p, &key("n5", 1)).as_deref(), Some(&b"new"[..]));
    assert_eq!(answer(&p, &key("n5", 28)), None, "n5's other type left out");
    let shared = (0..n)
        .filter(|i| Arc::ptr_eq(&t.shards[*i], &p.shards[*i]))
        .count();
    assert!(shared >= n - 3, "only {shared} of {n} shards shared");
}

#[test]
fn a_table_that_outgrows_its_shards_is_laid_out_again() {
    let small = Table::build(names(0..10));
    assert_eq!(small.shard_count(), 1);
    let grown: Vec<_> = names(0..3000);
    let dirty = (0..3000)
        .map(|i| format!("n{i}").into_bytes().into())
        .collect();
    let big = small.patched(&dirty, grown.clone());
    assert_eq!(big.shard_count(), shards_for(6000));
    same(&big, &Table::build(grown));
    let emptied = big.patched(&dirty, Vec::new());
    assert!(emptied.keys().is_empty());
    assert_eq!(emptied.shard_count(), 1, "shrunk");
    assert!(emptied.get(&key("n1", 1)).is_none());
    assert!(Table::default()
        .patched(&dirty, names(0..1))
        .get(&key("n0", 1))
        .is_some());
}
