//! The `RateLimitPolicy` custom resource: request limits attached to a realm.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DNS_LABEL_PATTERN, TargetRef};
use crate::duration::GoDuration;

/// Request limits for a realm, enforced by the auth server (distributed through Redis) and at
/// the reverse proxy (NGINX Ingress annotations). Several policies may target one realm: their
/// rules merge, and for the same route and key the lower limit wins. A route and key that no
/// policy names keeps its built-in default limit.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "RateLimitPolicy",
    namespaced,
    derive = "PartialEq",
    status = "RateLimitPolicyStatus",
    shortname = "rlp",
    category = "portcullis",
    doc = "Request limits attached to an AuthRealm.",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRef.name"),
    printcolumn(
        name = "Attached",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Attached\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Attached\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitPolicySpec {
    /// The realm these limits apply to.
    pub target_ref: TargetRef,
    /// Named rules, each limiting some routes by some keys. A limit here replaces the built-in
    /// default for its route and key, looser or stricter; every route and key that no policy
    /// of the realm names keeps its default (so a policy for `Token` alone leaves the login,
    /// registration and password-reset defaults in place). Between policies, the lower rate
    /// wins for the same route and key, then the smaller burst.
    #[schemars(length(min = 1, max = 50))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub rules: Vec<RateLimitRule>,
    /// Where counters live: `Redis` shares them across replicas, `Local` keeps them per pod.
    /// Defaults to `Redis` when the realm has Redis, `Local` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<RateLimitBackend>,
    /// What happens when the counter store is unreachable: `Closed` answers 429/503,
    /// `Open` lets requests through (and counts them in a metric).
    #[serde(default)]
    pub failure_mode: RateLimitFailureMode,
    /// Limits rendered into the reverse proxy in front of the realm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyLimits>,
}

/// One rule: the routes it covers and the limits applied to each.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitRule {
    /// Rule name, unique within the policy; shown in metrics and `RateLimit-Policy` headers.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// Route classes the rule covers.
    #[schemars(length(min = 1, max = 7))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub routes: Vec<Route>,
    /// Limits; each key is counted separately.
    #[schemars(length(min = 1, max = 4))]
    pub limits: Vec<Limit>,
}

/// Route classes of the auth server.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum Route {
    /// `POST /api/v1/login` and the hosted login form.
    Login,
    /// Registration.
    Register,
    /// MFA code and recovery-code submission.
    Mfa,
    /// Password reset request and confirmation.
    PasswordReset,
    /// `POST /oauth2/token`, revoke and introspect.
    Token,
    /// Every other `/api/v1` and `/oauth2` route.
    Api,
    /// A bucket every request counts against, in addition to its own route's.
    All,
}

impl Route {
    /// Every route class, in a stable order.
    pub const ALL: [Route; 7] = [
        Route::Login,
        Route::Register,
        Route::Mfa,
        Route::PasswordReset,
        Route::Token,
        Route::Api,
        Route::All,
    ];
}

/// A limit: `requests` per `period` per key, with `burst` extra requests allowed at once.
/// Enforced as GCRA (the generic cell rate algorithm, NGINX's meaning of a burst): `burst + 1`
/// requests pass at once, then one every `period / requests`; an idle key earns its burst back
/// at that pace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limit {
    /// What is counted: per client IP, per account, per OAuth client, or for everyone together.
    pub key: LimitKey,
    /// Requests allowed per period.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub requests: u32,
    /// Length of the period.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("limits.period")]))]
    pub period: GoDuration,
    /// Extra requests allowed at once above the steady rate: `burst + 1` pass together, so
    /// `0` allows one request every `period / requests`.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub burst: u32,
}

/// What a limit counts by.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum LimitKey {
    /// The client IP (see the realm's `trustedProxies`).
    Ip,
    /// The canonical login identifier or account id, whether or not the account exists.
    User,
    /// The OAuth client id.
    Client,
    /// All requests together.
    Global,
}

/// Counter store.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitBackend {
    /// Shared counters in the realm's Redis.
    Redis,
    /// Counters in each pod's memory.
    Local,
}

/// Behaviour when the counter store fails.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RateLimitFailureMode {
    /// Let requests through.
    Open,
    /// Refuse requests.
    #[default]
    Closed,
}

/// Limits at the reverse proxy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyLimits {
    /// NGINX Ingress rate limits (per client IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxLimits>,
}

/// NGINX Ingress `limit-rps`, `limit-burst-multiplier` and `limit-connections`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NginxLimits {
    /// Render the annotations.
    pub enabled: bool,
    /// Requests per second per client IP.
    #[schemars(range(min = 1, max = 100_000))]
    pub requests_per_second: u32,
    /// Requests allowed in a burst above the rate.
    #[schemars(range(min = 0, max = 1_000_000))]
    pub burst: u32,
    /// Concurrent connections per client IP.
    #[schemars(range(min = 1, max = 100_000))]
    pub connections: u32,
}

impl Default for NginxLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            requests_per_second: 20,
            burst: 40,
            connections: 20,
        }
    }
}

/// Observed state of a rate-limit policy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted (the spec is valid) and Attached (the target realm exists and uses it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Name of the realm the policy is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_realm: Option<String>,
}
