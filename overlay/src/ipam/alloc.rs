//! Pure address arithmetic: carving a subnet into blocks and allocating inside owned blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::IpamError;
use crate::model::Network;

/// Prefix length of the blocks a subnet is carved into: /26 (64 addresses, as Calico) for
/// /24 and larger subnets, and a quarter of the subnet for smaller ones, so even a /24 spreads
/// over four nodes and a /29 still yields blocks. A function of the subnet only, so every node
/// carves the same way.
pub fn block_prefix(subnet: Ipv4Net) -> u8 {
    (subnet.prefix_len() + 2).clamp(26, 32)
}

/// The block of `subnet` holding `ip`.
pub fn block_of(subnet: Ipv4Net, ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(ip, block_prefix(subnet))
        .map(|b| b.trunc())
        .unwrap_or(subnet)
}

/// Every block of `subnet` that holds at least one assignable address, in address order.
pub fn candidate_blocks(subnet: Ipv4Net) -> impl Iterator<Item = Ipv4Net> {
    subnet
        .subnets(block_prefix(subnet))
        .into_iter()
        .flatten()
        .filter(move |b| addresses(*b).any(|ip| reserved(subnet, ip).is_none()))
}

/// Every address of a block, including its first and last (which are ordinary addresses of
/// the subnet unless the block sits at the subnet's edge).
fn addresses(block: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(block.network())..=u32::from(block.broadcast())).map(Ipv4Addr::from)
}

/// Why an address of `subnet` can never be assigned, if it cannot.
fn reserved(subnet: Ipv4Net, ip: Ipv4Addr) -> Option<&'static str> {
    if ip == subnet.network() {
        Some("network address")
    } else if u32::from(ip) == u32::from(subnet.network()) + 1 {
        Some("gateway")
    } else if ip == subnet.broadcast() {
        Some("broadcast address")
    } else {
        None
    }
}

/// How many addresses of `block` may be assigned: all but the reserved ones of `subnet` in it.
/// A block is full when it has this many in use (reserved addresses are never in use).
fn assignable(subnet: Ipv4Net, block: Ipv4Net) -> usize {
    let gateway = Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1));
    let mut reserved = [subnet.network(), gateway, subnet.broadcast()];
    reserved.sort();
    // Each counted once: in a /31 the gateway is the broadcast address, in a /32 the network's.
    let first = |i: usize| i == 0 || reserved[i - 1] != reserved[i];
    let inside = (0..3)
        .filter(|&i| first(i) && block.contains(&reserved[i]))
        .count();
    (1usize << (32 - block.prefix_len())) - inside
}

/// Checks that `ip` may be assigned to an endpoint of `network` at all.
pub fn check_address(network: &Network, ip: Ipv4Addr) -> Result<(), IpamError> {
    if !network.subnet.contains(&ip) {
        return Err(IpamError::OutsideSubnet {
            ip,
            network: network.name.clone(),
            subnet: network.subnet,
        });
    }
    match reserved(network.subnet, ip) {
        Some(what) => Err(IpamError::Reserved {
            ip,
            network: network.name.clone(),
            what,
        }),
        None => Ok(()),
    }
}

/// The blocks one node owns in one network, with the addresses in use in each.
#[derive(Debug, Clone)]
pub struct Pool {
    network: String,
    subnet: Ipv4Net,
    blocks: BTreeMap<Ipv4Net, BTreeSet<Ipv4Addr>>,
}

impl Pool {
    /// An empty pool for `network`.
    pub fn new(network: &Network) -> Pool {
        Pool {
            network: network.name.clone(),
            subnet: network.subnet,
            blocks: BTreeMap::new(),
        }
    }

    /// Adds an owned block (no-op if already owned).
    pub fn add_block(&mut self, block: Ipv4Net) {
        self.blocks.entry(block).or_default();
    }

    /// Drops a block, with whatever it had in use; true if it was owned.
    pub fn remove_block(&mut self, block: Ipv4Net) -> bool {
        self.blocks.remove(&block).is_some()
    }

    /// Owned blocks, in address order.
    pub fn blocks(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.blocks.keys().copied()
    }

    /// The owned block holding `ip`.
    pub fn block_containing(&self, ip: Ipv4Addr) -> Option<Ipv4Net> {
        self.blocks.keys().find(|b| b.contains(&ip)).copied()
    }

    /// Owned blocks with no address in use.
    pub fn empty_blocks(&self) -> Vec<Ipv4Net> {
        self.blocks
            .iter()
            .filter(|(_, used)| used.is_empty())
            .map(|(b, _)| *b)
            .collect()
    }

    /// Addresses in use, in address order.
    pub fn used(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.blocks.values().flat_map(|used| used.iter().copied())
    }

    /// Hands out the lowest free address of the owned blocks; `None` when they are full. A full
    /// block is passed over by its count of addresses in use; the first open one is walked
    /// beside its (sorted) used addresses, a step per address, not a lookup.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let subnet = self.subnet;
        let open = |(block, used): &(&Ipv4Net, &mut BTreeSet<Ipv4Addr>)| {
            used.len() < assignable(subnet, **block)
        };
        self.blocks
            .iter_mut()
            .filter(open)
            .find_map(|(block, used)| {
                let mut taken = used.iter().copied().peekable();
                let ip = addresses(*block).find(|ip| {
                    while taken.next_if(|t| t < ip).is_some() {}
                    reserved(subnet, *ip).is_none() && taken.peek() != Some(ip)
                })?;
                used.insert(ip);
                Some(ip)
            })
    }

    /// Takes a specific address; it must lie in an owned block (see [`Pool::block_containing`]).
    pub fn take(&mut self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let reserved_as = reserved(self.subnet, ip);
        let used = self
            .blocks
            .iter_mut()
            .find(|(b, _)| b.contains(&ip))
            .map(|(_, used)| used);
        match (reserved_as, used) {
            (Some(what), _) => Err(IpamError::Reserved {
                ip,
                network: self.network.clone(),
                what,
            }),
            (None, Some(used)) => {
                if used.insert(ip) {
                    Ok(())
                } else {
                    Err(IpamError::AddressTaken {
                        ip,
                        network: self.network.clone(),
                    })
                }
            }
            (None, None) => Err(IpamError::OutsideSubnet {
                ip,
                network: self.network.clone(),
                subnet: self.subnet,
            }),
        }
    }

    /// Returns an address; true if it was in use here.
    pub fn release(&mut self, ip: Ipv4Addr) -> bool {
        self.blocks
            .values_mut()
            .find(|used| used.contains(&ip))
            .is_some_and(|used| used.remove(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::tests::net;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().expect("ipv4")
    }

    fn cidr(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    /// A pool of `n` that owns every block of its subnet.
    fn owning_every_block(n: &Network) -> Pool {
        let mut p = Pool::new(n);
        for b in candidate_blocks(n.subnet) {
            p.add_block(b);
        }
        p
    }

    #[test]
    fn block_sizes_follow_the_subnet() {
        assert_eq!(block_prefix(cidr("10.0.0.0/8")), 26);
        assert_eq!(block_prefix(cidr("10.0.0.0/16")), 26);
        assert_eq!(block_prefix(cidr("172.21.0.0/24")), 26);
        assert_eq!(block_prefix(cidr("172.21.0.0/27")), 29);
        assert_eq!(block_prefix(cidr("172.21.0.0/29")), 31);
        assert_eq!(candidate_blocks(cidr("172.21.0.0/24")).count(), 4);
        assert_eq!(candidate_blocks(cidr("10.1.0.0/16")).count(), 1024);
        let tiny: Vec<Ipv4Net> = candidate_blocks(cidr("172.21.0.0/29")).collect();
        assert_eq!(
            tiny,
            [
                cidr("172.21.0.2/31"),
                cidr("172.21.0.4/31"),
                cidr("172.21.0.6/31")
            ],
            "the block holding only the network address and gateway is never offered"
        );
        assert_eq!(
            block_of(cidr("172.21.0.0/24"), v4("172.21.0.70")),
            cidr("172.21.0.64/26")
        );
    }

    #[test]
    fn addresses_checked() {
        let n = net("f", "172.21.0.0/24", None);
        assert!(check_address(&n, v4("172.21.0.2")).is_ok());
        for (ip, what) in [
            ("172.21.0.0", "network address"),
            ("172.21.0.1", "gateway"),
            ("172.21.0.255", "broadcast address"),
        ] {
            let err = check_address(&n, v4(ip)).expect_err(ip);
            assert!(matches!(err, IpamError::Reserved { what: w, .. } if w == what));
        }
        let err = check_address(&n, v4("172.22.0.2")).expect_err("outside");
        assert!(err.to_string().contains("outside network \"f\""), "{err}");
    }

    #[test]
    fn allocates_skipping_reserved_and_used() {
        let n = net("f", "172.21.0.0/24", None);
        let mut p = Pool::new(&n);
        assert_eq!(p.allocate(), None, "no blocks, no addresses");
        p.add_block(cidr("172.21.0.0/26"));
        assert_eq!(p.allocate(), Some(v4("172.21.0.2")));
        p.take(v4("172.21.0.3")).expect("take");
        assert!(matches!(
            p.take(v4("172.21.0.3")),
            Err(IpamError::AddressTaken { .. })
        ));
        assert!(matches!(
            p.take(v4("172.21.0.1")),
            Err(IpamError::Reserved { .. })
        ));
        assert!(matches!(
            p.take(v4("172.21.0.99")),
            Err(IpamError::OutsideSubnet { .. })
        ));
        assert_eq!(p.allocate(), Some(v4("172.21.0.4")));
        assert!(p.release(v4("172.21.0.2")));
        assert!(!p.release(v4("172.21.0.2")));
        assert_eq!(
            p.allocate(),
            Some(v4("172.21.0.2")),
            "released addresses are reused"
        );
    }

    #[test]
    fn the_lowest_hole_is_found_past_full_blocks_and_runs_of_used_addresses() {
        let n = net("f", "172.21.0.0/24", None);
        let mut p = Pool::new(&n);
        p.add_block(cidr("172.21.0.0/26"));
        p.add_block(cidr("172.21.0.64/26"));
        for i in (2..=63).chain(64..=70).chain(72..=80) {
            if i != 40 {
                p.take(Ipv4Addr::new(172, 21, 0, i)).expect("take");
            }
        }
        assert_eq!(p.allocate(), Some(v4("172.21.0.40")), "the hole in a run");
        assert_eq!(
            p.allocate(),
            Some(v4("172.21.0.71")),
            "the next block's hole"
        );
        assert_eq!(p.allocate(), Some(v4("172.21.0.81")), "past the last used");
    }

    #[test]
    fn a_block_holds_its_addresses_but_the_reserved_ones() {
        let s = cidr("172.21.0.0/24");
        assert_eq!(
            assignable(s, cidr("172.21.0.0/26")),
            62,
            "network and gateway"
        );
        assert_eq!(assignable(s, cidr("172.21.0.64/26")), 64);
        assert_eq!(assignable(s, cidr("172.21.0.192/26")), 63, "broadcast");
        let s = cidr("172.21.0.0/29");
        assert_eq!(assignable(s, cidr("172.21.0.0/31")), 0);
        assert_eq!(assignable(s, cidr("172.21.0.6/31")), 1);
        let s = cidr("172.21.0.0/31");
        assert_eq!(
            assignable(s, cidr("172.21.0.1/32")),
            0,
            "gateway = broadcast"
        );
        let s = cidr("172.21.0.9/32");
        assert_eq!(
            assignable(s, cidr("172.21.0.9/32")),
            0,
            "network = broadcast"
        );
    }

    #[test]
    fn allocation_is_the_lowest_free_address_through_churn() {
        let n = net("f", "172.21.0.0/24", None);
        let mut p = owning_every_block(&n);
        let lowest_free = |p: &Pool| {
            let used: BTreeSet<Ipv4Addr> = p.used().collect();
            (2..=254)
                .map(|i| Ipv4Addr::new(172, 21, 0, i))
                .find(|ip| !used.contains(ip))
        };
        let mut x: u32 = 7;
        for _ in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if (x >> 16) % 3 == 0 {
                let ip = Ipv4Addr::new(172, 21, 0, (x >> 8) as u8);
                p.release(ip);
            } else {
                let want = lowest_free(&p);
                assert_eq!(p.allocate(), want);
            }
        }
        while let Some(ip) = p.allocate() {
            assert!(p.used().any(|u| u == ip));
        }
        assert_eq!(
            p.used().count(),
            253,
            "every address but the three reserved ones"
        );
    }

    #[test]
    fn fills_blocks_exactly() {
        let n = net("f", "172.21.0.0/24", None);
        let mut p = Pool::new(&n);
        p.add_block(cidr("172.21.0.192/26"));
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| p.allocate()).collect();
        assert_eq!(got.len(), 63, "64 addresses minus the broadcast");
        assert_eq!(got.last(), Some(&v4("172.21.0.254")));
        assert!(p.empty_blocks().is_empty());
        for ip in &got {
            assert!(p.release(*ip));
        }
        assert_eq!(p.empty_blocks(), [cidr("172.21.0.192/26")]);
        assert!(p.remove_block(cidr("172.21.0.192/26")));
        assert_eq!(p.blocks().count(), 0);
    }

    #[test]
    fn tiny_network_is_fully_usable() {
        let n = net("t", "172.21.0.0/29", None);
        let mut p = owning_every_block(&n);
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| p.allocate()).collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(172, 21, 0, i)).collect();
        assert_eq!(got, want);
        assert_eq!(p.used().count(), 5);
    }
}
