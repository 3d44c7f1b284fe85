use super::*;
use crate::dns::tests::Rng;
use crate::model::Endpoint;
use crate::netlink::simulate;
use crate::plan::tests::{ep, kernel_with};
use crate::plan::tests_support::cluster;
use crate::plan::{plan, ObservedHost};

/// The host part of a simulated kernel, as the mirror keeps it (sorted, no containers).
fn host_part(k: &ObservedHost) -> ObservedHost {
    let mut m = HostMirror::default();
    m.refresh(k.clone());
    m.host().cloned().expect("refreshed")
}

fn apply(k: &mut ObservedHost, ops: &[Op]) {
    for op in ops {
        simulate(k, op).unwrap_or_else(|e| panic!("{op}: {e}"));
    }
}

/// A remote endpoint `i` on `network` (fe or be of the fixture) on node2 or node3.
fn remote(rng: &mut Rng, i: u32) -> Endpoint {
    let (network, prefix) = if rng.below(2) == 0 {
        ("fe", "172.21.0")
    } else {
        ("be", "172.22.0")
    };
    let node = ["node2", "node3"][rng.below(2)];
    let mac = format!("02:00:00:00:{:02x}:{:02x}", 0x40 + i / 200, i % 200);
    ep(
        &format!("r{i}"),
        network,
        node,
        &format!("{prefix}.{}", 20 + i),
        &mac,
    )
}

#[test]
fn planning_against_the_mirror_keeps_it_equal_to_the_kernel() {
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut c = cluster();
        let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
        let first = plan(&c.desired(), &k);
        apply(&mut k, &first);
        let mut mirror = HostMirror::default();
        mirror.refresh(k.clone());
        let fixed = c.endpoints.len();
        for step in 0..15 {
            // Remote endpoints come, go, and move between nodes (their VTEP changes).
            match rng.below(3) {
                0 => {
                    let i = rng.below(150) as u32;
                    c.endpoints.retain(|e| e.id != format!("r{i}"));
                    c.endpoints.push(remote(&mut rng, i));
                }
                1 if c.endpoints.len() > fixed => {
                    let at = fixed + rng.below(c.endpoints.len() - fixed);
                    c.endpoints.remove(at);
                }
                _ => {
                    for e in c.endpoints[fixed..].iter_mut() {
                        if rng.below(4) == 0 {
                            e.node = if e.node == "node2" { "node3" } else { "node2" }.into();
                        }
                    }
                }
            }
            let desired = c.desired();
            let ops = plan(&desired, mirror.host().expect("kept"));
            apply(&mut k, &ops);
            mirror.record(&ops);
            let kept = mirror.host().expect("entry ops keep the mirror");
            assert_eq!(kept, &host_part(&k), "seed {seed}, step {step}: {ops:#?}");
            assert!(
                plan(&desired, &k).is_empty(),
                "seed {seed}, step {step}: the kernel is not where the mirror says"
            );
        }
    }
}

#[test]
fn any_op_but_an_entry_op_forgets_the_host_side() {
    let c = cluster();
    let mut k = kernel_with(&["/run/netns/api", "/run/netns/cache"]);
    let ops = plan(&c.desired(), &k);
    let mut mirror = HostMirror::default();
    mirror.record(&ops);
    assert_eq!(mirror.host(), None, "nothing to record into");
    mirror.refresh(k.clone());
    mirror.record(&ops);
    assert_eq!(mirror.host(), None, "links created: observe again");

    apply(&mut k, &ops);
    mirror.refresh(k.clone());
    assert!(mirror.host().is_some_and(|h| h.containers.is_empty()));
    mirror.record(&[]);
    assert_eq!(mirror.host(), Some(&host_part(&k)), "nothing applied");
    mirror.forget();
    assert_eq!(mirror.host(), None);
}

#[test]
fn a_neighbour_set_again_replaces_its_entry() {
    let mut k = ObservedHost::default();
    let mac = |s: &str| s.parse::<MacAddr>().expect("mac");
    let neigh = |bridge: &str, ip: &str, m: &str| ObservedNeigh {
        bridge: bridge.into(),
        ip: ip.parse().expect("ip"),
        mac: mac(m),
    };
    k.neighbours = vec![
        neigh("sfbr2", "172.21.0.9", "02:00:00:00:00:09"),
        neigh("sfbr1", "172.21.0.9", "02:00:00:00:00:01"),
    ];
    let mut mirror = HostMirror::default();
    mirror.refresh(k);
    mirror.record(&[
        Op::SetNeigh {
            bridge: "sfbr1".into(),
            ip: "172.21.0.9".parse().expect("ip"),
            mac: mac("02:00:00:00:00:02"),
        },
        Op::DelNeigh {
            bridge: "sfbr2".into(),
            ip: "172.21.0.9".parse().expect("ip"),
        },
    ]);
    let kept = mirror.host().expect("kept");
    assert_eq!(
        kept.neighbours,
        vec![neigh("sfbr1", "172.21.0.9", "02:00:00:00:00:02")]
    );
}
