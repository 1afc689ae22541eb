//! Prometheus metrics of the agent: Workload API calls, workload attestation, entry sync and the
//! SVIDs the agent holds, all named `signet_agent_*`.

mod calls;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use signet_core::http::{HttpResponse, HttpRoutes};
use signet_core::metrics::{
    METRICS_PATH, grpc_code_label, latency_histogram, metrics_response, seconds_until,
};
use tonic::Code;

use crate::cache::Cache;
use crate::node::Node;

pub use self::calls::RecordCallsLayer;

/// The agent's metric handles, and the node and cache the scrape-time gauges read. Clones share
/// the metrics.
#[derive(Clone, Debug, Default)]
pub struct AgentMetrics {
    inner: Arc<Inner>,
}

/// The attested node and the cache of a serving agent.
#[derive(Clone, Debug)]
pub struct Serving {
    /// The attested node, with the agent's own X509-SVID.
    pub node: Arc<Node>,
    /// The cache the Workload API serves.
    pub cache: Cache,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    workload_api_calls: Family<CallLabels, Counter>,
    workload_api_duration: Family<MethodLabels, Histogram>,
    workload_attestation_duration: Histogram,
    sync_failures: Counter,
    workload_svids_signed: Counter,
    agent_svid_expiry: Gauge<f64, AtomicU64>,
    cached_x509_svids: Gauge,
    last_sync: Gauge,
    serving: Mutex<Option<Serving>>,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
struct MethodLabels {
    method: &'static str,
}

// === impl AgentMetrics ===

impl AgentMetrics {
    /// Sets the node and cache of the agent that now serves the Workload API. The agent counts
    /// as attested and listening from here on.
    pub fn attach(&self, serving: Serving) {
        *self.serving_slot() = Some(serving);
    }

    /// Forgets the node and cache when the Workload API stops.
    pub fn detach(&self) {
        *self.serving_slot() = None;
    }

    /// Returns the node and cache of the serving agent, if it serves.
    pub fn serving(&self) -> Option<Serving> {
        self.serving_slot().clone()
    }

    /// Records one Workload API call: its method, gRPC code and the time until the agent
    /// responded (for a stream, until its first response headers).
    pub fn observe_workload_api_call(&self, method: &'static str, code: Code, elapsed: Duration) {
        let labels = CallLabels {
            method,
            code: grpc_code_label(code),
        };
        self.inner.workload_api_calls.get_or_create(&labels).inc();
        self.inner
            .workload_api_duration
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the time one workload attestation took.
    pub fn observe_workload_attestation(&self, elapsed: Duration) {
        self.inner
            .workload_attestation_duration
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failed entry sync.
    pub fn sync_failed(&self) {
        self.inner.sync_failures.inc();
    }

    /// Counts X509-SVIDs the server signed for workloads.
    pub fn workload_svids_signed(&self, count: usize) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        self.inner.workload_svids_signed.inc_by(count);
    }

    fn serving_slot(&self) -> std::sync::MutexGuard<'_, Option<Serving>> {
        // The slot contains a plain value, so a panic elsewhere cannot leave it inconsistent.
        self.inner
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the gauges that are read from the node and the cache at scrape time.
    fn update_scrape_gauges(&self) {
        let Some(serving) = self.serving() else {
            return;
        };
        let inner = &self.inner;
        let now = SystemTime::now();
        inner
            .agent_svid_expiry
            .set(seconds_until(serving.node.expires_at(), now));
        let snapshot = serving.cache.current();
        let svids = snapshot
            .identities
            .iter()
            .map(|identity| usize::from(identity.svid.is_some()) + identity.expanded_svids.len())
            .sum::<usize>();
        inner
            .cached_x509_svids
            .set(i64::try_from(svids).unwrap_or(i64::MAX));
        if let Some(last_sync) = serving.cache.last_sync() {
            let seconds = last_sync
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            inner
                .last_sync
                .set(i64::try_from(seconds).unwrap_or(i64::MAX));
        }
    }
}

impl HttpRoutes for AgentMetrics {
    fn respond(&self, path: &str) -> Option<HttpResponse> {
        if path != METRICS_PATH {
            return None;
        }
        self.update_scrape_gauges();
        Some(metrics_response(&self.inner.registry))
    }
}

// === impl Inner ===

impl Inner {
    fn register(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "workload_api_calls",
            "Workload API calls, by method and gRPC code",
            self.workload_api_calls.clone(),
        );
        registry.register_with_unit(
            "workload_api_call_duration",
            "Time until the agent responded to a Workload API call (for streams, the first \
             response headers), by method",
            Unit::Seconds,
            self.workload_api_duration.clone(),
        );
        registry.register_with_unit(
            "workload_attestation_duration",
            "Time to attest the process that called the Workload API",
            Unit::Seconds,
            self.workload_attestation_duration.clone(),
        );
        registry.register(
            "sync_failures",
            "Entry syncs with the server that failed",
            self.sync_failures.clone(),
        );
        registry.register(
            "workload_svids_signed",
            "Workload X509-SVIDs the server signed for this agent",
            self.workload_svids_signed.clone(),
        );
        registry.register_with_unit(
            "agent_svid_expiry",
            "Time until the agent's own X509-SVID expires",
            Unit::Seconds,
            self.agent_svid_expiry.clone(),
        );
        registry.register(
            "cached_x509_svids",
            "Workload X509-SVIDs in the cache the Workload API serves",
            self.cached_x509_svids.clone(),
        );
        registry.register_with_unit(
            "last_sync_timestamp",
            "Unix time of the last successful entry sync, 0 before the first one",
            Unit::Seconds,
            self.last_sync.clone(),
        );
    }
}

impl Default for Inner {
    fn default() -> Self {
        let mut inner = Self {
            registry: Registry::with_prefix("signet_agent"),
            workload_api_calls: Family::default(),
            workload_api_duration: Family::new_with_constructor(latency_histogram),
            workload_attestation_duration: latency_histogram(),
            sync_failures: Counter::default(),
            workload_svids_signed: Counter::default(),
            agent_svid_expiry: Gauge::default(),
            cached_x509_svids: Gauge::default(),
            last_sync: Gauge::default(),
            serving: Mutex::new(None),
        };
        inner.register();
        inner
    }
}
