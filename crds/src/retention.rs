//! The `RetentionPolicy` custom resource: data retention and erasure for a realm.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::TargetRef;
use crate::cron::CRON_SCHEDULE_PATTERN;
use crate::duration::GoDuration;

/// Data retention and erasure for a realm: what is purged or pseudonymised after how long, run
/// on a schedule by a CronJob. One per realm.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "RetentionPolicy",
    namespaced,
    derive = "PartialEq",
    status = "RetentionPolicyStatus",
    shortname = "rtp",
    category = "portcullis",
    doc = "Data retention and erasure schedule of an AuthRealm.",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRef.name"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(name = "Next run", type_ = "date", json_path = ".status.nextRunAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.size() <= 42").message("RetentionPolicy names are at most 42 characters: its CronJob <name>-retention must stay within the 52 characters a CronJob name may have")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionPolicySpec {
    /// The realm whose data this policy governs.
    pub target_ref: TargetRef,
    /// Standard 5-field cron schedule (UTC) of the retention job, or a macro like `@daily`.
    #[serde(default = "default_schedule")]
    #[schemars(length(min = 1, max = 128), regex(pattern = CRON_SCHEDULE_PATTERN))]
    pub schedule: String,
    /// What is kept for how long.
    #[serde(default)]
    pub rules: RetentionRules,
    /// Count what would be purged without changing anything.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_schedule() -> String {
    "0 3 * * *".to_owned()
}

/// Retention rules. Each has a safe default; `inactiveAccounts` applies only when set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetentionRules {
    /// Audit log entries.
    pub audit_logs: AuditLogRule,
    /// Accounts nobody has logged into for a long time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactive_accounts: Option<InactiveAccountRule>,
    /// Accounts whose email was never verified.
    pub unverified_accounts: UnverifiedAccountRule,
    /// Expired sessions, refresh tokens and one-time tokens.
    pub expired_sessions_and_tokens: ExpiredTokenRule,
    /// Records of withdrawn consents.
    pub withdrawn_consents: WithdrawnConsentRule,
}

/// Audit log retention.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuditLogRule {
    /// Age after which entries are processed.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("rules.auditLogs.retainFor")]))]
    pub retain_for: GoDuration,
    /// `Delete` removes entries (the hash chain keeps a checkpoint); `Pseudonymize` replaces
    /// user ids, IPs and user agents with keyed hashes.
    pub action: AuditLogAction,
}

impl Default for AuditLogRule {
    fn default() -> Self {
        Self {
            retain_for: GoDuration::from_secs(365 * 86_400),
            action: AuditLogAction::Delete,
        }
    }
}

/// What happens to old audit entries.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuditLogAction {
    /// Remove them.
    #[default]
    Delete,
    /// Keep them with personal data replaced by keyed hashes.
    Pseudonymize,
}

/// Inactive account handling.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InactiveAccountRule {
    /// Time since the last login after which the action applies.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("rules.inactiveAccounts.after")]))]
    pub after: GoDuration,
    /// The owner is mailed this long before the action (0s: no warning).
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("rules.inactiveAccounts.warnBefore")]))]
    pub warn_before: GoDuration,
    /// `Delete` erases the account; `Disable` blocks logins and keeps the data.
    pub action: InactiveAccountAction,
}

impl Default for InactiveAccountRule {
    fn default() -> Self {
        Self {
            after: GoDuration::from_secs(730 * 86_400),
            warn_before: GoDuration::from_secs(30 * 86_400),
            action: InactiveAccountAction::Delete,
        }
    }
}

/// What happens to inactive accounts.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InactiveAccountAction {
    /// Erase the account and its data.
    #[default]
    Delete,
    /// Block logins, keep the data.
    Disable,
}

/// Unverified account cleanup.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UnverifiedAccountRule {
    /// Accounts still unverified this long after registration are deleted.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("rules.unverifiedAccounts.after")]))]
    pub after: GoDuration,
}

impl Default for UnverifiedAccountRule {
    fn default() -> Self {
        Self {
            after: GoDuration::from_secs(7 * 86_400),
        }
    }
}

/// Expired credential cleanup.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExpiredTokenRule {
    /// Expired sessions and tokens are deleted this long after expiry.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("rules.expiredSessionsAndTokens.after")]))]
    pub after: GoDuration,
}

impl Default for ExpiredTokenRule {
    fn default() -> Self {
        Self {
            after: GoDuration::from_secs(86_400),
        }
    }
}

/// Withdrawn consent records.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WithdrawnConsentRule {
    /// Records of a withdrawn consent are kept this long (proof of withdrawal), then deleted.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("rules.withdrawnConsents.retainFor")]))]
    pub retain_for: GoDuration,
}

impl Default for WithdrawnConsentRule {
    fn default() -> Self {
        Self {
            retain_for: GoDuration::from_secs(90 * 86_400),
        }
    }
}

/// Observed state of a retention policy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted (valid and the only policy of its realm) and Scheduled (CronJob in place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RetentionRun>,
    /// When the schedule fires next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<Time>,
}

/// A retention run, as reported by its Job.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRun {
    /// Start of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// End of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Whether the run completed.
    #[serde(default)]
    pub succeeded: bool,
    /// Rows processed, by rule (e.g. `auditLogs: 120`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, i64>,
}
