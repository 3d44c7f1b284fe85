//! The coordinator's service operations over the [`Store`]: create, update, list, inspect and
//! remove services, each reported with its instances (the endpoints naming it) and their health.

use std::collections::BTreeMap;

use shibafu_overlay::api::{ApiError, ErrorKind, InstanceInfo, ServiceInfo, ServiceSpec};
use shibafu_overlay::model::{answered, port_name_in, Endpoint, Health, Service, ServiceError};
use shibafu_overlay::store::keys::{Key, Prefix};
use shibafu_overlay::store::{Compare, Store, StoreError, StoreExt, TxnOp};
use tracing::info;

use crate::cluster::{backoff, get_network, store_error, MAX_ATTEMPTS};

/// Where port names come from when a service does not give one.
const ETC_SERVICES: &str = "/etc/services";

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(e.to_string())
}

fn key(network: &str, name: &str) -> Key {
    Key::Service {
        network: network.to_string(),
        name: name.to_string(),
    }
}

/// Fills the port name from /etc/services when the service has a port but no name for it.
fn with_port_name(mut service: Service) -> Service {
    if let (Some(port), None) = (service.port, &service.port_name) {
        let text = std::fs::read_to_string(ETC_SERVICES).unwrap_or_default();
        service.port_name = port_name_in(&text, port, service.protocol);
    }
    service
}

/// The service a create request asks for: the defaults changed by `spec`, the port name
/// filled in, validated (whether its network exists is the caller's check).
pub fn service_from_spec(spec: &ServiceSpec) -> Result<Service, ServiceError> {
    let service = with_port_name(spec.apply_to(Service::new(&spec.network, &spec.name))?);
    service.validate()?;
    Ok(service)
}

/// Validates and creates a service on an existing network; a second one of the same name on
/// that network is refused.
pub async fn create_service(store: &dyn Store, spec: &ServiceSpec) -> Result<Service, ApiError> {
    get_network(store, &spec.network).await?;
    let service = service_from_spec(spec).map_err(invalid)?;
    let k = key(&spec.network, &spec.name);
    let put = TxnOp::put_object(&service, None).map_err(store_error)?;
    if !store
        .txn(vec![Compare::absent(&k)], vec![put])
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::new(
            ErrorKind::Duplicate,
            format!(
                "service {:?} already exists on network {:?}; change it with `shibafu service update`",
                spec.name, spec.network
            ),
        ));
    }
    info!(network = %service.network, service = %service.name, "service created");
    Ok(service)
}

/// Changes the fields `spec` sets on an existing service (lost races are retried).
pub async fn update_service(store: &dyn Store, spec: &ServiceSpec) -> Result<Service, ApiError> {
    let k = key(&spec.network, &spec.name);
    for attempt in 0..MAX_ATTEMPTS {
        let (current, revision) = read(store, &spec.network, &spec.name).await?;
        let port_changed = spec.port.is_some_and(|p| Some(p) != current.port);
        let mut next = spec.apply_to(current).map_err(invalid)?;
        if port_changed && spec.port_name.is_none() {
            next.port_name = None;
        }
        let next = with_port_name(next);
        next.validate().map_err(invalid)?;
        let put = TxnOp::put_object(&next, None).map_err(store_error)?;
        let cmp = Compare::mod_revision(&k, revision);
        if store.txn(vec![cmp], vec![put]).await.map_err(store_error)? {
            info!(network = %next.network, service = %next.name, "service updated");
            return Ok(next);
        }
        backoff(attempt).await;
    }
    Err(ApiError::new(
        ErrorKind::Conflict,
        format!(
            "service {:?}: too many concurrent changes; try again",
            spec.name
        ),
    ))
}

async fn read(store: &dyn Store, network: &str, name: &str) -> Result<(Service, i64), ApiError> {
    match store.get_object::<Service>(&key(network, name)).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(ApiError::not_found(format!(
            "no service {name:?} on network {network:?}; see `shibafu service ls`"
        ))),
        Err(StoreError::Malformed { reason, .. }) => Err(ApiError::new(
            ErrorKind::Internal,
            format!("service {name:?} is stored unusable ({reason})"),
        )),
        Err(e) => Err(store_error(e)),
    }
}

/// Removes a service; refused while instances name it.
pub async fn remove_service(
    store: &dyn Store,
    network: &str,
    name: &str,
) -> Result<ServiceInfo, ApiError> {
    let info = get_service(store, network, name).await?;
    if !info.instances.is_empty() {
        let names: Vec<String> = info
            .instances
            .iter()
            .map(|i| format!("{} on {}", i.name, i.node))
            .collect();
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "service {name:?} has {} instance(s) ({}): remove them first",
                names.len(),
                names.join(", ")
            ),
        ));
    }
    store
        .txn(vec![], vec![TxnOp::delete(&key(network, name))])
        .await
        .map_err(store_error)?;
    info!(network, service = name, "service removed");
    Ok(info)
}

/// One service with its instances.
pub async fn get_service(
    store: &dyn Store,
    network: &str,
    name: &str,
) -> Result<ServiceInfo, ApiError> {
    let (service, _) = read(store, network, name).await?;
    let (endpoints, health) =
        instances_and_health(store, Prefix::EndpointsOf(network.into())).await?;
    Ok(info_of(service, &endpoints, &health))
}

/// Every service with its instances, by network and name.
pub async fn list_services(store: &dyn Store) -> Result<Vec<ServiceInfo>, ApiError> {
    let (mut services, _) = store
        .list_objects::<Service>(&Prefix::Services)
        .await
        .map_err(store_error)?;
    services.sort_by(|a, b| (&a.network, &a.name).cmp(&(&b.network, &b.name)));
    let (endpoints, health) = instances_and_health(store, Prefix::Endpoints).await?;
    Ok(services
        .into_iter()
        .map(|s| info_of(s, &endpoints, &health))
        .collect())
}

type HealthIndex = BTreeMap<(String, String), Health>;

async fn instances_and_health(
    store: &dyn Store,
    endpoints: Prefix,
) -> Result<(Vec<Endpoint>, HealthIndex), ApiError> {
    let (eps, _) = store
        .list_objects::<Endpoint>(&endpoints)
        .await
        .map_err(store_error)?;
    let (health, _) = store
        .list_objects::<Health>(&Prefix::Health)
        .await
        .map_err(store_error)?;
    let health = health
        .into_iter()
        .map(|h| ((h.network.clone(), h.endpoint.clone()), h))
        .collect();
    Ok((eps, health))
}

/// The service with its instances, as DNS answers them now.
fn info_of(service: Service, endpoints: &[Endpoint], health: &HealthIndex) -> ServiceInfo {
    let mut mine: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| e.network == service.network && e.service.as_deref() == Some(&service.name))
        .collect();
    mine.sort_by(|a, b| a.name.cmp(&b.name));
    let with_health: Vec<(&Endpoint, Option<&Health>)> = mine
        .iter()
        .map(|e| (*e, health.get(&(e.network.clone(), e.id.clone()))))
        .collect();
    let verdict = answered(&service, &with_health);
    let instances = with_health
        .iter()
        .enumerate()
        .map(|(i, (e, h))| InstanceInfo {
            name: e.name.clone(),
            node: e.node.clone(),
            ipv4: e.ipv4,
            ipv6: e.ipv6,
            port: e.port.or(service.port),
            weight: e.weight,
            checked: e.health.is_some() || service.health.is_some(),
            state: h.map(|h| h.state),
            answered: verdict.is_answered(i),
            checked_ms: h.map(|h| h.checked_ms),
            connections: h.and_then(|h| h.connections),
            output: h.map(|h| h.output.clone()).unwrap_or_default(),
        })
        .collect();
    ServiceInfo { service, instances }
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
