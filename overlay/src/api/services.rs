//! Request and response bodies of the coordinator's service API.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::model::{
    AllUnhealthy, HealthSpec, HealthState, LbPolicy, Protocol, Service, ServiceError,
};

/// Body of `POST /v1/services` (create) and `PUT /v1/services/{network}/{name}` (update): the
/// fields to set. On create absent fields take the defaults; on update they keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Network name.
    pub network: String,
    /// Service name.
    pub name: String,
    /// Load-balancing policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb: Option<LbPolicy>,
    /// Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Name of the port in SRV; defaults to its name in /etc/services, else `port<N>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Transport of the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// What the name answers when no instance is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_unhealthy: Option<AllUnhealthy>,
    /// The health check of its instances: a new one when it names a probe, else changes to the
    /// current one.
    #[serde(default, skip_serializing_if = "HealthSpec::is_empty")]
    pub health: HealthSpec,
}

impl ServiceSpec {
    /// `service` with the fields this spec sets replaced; refused when the health fields do not
    /// make a valid check.
    pub fn apply_to(&self, mut service: Service) -> Result<Service, ServiceError> {
        if let Some(lb) = self.lb {
            service.lb = lb;
        }
        if let Some(port) = self.port {
            service.port = Some(port);
        }
        if let Some(name) = &self.port_name {
            service.port_name = Some(name.clone());
        }
        if let Some(p) = self.protocol {
            service.protocol = p;
        }
        if let Some(a) = self.all_unhealthy {
            service.all_unhealthy = a;
        }
        service.health = self.health.apply_to(service.health.as_ref())?;
        Ok(service)
    }
}

/// One instance of a service as the coordinator reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Instance (endpoint) name.
    pub name: String,
    /// Node it runs on.
    pub node: String,
    /// IPv4 address.
    pub ipv4: Ipv4Addr,
    /// IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// Its port (the service port unless it gave its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Weight.
    pub weight: u32,
    /// Whether it has a health check (its own or the service's).
    pub checked: bool,
    /// Its health as its node reported it (`None`: no report yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<HealthState>,
    /// Whether DNS answers it now.
    pub answered: bool,
    /// Unix time in milliseconds of the check behind the last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_ms: Option<u64>,
    /// Established connections to its service port, when counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// What the last reported check said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// A service with its instances (`GET /v1/services`, `GET /v1/services/{network}/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The service as stored.
    #[serde(flatten)]
    pub service: Service,
    /// Its instances, by name.
    pub instances: Vec<InstanceInfo>,
}

impl ServiceInfo {
    /// How many instances DNS answers now.
    pub fn answered(&self) -> usize {
        self.instances.iter().filter(|i| i.answered).count()
    }
}
