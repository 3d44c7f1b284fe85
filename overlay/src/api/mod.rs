//! The shibafu HTTP/JSON APIs as seen by clients: request and response bodies, the shared error
//! body, a small HTTP/1.1 client (TCP, TLS or unix socket), and typed calls to the coordinator.

mod agent;
mod apply;
mod client;
mod cni;
mod connect;
mod coordinator;
mod diag;
mod policies;
mod server;
mod services;
mod target;
mod types;

pub use agent::{
    container_path, Agent, Attach, ContainerInfo, InterfaceInfo, LogChunk, RunContainer,
};
pub use apply::{ApplyAnswer, ApplyRequest, Change, ChangeAction, Document, ObjectKind, Problem};
pub use client::{
    Client, ClientError, RawResponse, UpgradedStream, CONNECT_TIMEOUT, REQUEST_TIMEOUT,
};
pub use cni::{
    valid_container_id, CniAdd, CniAttachment, CniCheck, CniGc, CniRef, CniRemoved, CniTarget,
};
pub use connect::NO_CERTIFICATE;
pub use coordinator::{link_path, policy_path, service_path, Coordinator, LinkNetworks};
pub use diag::{
    ContainerNet, DnsTraceRequest, HostNet, NamespaceNet, NeighbourEntry, ProbeKind, ProbeRequest,
    ProbeResult, RouteEntry, MAX_PROBE_MS,
};
pub use policies::{PolicyInfo, PolicySpec, RuleCounters};
pub use server::json_errors;
pub use services::{InstanceInfo, ServiceInfo, ServiceSpec};
pub use target::Target;
pub use types::{
    encode_segment, network_path, ApiError, CreateNetwork, ErrorKind, Health, NodeInfo, NodeTunnel,
    PeerTunnelInfo, RemovedNetwork, TunnelReport,
};

#[cfg(test)]
#[path = "decode_fuzz_tests.rs"]
mod decode_fuzz_tests;
