//! Prebuilding answers: the sections after the question for every (name, type) worth serving
//! from bytes, composed once per snapshot version of the name.

use super::compose::{compose, Cut};
use super::{AnswerOrder, Node, Packed, Prebuilt, Snapshot};
use crate::dns::encode::Writer;
use crate::dns::wire::{rtype, CLASS_IN, HEADER_LEN};

/// Prebuilt answers by key: the lowercased wire name followed by the big-endian qtype.
pub(super) type Entries = Vec<(Box<[u8]>, Prebuilt)>;

/// Prebuilds into `out` the answers of `name` (whose node is `node`) in `snap`: the types at
/// the name plus A and AAAA (NODATA answers included, glibc asks for both). With views, each
/// answer also keeps where its CNAME chain enters other zones, to be cut per requester.
pub(super) fn prebuild(snap: &Snapshot, name: &[u8], node: &Node, out: &mut Entries) {
    let mut buf = Vec::with_capacity(512);
    let views = snap.views.is_some();
    let mut types: Vec<u16> = node.rrsets.iter().map(|s| s.rtype).collect();
    types.extend([rtype::A, rtype::AAAA]);
    types.sort_unstable();
    types.dedup();
    for qtype in types {
        let mut variants = Vec::new();
        let mut cuts = Vec::new();
        let mut count = 1;
        while variants.len() < count {
            cuts.clear();
            buf.clear();
            buf.resize(HEADER_LEN, 0);
            buf.extend_from_slice(name);
            buf.extend_from_slice(&qtype.to_be_bytes());
            buf.extend_from_slice(&CLASS_IN.to_be_bytes());
            let sections = buf.len();
            let mut w = Writer::new(&mut buf);
            w.mark_name_at(HEADER_LEN, name.len());
            let mut meta = compose(snap, name, qtype, variants.len(), &mut w, |cut| {
                if views {
                    cuts.push(Cut {
                        at: cut.at - sections,
                        ..cut
                    });
                }
                true
            });
            count = meta.rotations;
            meta.additional_at -= sections;
            variants.push(Packed {
                bytes: buf[sections..].into(),
                meta,
            });
        }
        let key = [name, &qtype.to_be_bytes()].concat().into_boxed_slice();
        let schedule = match &node.order {
            AnswerOrder::OnePerAnswer(picks) if variants.len() > 1 => picks.clone(),
            _ => Vec::new(),
        };
        let pre = Prebuilt::new(node.zone, variants, cuts)
            .with_schedule(schedule)
            .with_note(node.note.clone());
        out.push((key, pre));
    }
}
