//! The block claim protocol over the [`Store`], and the per-node allocator agents hold.
//!
//! A node claims a free block with one transaction (`Compare::Absent` on the block key, value
//! = [`IpamBlock`]) and allocates inside its blocks locally. Blocks that become empty are given
//! back at once (deleted with `Compare::Value`, so only while still ours), so nothing leaks and
//! small networks stay shareable. Blocks of dead nodes are deleted by
//! [`super::reclaim_dead_blocks`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::alloc::{block_of, candidate_blocks, check_address, Pool};
use super::IpamError;
use crate::model::{decode, IpamBlock, Network, SCHEMA_VERSION};
use crate::store::keys::{Key, Prefix};
use crate::store::{Compare, KeyValue, Store, StoreError, TxnOp};

/// Claim attempts before giving up; each lost attempt means another node claimed a block.
const MAX_CLAIM_ATTEMPTS: usize = 64;

/// One node's address allocator for every network; cheap to clone (shared state).
#[derive(Clone)]
pub struct Ipam {
    store: Arc<dyn Store>,
    node: Arc<str>,
    nets: Arc<Mutex<HashMap<String, NetState>>>,
}

/// What this node holds in one network.
struct NetState {
    pool: Pool,
    /// Stored value of each owned block, to delete it only while it is still ours.
    records: BTreeMap<Ipv4Net, Vec<u8>>,
}

/// A block key as listed: its CIDR (from the key) and owner (from the value, if readable).
struct Listed {
    cidr: Ipv4Net,
    owner: Option<String>,
    value: Vec<u8>,
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn block_key(network: &str, cidr: Ipv4Net) -> String {
    Key::IpamBlock {
        network: network.to_string(),
        cidr: cidr.to_string(),
    }
    .to_string()
}

fn parse_block(kv: &KeyValue) -> Option<Listed> {
    let Some(Key::IpamBlock { cidr, .. }) = Key::parse(&kv.key) else {
        return None;
    };
    let cidr: Ipv4Net = cidr.parse().ok()?;
    let owner = decode::<IpamBlock>(&kv.key, &kv.value).ok().map(|b| b.node);
    Some(Listed {
        cidr,
        owner,
        value: kv.value.clone(),
    })
}

impl Ipam {
    /// The allocator of `node`, claiming blocks in `store`.
    pub fn new(store: Arc<dyn Store>, node: impl Into<String>) -> Ipam {
        Ipam {
            store,
            node: Arc::from(node.into()),
            nets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The node this allocator works for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Hands out an address of `network`: `requested` if given (it must be free and not in
    /// another node's block), else the lowest free one, claiming a new block when needed.
    /// After an agent restart call [`Ipam::recover`] first, so addresses in use are known.
    #[tracing::instrument(name = "ipam.allocate", skip_all, fields(network = %network.name, node = %self.node))]
    pub async fn allocate(
        &self,
        network: &Network,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let mut nets = self.nets.lock().await;
        let state = match nets.entry(network.name.clone()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => {
                let mut state = NetState::new(network);
                self.sync_blocks(network, &mut state).await?;
                slot.insert(state)
            }
        };
        match requested {
            Some(ip) => {
                check_address(network, ip)?;
                if state.pool.block_containing(ip).is_none() {
                    self.claim(network, state, Some(ip)).await?;
                }
                state.pool.take(ip)?;
                Ok(ip)
            }
            None => loop {
                if let Some(ip) = state.pool.allocate() {
                    return Ok(ip);
                }
                self.claim(network, state, None).await?;
            },
        }
    }

    /// Gives an address back (idempotent); a block left empty is returned to the network.
    pub async fn release(&self, network: &Network, ip: Ipv4Addr) -> Result<(), IpamError> {
        let mut nets = self.nets.lock().await;
        if let Some(state) = nets.get_mut(&network.name) {
            state.pool.release(ip);
            self.return_empty_blocks(network, state).await;
        }
        Ok(())
    }

    /// Rebuilds this node's view of `network` after a restart from the addresses its endpoints
    /// use: adopts its blocks from the store, re-claims blocks of used addresses when free, and
    /// gives back empty blocks. Every address that can be kept is kept; the first that cannot
    /// (another node owns its block) is reported as an error after the rest is recovered.
    pub async fn recover(&self, network: &Network, used: &[Ipv4Addr]) -> Result<(), IpamError> {
        let mut nets = self.nets.lock().await;
        let mut state = NetState::new(network);
        self.sync_blocks(network, &mut state).await?;
        let mut conflict = None;
        for &ip in used {
            let kept = match state.pool.block_containing(ip) {
                Some(_) => Ok(()),
                None => match check_address(network, ip) {
                    Ok(()) => self.claim(network, &mut state, Some(ip)).await,
                    Err(e) => Err(e),
                },
            };
            match kept.and_then(|()| state.pool.take(ip)) {
                Ok(()) | Err(IpamError::AddressTaken { .. }) => {}
                Err(e @ IpamError::Store(_)) => return Err(e),
                Err(e) => {
                    warn!(network = %network.name, %ip, error = %e, "cannot keep address");
                    conflict.get_or_insert(e);
                }
            }
        }
        self.return_empty_blocks(network, &mut state).await;
        nets.insert(network.name.clone(), state);
        conflict.map_or(Ok(()), Err)
    }

    /// Forgets a removed network locally (its blocks are swept by the coordinator).
    pub async fn forget(&self, network: &str) {
        self.nets.lock().await.remove(network);
    }

    /// Blocks this node holds in a network (as known locally).
    pub async fn blocks(&self, network: &str) -> Vec<Ipv4Net> {
        let nets = self.nets.lock().await;
        nets.get(network)
            .map(|s| s.pool.blocks().collect())
            .unwrap_or_default()
    }

    /// A compare that holds while this node still owns the block of `ip`: add it to the
    /// transaction that writes the endpoint, so an endpoint is never published with an address
    /// from a block this node lost (reclaimed while it was cut off).
    pub async fn owner_compare(&self, network: &str, ip: Ipv4Addr) -> Option<Compare> {
        let nets = self.nets.lock().await;
        let state = nets.get(network)?;
        let block = state.pool.block_containing(ip)?;
        let value = state.records.get(&block)?.clone();
        Some(Compare::Value(block_key(network, block), value))
    }

    /// Lists the network's blocks; adopts the ones this node owns and drops owned ones the
    /// store no longer gives this node.
    async fn sync_blocks(
        &self,
        network: &Network,
        state: &mut NetState,
    ) -> Result<Vec<Listed>, IpamError> {
        let (kvs, _) = self
            .store
            .list(&Prefix::BlocksOf(network.name.clone()).to_string())
            .await?;
        let listed: Vec<Listed> = kvs.iter().filter_map(parse_block).collect();
        let mine: HashMap<Ipv4Net, &Listed> = listed
            .iter()
            .filter(|l| l.owner.as_deref() == Some(&*self.node))
            .map(|l| (l.cidr, l))
            .collect();
        for lost in state
            .pool
            .blocks()
            .filter(|b| !mine.contains_key(b))
            .collect::<Vec<_>>()
        {
            warn!(network = %network.name, block = %lost, "block no longer owned by this node");
            state.pool.remove_block(lost);
            state.records.remove(&lost);
        }
        for (cidr, l) in mine {
            state.pool.add_block(cidr);
            state.records.insert(cidr, l.value.clone());
        }
        Ok(listed)
    }

    /// Claims a block: the one holding `want`, or else the lowest free block of the network.
    #[tracing::instrument(name = "ipam.claim", skip_all, fields(network = %network.name, node = %self.node))]
    async fn claim(
        &self,
        network: &Network,
        state: &mut NetState,
        want: Option<Ipv4Addr>,
    ) -> Result<(), IpamError> {
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            let listed = self.sync_blocks(network, state).await?;
            let free = |b: &Ipv4Net| !listed.iter().any(|l| overlaps(l.cidr, *b));
            let block = match want {
                // Adopted by the sync (an earlier claim whose answer was lost).
                Some(ip) if state.pool.block_containing(ip).is_some() => return Ok(()),
                Some(ip) => {
                    let block = block_of(network.subnet, ip);
                    if let Some(other) = listed.iter().find(|l| overlaps(l.cidr, block)) {
                        return Err(IpamError::OwnedByOtherNode {
                            ip,
                            network: network.name.clone(),
                            block: other.cidr,
                            owner: other.owner.clone().unwrap_or_else(|| "?".into()),
                        });
                    }
                    block
                }
                None => match candidate_blocks(network.subnet).find(free) {
                    Some(b) => b,
                    None => {
                        return Err(IpamError::Exhausted {
                            network: network.name.clone(),
                            subnet: network.subnet,
                        })
                    }
                },
            };
            let record = IpamBlock {
                schema: SCHEMA_VERSION,
                network: network.name.clone(),
                cidr: block,
                node: self.node.to_string(),
            };
            let key = block_key(&network.name, block);
            let value = serde_json::to_vec(&record).map_err(|e| StoreError::Malformed {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            let put = TxnOp::Put {
                key: key.clone(),
                value: value.clone(),
                lease: None,
            };
            if self
                .store
                .txn(vec![Compare::Absent(key)], vec![put])
                .await?
            {
                info!(network = %network.name, %block, node = %self.node, "claimed address block");
                state.pool.add_block(block);
                state.records.insert(block, value);
                return Ok(());
            }
        }
        Err(IpamError::Contention {
            network: network.name.clone(),
            attempts: MAX_CLAIM_ATTEMPTS,
        })
    }

    /// Deletes owned blocks with nothing in use (only while the stored record is still ours).
    /// A failed delete keeps the block; the next release tries again.
    async fn return_empty_blocks(&self, network: &Network, state: &mut NetState) {
        for block in state.pool.empty_blocks() {
            let key = block_key(&network.name, block);
            let Some(value) = state.records.get(&block).cloned() else {
                state.pool.remove_block(block);
                continue;
            };
            let cmp = Compare::Value(key.clone(), value);
            match self.store.txn(vec![cmp], vec![TxnOp::Delete(key)]).await {
                Ok(_) => {
                    state.pool.remove_block(block);
                    state.records.remove(&block);
                }
                Err(e) => {
                    warn!(network = %network.name, %block, error = %e, "cannot return empty block; will retry");
                }
            }
        }
    }
}

impl NetState {
    fn new(network: &Network) -> NetState {
        NetState {
            pool: Pool::new(network),
            records: BTreeMap::new(),
        }
    }
}
