//! Record data from hickory's form to the encoder's: names kept apart to be compressed, the rest
//! as canonical bytes.

use hickory_proto::rr::RData;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::names::name_to_wire;
use crate::dns::encode::Rd;

/// Converts hickory record data to the encoder's form.
pub(super) fn convert(rdata: &RData) -> Result<(u16, Rd), String> {
    let ty = u16::from(rdata.record_type());
    let rd = match rdata {
        RData::A(a) => Rd::Raw(Box::new(a.0.octets())),
        RData::AAAA(a) => Rd::Raw(Box::new(a.0.octets())),
        RData::CNAME(n) => Rd::Name(name_to_wire(&n.0)),
        RData::PTR(n) => Rd::Name(name_to_wire(&n.0)),
        RData::NS(n) => Rd::Name(name_to_wire(&n.0)),
        RData::MX(mx) => Rd::Mx(mx.preference, name_to_wire(&mx.exchange)),
        RData::SRV(srv) => {
            let mut head = [0u8; 6];
            head[..2].copy_from_slice(&srv.priority.to_be_bytes());
            head[2..4].copy_from_slice(&srv.weight.to_be_bytes());
            head[4..].copy_from_slice(&srv.port.to_be_bytes());
            Rd::Srv(head, name_to_wire(&srv.target))
        }
        RData::SOA(soa) => {
            let mut tail = [0u8; 20];
            let values = [
                soa.serial,
                soa.refresh as u32,
                soa.retry as u32,
                soa.expire as u32,
                soa.minimum,
            ];
            for (chunk, v) in tail.chunks_exact_mut(4).zip(values) {
                chunk.copy_from_slice(&v.to_be_bytes());
            }
            Rd::Soa(name_to_wire(&soa.mname), name_to_wire(&soa.rname), tail)
        }
        RData::OPT(_) | RData::Update0(_) => return Err("not a record that can be served".into()),
        other => {
            let mut bytes = Vec::new();
            let mut enc = BinEncoder::new(&mut bytes);
            enc.set_canonical_form(true);
            other.emit(&mut enc).map_err(|e| e.to_string())?;
            Rd::Raw(bytes.into_boxed_slice())
        }
    };
    Ok((ty, rd))
}
