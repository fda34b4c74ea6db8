//! Monitoring children: a ServiceMonitor and a PrometheusRule (prometheus-operator dynamic
//! objects) and a Grafana dashboard ConfigMap. The rules and the dashboard live once in
//! `config/prometheus/alerts.yaml` and `config/grafana/portcullis.json`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use portcullis_crds::realm::AlertThresholds;
use serde::{Deserialize, Serialize};

use super::meta::names;
use super::{BuildError, Inputs};

/// The shared alert rules.
pub const ALERTS_YAML: &str = include_str!("../../../config/prometheus/alerts.yaml");
/// The shared Grafana dashboard.
pub const DASHBOARD_JSON: &str = include_str!("../../../config/grafana/portcullis.json");
/// Annotation of a rule naming the `alertThresholds` field its threshold comes from.
const THRESHOLD_ANNOTATION: &str = "portcullis_threshold";
/// Selector the shared rules use for the auth server's metrics; narrowed per realm.
const SHARED_SELECTOR: &str = "job=\"portcullis\"";
/// Selector the shared rules use for the operator's per-realm metrics; narrowed per realm.
const SHARED_REALM_SELECTOR: &str = "realm=\"portcullis\"";
/// Component label of monitoring children.
const COMPONENT: &str = "monitoring";

/// The prometheus-operator ServiceMonitor kind.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ))
}

/// The prometheus-operator PrometheusRule kind.
pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "PrometheusRule",
    ))
}

/// A Prometheus rule file (also the `spec` of a PrometheusRule).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RuleFile {
    /// Rule groups.
    pub groups: Vec<RuleGroup>,
}

/// One rule group.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// Alerting rules.
    pub rules: Vec<AlertRule>,
}

/// One alerting rule.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Alert name.
    pub alert: String,
    /// PromQL expression.
    pub expr: String,
    /// How long the condition must hold.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Labels added to the alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The shared rules, parsed.
pub fn shared_rules() -> Result<RuleFile, BuildError> {
    serde_saphyr::from_str(ALERTS_YAML).map_err(|e| BuildError::Monitoring(e.to_string()))
}

/// The realm's threshold for a rule, by the `alertThresholds` field name.
fn threshold(
    field: &str,
    thresholds: &AlertThresholds,
    rotation_every_secs: u64,
) -> Option<String> {
    Some(match field {
        "failedLoginsPerMinute" => thresholds.failed_logins_per_minute.to_string(),
        "lockoutsPerMinute" => thresholds.lockouts_per_minute.to_string(),
        "serverErrorPercent" => thresholds.server_error_percent.to_string(),
        "readinessFlapsPerHour" => thresholds.readiness_flaps_per_hour.to_string(),
        "rateLimitedPerMinute" => thresholds.rate_limited_per_minute.to_string(),
        "passwordSprayIdentifiers" => thresholds.password_spray_identifiers.to_string(),
        "breachedLoginsPerHour" => thresholds.breached_logins_per_hour.to_string(),
        "breachCheckErrorPercent" => thresholds.breach_check_error_percent.to_string(),
        "certificateExpiryWarning" => thresholds
            .certificate_expiry_warning
            .as_duration()
            .as_secs()
            .to_string(),
        // Overdue one day after the rotation was due.
        "keyRotationOverdue" => (rotation_every_secs + 86_400).to_string(),
        _ => return None,
    })
}

/// Replaces the number after the final comparison of `expr`.
fn with_threshold(expr: &str, value: &str) -> String {
    match expr.rsplit_once(' ') {
        Some((head, last)) if last.parse::<f64>().is_ok() => format!("{head} {value}"),
        _ => expr.to_owned(),
    }
}

/// The shared rules narrowed to one realm, with its thresholds.
pub fn realm_rules(inputs: &Inputs<'_>) -> Result<RuleFile, BuildError> {
    let owner = &inputs.owner;
    let spec = &inputs.settings.spec;
    let selector = match &owner.namespace {
        Some(ns) => format!("namespace=\"{ns}\", job=\"{}\"", owner.realm),
        None => format!("job=\"{}\"", owner.realm),
    };
    let realm_selector = match &owner.namespace {
        Some(ns) => format!("realm_namespace=\"{ns}\", realm=\"{}\"", owner.realm),
        None => format!("realm=\"{}\"", owner.realm),
    };
    let every = spec.tokens.key_rotation.every.as_duration().as_secs();
    let mut file = shared_rules()?;
    for group in &mut file.groups {
        group.name = format!("portcullis-{}", owner.realm);
        for rule in &mut group.rules {
            let mut expr = rule
                .expr
                .replace(SHARED_SELECTOR, &selector)
                .replace(SHARED_REALM_SELECTOR, &realm_selector);
            if let Some(field) = rule.annotations.remove(THRESHOLD_ANNOTATION)
                && let Some(value) = threshold(&field, &spec.monitoring.alert_thresholds, every)
            {
                expr = with_threshold(&expr, &value);
            }
            rule.expr = expr;
        }
    }
    Ok(file)
}

/// `spec` of a ServiceMonitor.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Services to scrape.
    pub selector: LabelSelector,
    /// Endpoints to scrape.
    pub endpoints: Vec<ScrapeEndpoint>,
}

/// One scrape endpoint of a ServiceMonitor.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ScrapeEndpoint {
    /// Service port name.
    pub port: String,
    /// Metrics path.
    pub path: String,
    /// Scrape interval.
    pub interval: String,
}

/// The ServiceMonitor, when asked for and prometheus-operator is installed.
pub fn service_monitor(inputs: &Inputs<'_>) -> Result<Option<DynamicObject>, BuildError> {
    let spec = &inputs.settings.spec;
    if !spec.monitoring.service_monitor || !inputs.capabilities.prometheus_operator {
        return Ok(None);
    }
    let owner = &inputs.owner;
    let monitor = ServiceMonitorSpec {
        selector: owner.component_selector(super::workload::SERVER),
        endpoints: vec![ScrapeEndpoint {
            port: "metrics".to_owned(),
            path: "/metrics".to_owned(),
            interval: spec.monitoring.interval.to_string(),
        }],
    };
    super::dynamic_object(
        &service_monitor_resource(),
        owner.meta(names::server(&owner.realm), COMPONENT),
        &monitor,
    )
    .map(Some)
}

/// The PrometheusRule, when asked for and prometheus-operator is installed.
pub fn prometheus_rule(inputs: &Inputs<'_>) -> Result<Option<DynamicObject>, BuildError> {
    let spec = &inputs.settings.spec;
    if !spec.monitoring.prometheus_rule || !inputs.capabilities.prometheus_operator {
        return Ok(None);
    }
    let owner = &inputs.owner;
    super::dynamic_object(
        &prometheus_rule_resource(),
        owner.meta(names::server(&owner.realm), COMPONENT),
        &realm_rules(inputs)?,
    )
    .map(Some)
}

/// The Grafana dashboard ConfigMap (picked up by the Grafana sidecar through its label).
pub fn dashboard(inputs: &Inputs<'_>) -> Option<ConfigMap> {
    if !inputs.settings.spec.monitoring.dashboard {
        return None;
    }
    let owner = &inputs.owner;
    let mut metadata = owner.meta(names::dashboard(&owner.realm), COMPONENT);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert("grafana_dashboard".to_owned(), "1".to_owned());
    }
    Some(ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(
            "portcullis.json".to_owned(),
            DASHBOARD_JSON.to_owned(),
        )])),
        ..Default::default()
    })
}
