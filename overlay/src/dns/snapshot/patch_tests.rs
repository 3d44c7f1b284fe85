//! A patched snapshot must equal the snapshot built whole from the same records: same nodes,
//! same prebuilt answers, byte for byte. Random record sets over three zones (CNAME chains
//! across zones, SRV and MX targets, empty non-terminals coming and going, orders, notes,
//! views) are changed a few names at a time and both ways compared.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData};

use super::super::table::Found;
use super::super::{AnswerOrder, Snapshot};
use crate::dns::tests::Rng;
use crate::dns::SnapshotBuilder;

const ZONES: [&str; 3] = ["a.test.", "b.test.", "0.0.10.in-addr.arpa."];
const CLIENTS: [&str; 3] = ["10.0.0.1", "10.0.0.2", "fd00::3"];

/// What the test puts at one name.
#[derive(Debug, Clone, PartialEq)]
struct Content {
    records: Vec<(u32, RData)>,
    order: Option<AnswerOrder>,
    note: Option<String>,
}

/// A record set: contents by owner, and the zones each client sees (none: no views).
#[derive(Debug, Clone, Default)]
struct World {
    owners: BTreeMap<String, Content>,
    views: Vec<(IpAddr, Vec<&'static str>)>,
}

/// Every name the generator may fill.
fn pool() -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..10 {
        names.push(format!("h{i}.a.test."));
    }
    for i in 0..3 {
        names.push(format!("x.d{i}.a.test."));
        names.push(format!("y.x.d{i}.a.test."));
        names.push(format!("d{i}.a.test."));
        names.push(format!("_http._tcp.s{i}.a.test."));
        names.push(format!("k{i}.b.test."));
    }
    names.push("m.a.test.".into());
    for i in 1..8 {
        names.push(format!("{i}.0.0.10.in-addr.arpa."));
    }
    names
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

/// Random content for `owner`: a CNAME alone, or addresses, SRV, MX, PTR and TXT as fits.
fn content(rng: &mut Rng, owner: &str, pool: &[String]) -> Content {
    let target = |rng: &mut Rng| name(&pool[rng.below(pool.len())]);
    let mut records = Vec::new();
    if rng.below(5) == 0 {
        records.push((5, RData::CNAME(CNAME(target(rng)))));
    } else if owner.starts_with("_http") {
        for _ in 0..=rng.below(3) {
            let srv = SRV::new(10, rng.below(3) as u16, 80, target(rng));
            records.push((5, RData::SRV(srv)));
        }
    } else if owner.starts_with("m.") {
        records.push((5, RData::MX(MX::new(10, target(rng)))));
    } else if owner.ends_with("arpa.") {
        records.push((5, RData::PTR(PTR(target(rng)))));
    } else {
        for _ in 0..=rng.below(3) {
            let ip = Ipv4Addr::new(10, 0, 0, rng.below(8) as u8 + 1);
            records.push((5 + rng.below(2) as u32, RData::A(A(ip))));
        }
        if rng.below(3) == 0 {
            records.push((5, RData::AAAA(AAAA("fd00::1".parse().expect("v6")))));
        }
        if rng.below(4) == 0 {
            records.push((5, RData::TXT(TXT::new(vec![format!("t{}", rng.below(9))]))));
        }
    }
    let order = match rng.below(4) {
        0 => Some(AnswerOrder::RoundRobin),
        1 => Some(AnswerOrder::OnePerAnswer(vec![0, 1, 1])),
        _ => None,
    };
    let note = (rng.below(5) == 0).then(|| format!("note {}", rng.below(3)));
    Content {
        records,
        order,
        note,
    }
}

fn views(rng: &mut Rng) -> Vec<(IpAddr, Vec<&'static str>)> {
    if rng.below(3) == 0 {
        return Vec::new();
    }
    CLIENTS
        .iter()
        .map(|c| {
            let zones = ZONES
                .iter()
                .copied()
                .filter(|_| rng.below(2) == 0)
                .collect();
            (c.parse().expect("client"), zones)
        })
        .collect()
}

/// A builder of `world`'s zones and views, with the contents of every owner or of `only`.
fn builder(world: &World, only: Option<&BTreeSet<String>>) -> SnapshotBuilder {
    let mut b = SnapshotBuilder::new();
    for z in ZONES {
        b.zone(z);
    }
    for (owner, c) in &world.owners {
        if only.is_some_and(|o| !o.contains(owner)) {
            continue;
        }
        for (ttl, rd) in &c.records {
            b.record(owner, *ttl, rd.clone());
        }
        if let Some(order) = &c.order {
            b.order(owner, order.clone());
        }
        if let Some(note) = &c.note {
            b.note(owner, note);
        }
    }
    for (client, zones) in &world.views {
        b.view(*client, zones);
    }
    b
}

fn same(a: &Option<Found<'_>>, b: &Option<Found<'_>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (
            Some(Found::Fixed { zone, meta, bytes }),
            Some(Found::Fixed {
                zone: z,
                meta: m,
                bytes: b,
            }),
        ) => (zone, meta, bytes) == (z, m, b),
        (Some(Found::Varying(p)), Some(Found::Varying(q))) => {
            p.zone == q.zone
                && p.variants.len() == q.variants.len()
                && p.variants
                    .iter()
                    .zip(q.variants.iter())
                    .all(|(x, y)| x.bytes == y.bytes && x.meta == y.meta)
                && p.cuts == q.cuts
                && p.schedule == q.schedule
                && p.note == q.note
        }
        _ => false,
    }
}

/// `patched` holds exactly the nodes and prebuilt answers of `whole`.
fn assert_equal(patched: &Snapshot, whole: &Snapshot, seed: u64, step: usize) {
    let at = format!("seed {seed}, step {step}");
    let names = |s: &Snapshot| {
        s.nodes
            .iter()
            .map(|(name, _)| name.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(names(patched), names(whole), "{at}: the names differ");
    for (name, node) in whole.nodes.iter() {
        assert!(
            patched.nodes.get(name) == Some(node),
            "{at}: node {name:?} differs"
        );
    }
    let keys = |s: &Snapshot| -> BTreeSet<Vec<u8>> {
        s.prebuilt.keys().into_iter().map(<[u8]>::to_vec).collect()
    };
    assert_eq!(keys(patched), keys(whole), "{at}: the prebuilt keys differ");
    for key in keys(whole) {
        let (p, w) = (patched.prebuilt.get(&key), whole.prebuilt.get(&key));
        assert!(same(&p, &w), "{at}: the answer of {key:?} differs");
    }
    assert!(patched.views == whole.views, "{at}: the views differ");
}

#[test]
fn a_patched_snapshot_equals_the_one_built_whole() {
    let pool = pool();
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut world = World {
            views: views(&mut rng),
            ..World::default()
        };
        for owner in &pool {
            if rng.below(2) == 0 {
                world
                    .owners
                    .insert(owner.clone(), content(&mut rng, owner, &pool));
            }
        }
        let mut previous = builder(&world, None).build().expect("build");
        for step in 0..12 {
            let mut next = world.clone();
            let mut changed = BTreeSet::new();
            for _ in 0..=rng.below(3) {
                let owner = &pool[rng.below(pool.len())];
                if rng.below(3) == 0 {
                    next.owners.remove(owner);
                } else {
                    next.owners
                        .insert(owner.clone(), content(&mut rng, owner, &pool));
                }
                changed.insert(owner.clone());
            }
            if rng.below(6) == 0 {
                next.views = views(&mut rng);
            }
            let whole = builder(&next, None).build().expect("whole");
            let patched = builder(&next, Some(&changed))
                .build_over(&previous, changed.iter().map(String::as_str))
                .expect("patch");
            let views_flipped = world.views.is_empty() != next.views.is_empty();
            let Some(patched) = patched else {
                assert!(views_flipped, "seed {seed}, step {step}: no patch");
                previous = whole;
                world = next;
                continue;
            };
            assert!(
                !views_flipped,
                "seed {seed}, step {step}: views came or went"
            );
            assert_equal(&patched, &whole, seed, step);
            assert!(patched.names_encoded() < whole.names_encoded() || whole.name_count() < 12);
            previous = patched;
            world = next;
        }
    }
}

#[test]
fn a_patch_re_encodes_only_the_changed_names_and_their_readers() {
    let mut world = World::default();
    for i in 0..200 {
        let owner = format!("h{i}.a.test.");
        let ip = Ipv4Addr::new(10, 0, 0, (i % 250) as u8);
        let records = vec![(5, RData::A(A(ip)))];
        world.owners.insert(
            owner,
            Content {
                records,
                order: None,
                note: None,
            },
        );
    }
    let cname = Content {
        records: vec![(5, RData::CNAME(CNAME(name("new.a.test."))))],
        order: None,
        note: None,
    };
    world.owners.insert("alias.b.test.".into(), cname);
    let previous = builder(&world, None).build().expect("build");
    assert_eq!(previous.names_encoded(), previous.name_count());
    let mut next = world.clone();
    let records = vec![(5, RData::A(A(Ipv4Addr::new(10, 0, 1, 1))))];
    next.owners.insert(
        "new.a.test.".into(),
        Content {
            records,
            order: None,
            note: None,
        },
    );
    next.owners.remove("h7.a.test.");
    let changed = BTreeSet::from(["new.a.test.".to_string(), "h7.a.test.".to_string()]);
    let patched = builder(&next, Some(&changed))
        .build_over(&previous, changed.iter().map(String::as_str))
        .expect("patch")
        .expect("a patch");
    assert_eq!(
        patched.names_encoded(),
        3,
        "the new name, the removed one and the CNAME reading the new one"
    );
    assert_equal(
        &patched,
        &builder(&next, None).build().expect("whole"),
        0,
        0,
    );
    assert_ne!(patched.generation(), previous.generation());
}

#[test]
fn what_a_patch_cannot_say_asks_for_a_whole_build() {
    let mut world = World::default();
    let records = vec![(5, RData::A(A(Ipv4Addr::new(10, 0, 0, 1))))];
    world.owners.insert(
        "h1.a.test.".into(),
        Content {
            records,
            order: None,
            note: None,
        },
    );
    let previous = builder(&world, None).build().expect("build");
    let apex = builder(&world, None)
        .build_over(&previous, ["a.test."])
        .expect("valid");
    assert!(apex.is_none(), "an apex holds the SOA and NS");
    let mut other_zones = builder(&world, None);
    other_zones.zone("c.test.");
    let grown = other_zones
        .build_over(&previous, ["h1.a.test."])
        .expect("valid");
    assert!(grown.is_none(), "zones came");
    let mut viewed = builder(&world, None);
    viewed.view("10.0.0.1".parse().expect("ip"), &["a.test."]);
    let views = viewed.build_over(&previous, ["h1.a.test."]).expect("valid");
    assert!(views.is_none(), "views came");
    let bad = builder(&world, None).build_over(&previous, ["bad..name."]);
    assert!(bad.is_err(), "a bad owner name is an error");
}
