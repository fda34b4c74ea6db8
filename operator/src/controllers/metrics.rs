//! Reconcile metrics: counts, durations and errors by kind and reason, in the Prometheus
//! text format through prometheus-client.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a reconcile count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `AuthRealm`, `RateLimitPolicy` or `RetentionPolicy`.
    pub kind: String,
    /// Outcome reason: `Reconciled`, or a stable error/condition reason.
    pub reason: String,
}

/// Labels of a duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind.
    pub kind: String,
}

/// Labels naming one realm. Its namespace is `realm_namespace`: Prometheus overwrites a
/// `namespace` label with the operator's own namespace when it scrapes the operator.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RealmLabels {
    /// Namespace of the realm.
    pub realm_namespace: String,
    /// Name of the realm.
    pub realm: String,
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ReconcileLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    certificate_not_after: Family<RealmLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portcullis_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let errors = Family::<ReconcileLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "reconciles",
            "Reconciles by kind and outcome reason",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and error reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            durations.clone(),
        );
        let certificate_not_after = Family::<RealmLabels, Gauge>::default();
        registry.register(
            "certificate_not_after_seconds",
            "Expiry (Unix time) of the serving certificate the operator issued for a realm",
            certificate_not_after.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            durations,
            certificate_not_after,
        }
    }
}

impl Metrics {
    /// Records one reconcile.
    pub fn observe(&self, kind: &str, reason: &str, took: Duration, failed: bool) {
        let labels = ReconcileLabels {
            kind: kind.to_owned(),
            reason: reason.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        if failed {
            self.errors.get_or_create(&labels).inc();
        }
        self.durations
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records the expiry of a realm's operator-issued serving certificate, for the
    /// certificate-expiry alert.
    pub fn certificate_expiry(&self, namespace: &str, realm: &str, not_after_unix: i64) {
        self.certificate_not_after
            .get_or_create(&RealmLabels {
                realm_namespace: namespace.to_owned(),
                realm: realm.to_owned(),
            })
            .set(not_after_unix);
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_expiry_is_exported_per_realm() {
        let metrics = Metrics::default();
        metrics.certificate_expiry("auth", "demo", 1_800_000_000);
        let text = metrics.encode();
        assert!(
            text.contains("portcullis_operator_certificate_not_after_seconds{realm_namespace=\"auth\",realm=\"demo\"} 1800000000"),
            "{text}"
        );
    }

    #[test]
    fn reconciles_are_counted_by_kind_and_reason() {
        let metrics = Metrics::default();
        metrics.observe("AuthRealm", "Reconciled", Duration::from_millis(20), false);
        metrics.observe("AuthRealm", "ApiError", Duration::from_millis(5), true);
        let text = metrics.encode();
        assert!(
            text.contains(
                "portcullis_operator_reconciles_total{kind=\"AuthRealm\",reason=\"Reconciled\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "portcullis_operator_reconcile_errors_total{kind=\"AuthRealm\",reason=\"ApiError\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "portcullis_operator_reconcile_duration_seconds_count{kind=\"AuthRealm\"} 2"
            ),
            "{text}"
        );
    }
}
