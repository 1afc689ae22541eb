//! Prometheus metrics of the server: SVID issuance and denials, agent attestation, the datastore
//! counts and the state of the authorities, all named `signet_server_*`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

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

use crate::api::ServerState;
use crate::authority::AuthorityStatus;

/// Kind of SVID an issuance metric is about.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SvidKind {
    /// A JWT-SVID.
    Jwt,
    /// An X509-SVID of a workload or an agent.
    X509,
}

/// The server's metric handles. Clones share the metrics.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    inner: Arc<Inner>,
}

/// Serves `GET /metrics`, with the gauges that are read at scrape time updated first.
#[derive(Debug)]
pub struct MetricsRoutes {
    state: Arc<ServerState>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    svids_issued: Family<KindLabels, Counter>,
    svids_denied: Family<DeniedLabels, Counter>,
    signing_duration: Family<KindLabels, Histogram>,
    attestations: Family<ResultLabels, Counter>,
    attestation_duration: Histogram,
    registration_entries: Gauge,
    attested_agents: Gauge,
    authority_expiry: Family<KindLabels, Gauge<f64, AtomicU64>>,
    authority_prepared: Family<KindLabels, Gauge>,
    authority_old_tainted: Family<KindLabels, Gauge>,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
struct DeniedLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
struct ResultLabels {
    result: &'static str,
}

// === impl SvidKind ===

impl SvidKind {
    fn label(self) -> KindLabels {
        let kind = match self {
            Self::Jwt => "jwt",
            Self::X509 => "x509",
        };
        KindLabels { kind }
    }
}

// === impl ServerMetrics ===

impl ServerMetrics {
    /// Creates every metric at zero.
    pub fn new() -> Self {
        let mut inner = Inner {
            registry: Registry::with_prefix("signet_server"),
            svids_issued: Family::default(),
            svids_denied: Family::default(),
            signing_duration: Family::new_with_constructor(latency_histogram),
            attestations: Family::default(),
            attestation_duration: latency_histogram(),
            registration_entries: Gauge::default(),
            attested_agents: Gauge::default(),
            authority_expiry: Family::default(),
            authority_prepared: Family::default(),
            authority_old_tainted: Family::default(),
        };
        inner.register();
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Counts an SVID signed.
    pub fn svid_issued(&self, kind: SvidKind) {
        self.inner.svids_issued.get_or_create(&kind.label()).inc();
    }

    /// Counts a request for an SVID that was rejected or failed with `code`.
    pub fn svid_denied(&self, kind: SvidKind, code: Code) {
        let labels = DeniedLabels {
            kind: kind.label().kind,
            reason: grpc_code_label(code),
        };
        self.inner.svids_denied.get_or_create(&labels).inc();
    }

    /// Records the time the CA or the JWT signing key took to sign one SVID.
    pub fn observe_signing(&self, kind: SvidKind, elapsed: Duration) {
        self.inner
            .signing_duration
            .get_or_create(&kind.label())
            .observe(elapsed.as_secs_f64());
    }

    /// Records one agent attestation: its duration and its gRPC result code.
    pub fn observe_attestation(&self, elapsed: Duration, code: Code) {
        self.inner
            .attestation_duration
            .observe(elapsed.as_secs_f64());
        let labels = ResultLabels {
            result: grpc_code_label(code),
        };
        self.inner.attestations.get_or_create(&labels).inc();
    }

    /// Sets the datastore counts. The readiness check updates them on every run.
    pub fn set_counts(&self, registration_entries: u64, attested_agents: u64) {
        let gauge_value = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
        self.inner
            .registration_entries
            .set(gauge_value(registration_entries));
        self.inner.attested_agents.set(gauge_value(attested_agents));
    }

    /// Sets the rotation phase of one kind of authority (`x509` or `jwt`).
    pub fn set_rotation_phase(&self, kind: &'static str, status: &AuthorityStatus) {
        let labels = KindLabels { kind };
        let old_tainted = status.old.as_ref().is_some_and(|old| old.tainted);
        self.inner
            .authority_prepared
            .get_or_create(&labels)
            .set(i64::from(status.prepared.is_some()));
        self.inner
            .authority_old_tainted
            .get_or_create(&labels)
            .set(i64::from(old_tainted));
    }

    fn set_authority_expiry(&self, kind: SvidKind, expires_at: SystemTime, now: SystemTime) {
        self.inner
            .authority_expiry
            .get_or_create(&kind.label())
            .set(seconds_until(expires_at, now));
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

// === impl MetricsRoutes ===

impl MetricsRoutes {
    /// Creates the handler of `/metrics` for the server with `state`.
    pub fn new(state: Arc<ServerState>) -> Self {
        Self { state }
    }
}

impl HttpRoutes for MetricsRoutes {
    fn respond(&self, path: &str) -> Option<HttpResponse> {
        if path != METRICS_PATH {
            return None;
        }
        let now = SystemTime::now();
        let metrics = &self.state.metrics;
        metrics.set_authority_expiry(SvidKind::X509, self.state.ca().expires_at(), now);
        metrics.set_authority_expiry(SvidKind::Jwt, self.state.jwt().key().not_after(), now);
        Some(metrics_response(&metrics.inner.registry))
    }
}

// === impl Inner ===

impl Inner {
    fn register(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "svids_issued",
            "SVIDs signed, by kind (x509 counts workload, minted and agent X509-SVIDs)",
            self.svids_issued.clone(),
        );
        registry.register(
            "svid_requests_denied",
            "SVID requests rejected or failed, by kind and gRPC code as reason",
            self.svids_denied.clone(),
        );
        registry.register_with_unit(
            "svid_signing_duration",
            "Time to sign one SVID, by kind",
            Unit::Seconds,
            self.signing_duration.clone(),
        );
        registry.register(
            "agent_attestations",
            "Agent attestations, by result (gRPC code)",
            self.attestations.clone(),
        );
        registry.register_with_unit(
            "agent_attestation_duration",
            "Time to attest an agent and sign its first X509-SVID",
            Unit::Seconds,
            self.attestation_duration.clone(),
        );
        registry.register(
            "registration_entries",
            "Registration entries in the datastore",
            self.registration_entries.clone(),
        );
        registry.register(
            "attested_agents",
            "Attested agents in the datastore, banned ones included",
            self.attested_agents.clone(),
        );
        registry.register_with_unit(
            "active_authority_expiry",
            "Time until the active authority expires, by kind: x509 (the CA) or jwt (the signing key)",
            Unit::Seconds,
            self.authority_expiry.clone(),
        );
        registry.register(
            "authority_prepared",
            "1 while a prepared authority of the kind waits for activation",
            self.authority_prepared.clone(),
        );
        registry.register(
            "authority_old_tainted",
            "1 while the old authority of the kind is tainted, so agents replace what it signed",
            self.authority_old_tainted.clone(),
        );
    }
}
