//! Views: which zones each requester may see, as one bit per zone; built from a builder's
//! views, or revised from the previous snapshot's at the clients a change touched.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::builder::wire_of;
use super::sharded::ShardedMap;
use super::{DefaultView, SnapshotBuilder};
use crate::dns::hash::FastMap;
use crate::dns::DnsError;

/// Which zones each requester may see.
#[derive(Debug, PartialEq)]
pub(crate) struct Views {
    clients: ShardedMap<IpAddr, Arc<[u64]>>,
    default_all: bool,
}

impl Views {
    /// Whether `client` may see zone `zone`.
    pub(super) fn visible(&self, client: IpAddr, zone: u16) -> bool {
        match self.clients.get(&client.to_canonical()) {
            Some(bits) => bits
                .get(usize::from(zone / 64))
                .is_some_and(|w| w & (1u64 << (zone % 64)) != 0),
            None => self.default_all,
        }
    }
}

impl SnapshotBuilder {
    /// Which zones each client may see (`None`: everyone sees every zone), for the zones of
    /// `zone_ids` (`zones` of them).
    pub(super) fn build_views(
        &self,
        zone_ids: &FastMap<Box<[u8]>, u16>,
        zones: usize,
    ) -> Result<Option<Arc<Views>>, DnsError> {
        if self.views.is_empty() && self.default_view == DefaultView::AllZones {
            return Ok(None);
        }
        let mut clients = ShardedMap::default();
        self.add_views(&mut clients, zone_ids, zones)?;
        Ok(Some(Arc::new(Views {
            clients,
            default_all: self.default_view == DefaultView::AllZones,
        })))
    }

    /// `previous` with the views of the clients [`Self::revise_views`] named made from this
    /// builder's (shared as it is when none was named); `None` when that leaves no view at
    /// all, which a build would not express as views.
    pub(super) fn revised_views(
        &self,
        previous: &Arc<Views>,
        zone_ids: &FastMap<Box<[u8]>, u16>,
        zones: usize,
    ) -> Result<Option<Arc<Views>>, DnsError> {
        let revised = self.revised.iter().flatten();
        if revised.clone().next().is_none() && self.views.is_empty() {
            return Ok(Some(Arc::clone(previous)));
        }
        let mut clients = previous.clients.clone();
        for client in revised {
            clients.remove(client);
        }
        self.add_views(&mut clients, zone_ids, zones)?;
        if clients.is_empty() && previous.default_all {
            return Ok(None);
        }
        Ok(Some(Arc::new(Views {
            clients,
            default_all: previous.default_all,
        })))
    }

    /// Adds this builder's views to `clients` (a client named twice sees both lists).
    fn add_views(
        &self,
        clients: &mut ShardedMap<IpAddr, Arc<[u64]>>,
        zone_ids: &FastMap<Box<[u8]>, u16>,
        zones: usize,
    ) -> Result<(), DnsError> {
        let words = zones.div_ceil(64).max(1);
        // The bits of each distinct zone list (lists are shared, so most clients hit).
        let mut lists: BTreeMap<*const [String], Arc<[u64]>> = BTreeMap::new();
        for (client, zones) in &self.views {
            let list = match lists.get(&Arc::as_ptr(zones)) {
                Some(list) => list,
                None => {
                    let mut bits = vec![0u64; words];
                    for zone in zones.iter() {
                        let id = wire_of(zone)
                            .ok()
                            .and_then(|w| zone_ids.get(&w).copied())
                            .ok_or_else(|| DnsError::UnknownZone(zone.clone()))?;
                        bits[usize::from(id / 64)] |= 1u64 << (id % 64);
                    }
                    lists.entry(Arc::as_ptr(zones)).or_insert(bits.into())
                }
            };
            match clients.get_mut(client) {
                Some(bits) => {
                    let merged: Arc<[u64]> =
                        bits.iter().zip(list.iter()).map(|(b, l)| b | l).collect();
                    *bits = merged;
                }
                None => clients.insert(*client, Arc::clone(list)),
            }
        }
        Ok(())
    }
}
