//! IP address management: exclusive per-node blocks of a network's IPv4 subnet.
//!
//! A network's subnet is carved into blocks ([`block_prefix`]); a node claims whole blocks in
//! the store by transaction ([`Ipam`], claim protocol in `claim`) and hands out addresses from
//! its own blocks locally ([`Pool`], pure). Blocks are exclusive, so no address can be handed out
//! by two nodes; addresses themselves are recorded only in the endpoints that use them. The
//! IPv6 address of an endpoint follows from its IPv4 address ([`ipv6_for`]): no separate v6 pool.

mod alloc;
mod claim;
#[cfg(test)]
mod claim_tests;
mod reclaim;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::model::Network;
use crate::store::StoreError;

pub use alloc::{block_of, block_prefix, candidate_blocks, check_address, Pool};
pub use claim::Ipam;
pub use reclaim::reclaim_dead_blocks;

/// Errors of address management; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The address is not inside the network's subnet.
    #[error(
        "address {ip} is outside network {network:?} ({subnet}): pick an address inside the subnet"
    )]
    OutsideSubnet {
        /// Requested address.
        ip: Ipv4Addr,
        /// Network name.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
    },
    /// The address is the network address, the gateway or the broadcast address.
    #[error(
        "address {ip} is the {what} of network {network:?} and cannot be assigned: pick another"
    )]
    Reserved {
        /// Requested address.
        ip: Ipv4Addr,
        /// Network name.
        network: String,
        /// "network address", "gateway" or "broadcast address".
        what: &'static str,
    },
    /// The address is already assigned on this node.
    #[error("address {ip} is already in use on network {network:?}: pick another or leave it out")]
    AddressTaken {
        /// Requested address.
        ip: Ipv4Addr,
        /// Network name.
        network: String,
    },
    /// The address lies in a block another node owns.
    #[error("address {ip} of network {network:?} lies in block {block} owned by node {owner:?}: request it on that node or pick another address")]
    OwnedByOtherNode {
        /// Requested address.
        ip: Ipv4Addr,
        /// Network name.
        network: String,
        /// The block holding it.
        block: Ipv4Net,
        /// Node owning the block.
        owner: String,
    },
    /// No free address is left for this node.
    #[error("network {network:?} ({subnet}) has no free address left: remove unused containers or use a larger subnet")]
    Exhausted {
        /// Network name.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
    },
    /// Claiming a block kept losing to other nodes.
    #[error("could not claim an address block of network {network:?} after {attempts} attempts (other nodes kept winning): retry")]
    Contention {
        /// Network name.
        network: String,
        /// Attempts made.
        attempts: usize,
    },
    /// The IPv6 subnet has fewer host bits than the IPv4 subnet.
    #[error("network {network:?}: IPv6 subnet {subnet6} is too small to mirror IPv4 subnet {subnet}: use a prefix of /{max_prefix} or shorter")]
    Subnet6TooSmall {
        /// Network name.
        network: String,
        /// IPv4 subnet.
        subnet: Ipv4Net,
        /// IPv6 subnet.
        subnet6: Ipv6Net,
        /// Longest IPv6 prefix that fits.
        max_prefix: u8,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks that the network's IPv6 subnet (if any) can mirror every IPv4 host offset.
pub fn check_subnet6(network: &Network) -> Result<(), IpamError> {
    let Some(s6) = network.subnet6 else {
        return Ok(());
    };
    let host4 = 32 - network.subnet.prefix_len();
    let max_prefix = 128 - host4;
    if s6.prefix_len() > max_prefix {
        return Err(IpamError::Subnet6TooSmall {
            network: network.name.clone(),
            subnet: network.subnet,
            subnet6: s6,
            max_prefix,
        });
    }
    Ok(())
}

/// The IPv6 address of the endpoint holding `ipv4`: the same host offset inside `subnet6`
/// (so the gateways match too). `None` when the network has no IPv6 subnet.
pub fn ipv6_for(network: &Network, ipv4: Ipv4Addr) -> Result<Option<Ipv6Addr>, IpamError> {
    let Some(s6) = network.subnet6 else {
        return Ok(None);
    };
    if !network.subnet.contains(&ipv4) {
        return Err(IpamError::OutsideSubnet {
            ip: ipv4,
            network: network.name.clone(),
            subnet: network.subnet,
        });
    }
    check_subnet6(network)?;
    let offset = u32::from(ipv4) - u32::from(network.subnet.network());
    Ok(Some(Ipv6Addr::from(
        u128::from(s6.network()) + u128::from(offset),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network for IPAM tests.
    pub(crate) fn net(name: &str, subnet: &str, subnet6: Option<&str>) -> Network {
        Network {
            subnet6: subnet6.map(|s| s.parse().expect("subnet6")),
            ..Network::new(name, subnet.parse().expect("subnet"), 4096)
        }
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().expect("ipv4")
    }

    #[test]
    fn ipv6_mirrors_the_host_offset() {
        let n = net("f", "172.21.0.0/24", Some("fd00:21::/64"));
        let v6 = |s: &str| ipv6_for(&n, v4(s)).expect("fits").expect("has v6");
        assert_eq!(v6("172.21.0.1"), n.gateway6().expect("gw6"));
        assert_eq!(
            v6("172.21.0.77"),
            "fd00:21::4d".parse::<Ipv6Addr>().expect("v6")
        );
        assert!(matches!(
            ipv6_for(&n, v4("10.0.0.1")),
            Err(IpamError::OutsideSubnet { .. })
        ));
        let plain = net("p", "172.21.0.0/24", None);
        assert_eq!(ipv6_for(&plain, v4("172.21.0.5")).expect("ok"), None);
    }

    #[test]
    fn ipv6_subnet_must_be_large_enough() {
        let tight = net("t", "172.21.0.0/24", Some("fd00::/120"));
        assert!(check_subnet6(&tight).is_ok());
        let small = net("s", "172.21.0.0/24", Some("fd00::/121"));
        let err = check_subnet6(&small).expect_err("too small");
        assert!(err.to_string().contains("/120 or shorter"), "{err}");
        assert!(ipv6_for(&small, v4("172.21.0.9")).is_err());
    }
}
