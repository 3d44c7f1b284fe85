//! The coordinator's metrics (`--metrics-listen`): API requests by route and status, the
//! cluster-wide DNS server's counters, and gauges of the cluster state it follows.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use futures::StreamExt;
use shibafu_overlay::dns::DnsServer;
use shibafu_overlay::metrics::{
    ClusterGauges, Collect, CounterMap, Exposition, HistogramMap, DURATION_BUCKETS,
};
use shibafu_overlay::state::ClusterState;
use shibafu_overlay::store::keys::Prefix;
use shibafu_overlay::store::{watch_changes, Store};

/// The `network` label of the cluster-wide DNS server's families: not a network name (those
/// cannot start with `_`), since it answers every network's zone.
pub const CLUSTER_DNS: &str = "_cluster";

/// Every part of the coordinator's metrics.
pub struct CoordinatorMetrics {
    /// Gauges of the cluster state followed.
    pub cluster: ClusterGauges,
    dns: OnceLock<DnsServer>,
    requests: CounterMap<3>,
    durations: HistogramMap<2>,
}

impl Default for CoordinatorMetrics {
    fn default() -> Self {
        CoordinatorMetrics {
            cluster: ClusterGauges::new(None),
            dns: OnceLock::new(),
            requests: CounterMap::default(),
            durations: HistogramMap::new(DURATION_BUCKETS),
        }
    }
}

impl CoordinatorMetrics {
    /// The cluster-wide DNS server, once it serves.
    pub fn set_dns(&self, server: DnsServer) {
        let _ = self.dns.set(server);
    }
}

impl Collect for CoordinatorMetrics {
    fn collect(&self, out: &mut Exposition) {
        self.cluster.collect(out);
        if let Some(server) = self.dns.get() {
            server.collect(CLUSTER_DNS, out);
        }
        self.requests.write(&mut out.counter(
            "shibafu_api_requests_total",
            "Requests to the cluster API by method, route (as declared, e.g. /v1/networks/{name}) and status code.",
            ["method", "route", "code"],
        ));
        self.durations.write(&mut out.histogram(
            "shibafu_api_request_duration_seconds",
            "Time to answer a request to the cluster API, by method and route.",
            ["method", "route"],
        ));
    }
}

/// `router` with every request to a declared route counted and timed in `metrics` (requests
/// to no route are not: their paths are not bounded).
pub fn track_api(router: Router, metrics: Arc<CoordinatorMetrics>) -> Router {
    router.route_layer(axum::middleware::from_fn_with_state(metrics, track))
}

async fn track(
    State(metrics): State<Arc<CoordinatorMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(String::new, |p| p.as_str().to_string());
    let response = next.run(req).await;
    let code = response.status().as_u16().to_string();
    metrics.requests.add([&method, &route, &code], 1);
    metrics
        .durations
        .observe([&method, &route], start.elapsed());
    response
}

/// Follows the cluster in `store` into `gauges` until `stop` completes (when DNS, which
/// follows it anyway, is off).
pub async fn follow(
    store: Arc<dyn Store>,
    metrics: Arc<CoordinatorMetrics>,
    stop: impl Future<Output = ()>,
) {
    let mut changes = watch_changes(store, Prefix::All.to_string(), None);
    let mut state = ClusterState::new();
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            next = changes.next() => next,
            () = &mut stop => return,
        };
        let Some(change) = next else { return };
        state.apply(&change);
        metrics.cluster.publish(Arc::new(state.clone()));
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn api_requests_are_counted_by_declared_route() {
        let metrics = Arc::new(CoordinatorMetrics::default());
        let router = Router::new().route("/v1/networks/{name}", get(|| async { "ok" }));
        let router = track_api(router, metrics.clone());
        for path in ["/v1/networks/a", "/v1/networks/b", "/nothing"] {
            let req = Request::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request");
            router.clone().oneshot(req).await.expect("response");
        }
        let mut out = Exposition::new();
        metrics.collect(&mut out);
        let text = out.render();
        let line = "shibafu_api_requests_total{method=\"GET\",route=\"/v1/networks/{name}\",code=\"200\"} 2";
        assert!(text.lines().any(|l| l == line), "{text}");
        assert!(!text.contains("/nothing"), "{text}");
        assert!(text.contains("shibafu_api_request_duration_seconds_count{method=\"GET\",route=\"/v1/networks/{name}\"} 2"), "{text}");
    }
}
