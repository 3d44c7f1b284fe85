//! The UDP loop: one OS thread per socket, recvmmsg/sendmmsg in batches of 64, answers written
//! into buffers reused from batch to batch (no allocation for local names); a batch's answers
//! of one size to one requester leave in one segmented send ([`super::batch`]).

use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::answer::{respond_prepared, truncate_for_link, Outcome, Prepared, Reply, Transport};
use super::batch::{peer_addr, Batch, BATCH};
use super::metrics::{Tally, ZoneCounts};
use super::server::Shared;
use super::wire::{name_to_string, Query};
use super::Snapshot;

/// How many queries ahead the table slot, then the answer entry, are prefetched: far enough
/// for a miss to land while earlier queries are answered, near enough not to exhaust the CPU's
/// outstanding-miss buffers.
const SLOT_AHEAD: usize = 6;
const ENTRY_AHEAD: usize = 3;
/// How often zone counters reach the shared metrics.
const ZONE_FLUSH: Duration = Duration::from_secs(1);

/// Zone counts of the snapshot in use, flushed by name when it changes or every second.
struct ZoneTally {
    held: Option<Arc<Snapshot>>,
    counts: Vec<ZoneCounts>,
    flushed: Instant,
}

impl ZoneTally {
    fn track(&mut self, shared: &Shared, snap: &Arc<Snapshot>) {
        if self.held.as_ref().is_some_and(|h| Arc::ptr_eq(h, snap)) {
            return;
        }
        self.flush(shared);
        self.counts = vec![ZoneCounts::default(); snap.zones.len()];
        self.held = Some(Arc::clone(snap));
    }

    fn count(&mut self, r: &Reply) {
        if let Some(c) = r.zone.and_then(|z| self.counts.get_mut(usize::from(z))) {
            c.count(r);
        }
    }

    fn flush(&mut self, shared: &Shared) {
        self.flushed = Instant::now();
        let Some(snap) = &self.held else { return };
        let names = snap.zones.iter().map(|z| z.name.as_str());
        shared
            .metrics
            .add_zones(names.zip(self.counts.iter().copied()));
        self.counts
            .iter_mut()
            .for_each(|c| *c = ZoneCounts::default());
    }
}

/// Serves `socket` until `stop` is set (checked at least every read timeout).
pub(crate) fn serve(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    rt: Handle,
) {
    let fd = socket.as_raw_fd();
    let mut b = Batch::new(fd);
    let mut zones = ZoneTally {
        held: None,
        counts: Vec::new(),
        flushed: Instant::now(),
    };
    let mut last_error: Option<Instant> = None;
    let mut prepared = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        let n = match b.receive(fd) {
            Ok(n) => n,
            Err(e) => {
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "DNS UDP receive failed");
                    last_error = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(10));
                0
            }
        };
        if n > 0 {
            let start = Instant::now();
            let mut tally = Tally {
                queries: n as u64,
                ..Tally::default()
            };
            let snap = shared.snapshot.load();
            zones.track(&shared, &snap);
            prepared.clear();
            for i in 0..n {
                prepared.push(Prepared::new(&snap, &b.bufs[i][..b.len(i)]));
            }
            prepared
                .iter()
                .take(SLOT_AHEAD)
                .for_each(|p| p.prefetch_slot(&snap));
            prepared
                .iter()
                .take(ENTRY_AHEAD)
                .for_each(|p| p.prefetch_entry(&snap));
            for (i, prep) in prepared.iter().enumerate() {
                if let Some(ahead) = prepared.get(i + SLOT_AHEAD) {
                    ahead.prefetch_slot(&snap);
                }
                if let Some(ahead) = prepared.get(i + ENTRY_AHEAD) {
                    ahead.prefetch_entry(&snap);
                }
                let len = b.len(i);
                tally.qtype(prep.query().map(|q| q.qtype));
                let peer = peer_addr(&b.addrs[i]);
                let packet = &b.bufs[i][..len];
                let out = &mut b.outs[i];
                let reply = match respond_prepared(
                    &snap,
                    packet,
                    prep,
                    peer.ip(),
                    Transport::Udp,
                    &shared.answer_cfg,
                    out,
                ) {
                    Outcome::Reply(r) => {
                        zones.count(&r);
                        Some(r)
                    }
                    Outcome::Drop => {
                        tally.dropped += 1;
                        None
                    }
                    Outcome::Forward => {
                        tally.forwarded += 1;
                        let q = prep.query();
                        q.and_then(|q| shared.forward_udp(packet, q, peer, &socket, out, &rt))
                    }
                };
                if let Some(r) = reply {
                    tally.reply(&r);
                    if shared.config.query_log {
                        log_query(prep.query(), peer.ip(), &r, "udp");
                    }
                    b.queue(i, peer);
                }
            }
            drop(snap);
            tally.coalesced = b.send(fd, |i, packet, out| {
                let Some(q) = prepared[i].query() else {
                    return false;
                };
                truncate_for_link(packet, q, &shared.answer_cfg, out);
                tally.truncated += 1;
                tracing::debug!(
                    name = %name_to_string(q.name()),
                    "answer larger than the link's MTU: sent truncated"
                );
                true
            });
            tally.latency(start.elapsed(), n as u64);
            shared.metrics.add_udp(&tally);
        }
        if zones.flushed.elapsed() >= ZONE_FLUSH {
            zones.flush(&shared);
        }
    }
    zones.flush(&shared);
}

/// One structured log line per query (only with query logging on); `q` is the query as parsed
/// for answering, None when the packet was not one.
pub(crate) fn log_query(q: Option<&Query>, client: IpAddr, r: &Reply, transport: &'static str) {
    let (name, qtype) = q.map_or_else(
        || (String::from("-"), 0),
        |q| (name_to_string(q.name()), q.qtype),
    );
    tracing::info!(
        target: "shibafu::dns::query",
        %client, transport, name, qtype, rcode = r.rcode, answers = r.answers, truncated = r.truncated,
        "query"
    );
}
