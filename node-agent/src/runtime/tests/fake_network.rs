//! A NetworkActor stand-in: a book in memory, [`LocalChanged`] to subscribers before every
//! answer (as the real one does), a log of the requests, and detaches that can be made to hang.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use shibafu_overlay::model::{Endpoint, Network};

use crate::messages::{LocalChanged, SubscribeLocal};
use crate::network_actor::AttachError;
use crate::network_actor::{AttachWorkload, DetachWorkload};
use crate::registry::book::{Entry, Iface};
use crate::registry::LocalWorkloads;

/// The requests the fake saw, as `attach NAME` / `detach NAME`.
#[derive(Clone, Default)]
pub struct Requests(Arc<Mutex<Vec<String>>>);

impl Requests {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }

    fn push(&self, r: String) {
        self.0.lock().expect("lock").push(r);
    }
}

pub struct FakeNetwork {
    book: LocalWorkloads,
    subscribers: Vec<Recipient<LocalChanged>>,
    requests: Requests,
    /// Detaches never answer (a NetworkActor stuck behind a long resync).
    hang_detach: bool,
}

impl FakeNetwork {
    pub fn new(requests: Requests) -> FakeNetwork {
        FakeNetwork {
            book: LocalWorkloads::new(),
            subscribers: Vec::new(),
            requests,
            hang_detach: false,
        }
    }

    pub fn hanging_detach(mut self) -> FakeNetwork {
        self.hang_detach = true;
        self
    }

    /// A workload the book already has (an earlier agent attached it).
    pub fn with(mut self, name: &str, container: bool) -> FakeNetwork {
        self.book
            .insert(name.into(), entry(name, container, &["backend".into()]));
        self
    }

    fn publish(&self) {
        let snapshot = Arc::new(self.book.clone());
        for s in &self.subscribers {
            s.do_send(LocalChanged(snapshot.clone()));
        }
    }
}

pub fn entry(name: &str, container: bool, networks: &[String]) -> Entry {
    let interfaces = networks
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ipv4 = std::net::Ipv4Addr::new(172, 22, 0, 2 + u8::try_from(i).expect("few"));
            Iface {
                ifname: format!("eth{i}"),
                endpoint: Endpoint::new(n, name, "node1", ipv4),
            }
        })
        .collect();
    Entry {
        name: name.into(),
        netns: format!("/fake/netns/{name}").into(),
        container,
        interfaces,
        cni: None,
    }
}

impl Actor for FakeNetwork {
    type Context = Context<Self>;
}

impl Handler<AttachWorkload> for FakeNetwork {
    type Result = Result<(Entry, Vec<Network>), AttachError>;

    fn handle(&mut self, msg: AttachWorkload, _: &mut Context<Self>) -> Self::Result {
        let req = msg.0;
        self.requests.push(format!("attach {}", req.name));
        if let Some(n) = req.networks.iter().find(|n| n.as_str() == "nope") {
            return Err(AttachError::UnknownNetwork(n.clone()));
        }
        let e = entry(&req.name, req.container, &req.networks);
        self.book.insert(req.name.clone(), e.clone());
        self.publish();
        let nets = req
            .networks
            .iter()
            .map(|n| Network::new(n, "172.22.0.0/24".parse().expect("subnet"), 4096))
            .collect();
        Ok((e, nets))
    }
}

impl Handler<DetachWorkload> for FakeNetwork {
    type Result = ResponseFuture<Result<Entry, AttachError>>;

    fn handle(&mut self, msg: DetachWorkload, _: &mut Context<Self>) -> Self::Result {
        self.requests.push(format!("detach {}", msg.name));
        if self.hang_detach {
            return Box::pin(std::future::pending());
        }
        let gone = self.book.remove(&msg.name);
        self.publish();
        Box::pin(std::future::ready(
            gone.ok_or(AttachError::UnknownWorkload(msg.name)),
        ))
    }
}

impl Handler<SubscribeLocal> for FakeNetwork {
    type Result = ();

    fn handle(&mut self, msg: SubscribeLocal, _: &mut Context<Self>) {
        msg.0.do_send(LocalChanged(Arc::new(self.book.clone())));
        self.subscribers.push(msg.0);
    }
}
