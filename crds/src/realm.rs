//! The `AuthRealm` custom resource: one auth server deployment and every policy it enforces.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::{NetworkPolicyEgressRule, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::client::{ClientType, EffectiveClient, GrantType};
use crate::common::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, SecretKeyRef, UrlSecretRef};
use crate::duration::GoDuration;

/// An http(s) URL. Kept loose on purpose: the rules that matter are CEL rules and settings checks.
const URL_PATTERN: &str = "^https?://[^\\s]+$";
/// An IPv4 or IPv6 CIDR block.
const CIDR_PATTERN: &str = "^(([0-9]{1,3}\\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])|[0-9a-fA-F:.]+/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))$";
/// A consent purpose name.
const PURPOSE_PATTERN: &str = "^[a-z][a-z0-9_]*$";
/// A plain email address, enough to refuse obvious mistakes.
const EMAIL_PATTERN: &str = "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$";

/// An authentication realm: a hardened auth server with its users, clients and policies.
///
/// The operator turns it into a Deployment, Service, Secrets, TLS certificate, NetworkPolicies,
/// Ingress, monitoring and retention jobs; the auth server reads the very same manifest.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "AuthRealm",
    namespaced,
    derive = "PartialEq",
    status = "AuthRealmStatus",
    shortname = "realm",
    category = "portcullis",
    doc = "An authentication realm: one hardened auth server and every policy it enforces.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.readyReplicas", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("realm names are at most 40 characters: child object names are derived from them"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("realm names must be DNS-1035 labels (start with a letter): the realm's Service is named after it")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.replicas) || self.replicas <= 1 || has(self.redis)",
        "message": "replicas > 1 requires spec.redis: sessions, lockouts and rate limits must be shared by all replicas",
        "fieldPath": ".redis",
        "reason": "FieldValueRequired"
    },
    {
        "rule": "!has(self.emailVerification) || !has(self.emailVerification.required) || !self.emailVerification.required || (has(self.notifications) && has(self.notifications.smtp))",
        "message": "emailVerification.required needs notifications.smtp: verification mails must be delivered",
        "fieldPath": ".notifications",
        "reason": "FieldValueRequired"
    }
]))]
pub struct AuthRealmSpec {
    /// Issuer URL: the base URL of the realm, byte-identical to the `iss` claim of every token.
    /// Must be `https://`, except `http://` for `localhost` and `*.localhost` development hosts.
    #[schemars(length(min = 8, max = 255), regex(pattern = URL_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "self.startsWith('https://') || self.matches('^http://([a-z0-9-]+[.])*localhost(:[0-9]+)?(/.*)?$')",
            "message": "issuer must be an https:// URL (http:// is allowed only for localhost and *.localhost)"
        },
        {
            "rule": "!self.contains('#') && !self.contains('?')",
            "message": "issuer must not contain a query or fragment (OpenID Connect Discovery 1.0, section 3)"
        }
    ]))]
    pub issuer: String,

    /// Number of auth server replicas. More than one requires `redis`.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 20))]
    pub replicas: i32,

    /// Container image of the auth server. Defaults to the image matching the operator version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,

    /// The realm's PostgreSQL database: a Secret key holding a `postgres://` URL.
    pub database: DatabaseSpec,

    /// Redis for sessions, lockout counters and rate limits: a Secret key holding a
    /// `redis://` or `rediss://` URL. Required when `replicas` > 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,

    /// Password rules checked at registration, password change and reset.
    #[serde(default)]
    pub password_policy: PasswordPolicy,

    /// Account lockout and progressive delay after failed logins.
    #[serde(default)]
    pub lockout: LockoutPolicy,

    /// Multi-factor authentication.
    #[serde(default)]
    pub mfa: MfaPolicy,

    /// Token lifetimes, signing algorithm and key rotation.
    #[serde(default)]
    pub tokens: TokenPolicy,

    /// Browser session timeouts and cookie policy.
    #[serde(default)]
    pub sessions: SessionPolicy,

    /// Whether new accounts must verify their email address before they can log in.
    #[serde(default)]
    pub email_verification: EmailVerification,

    /// Social login providers offered on the hosted login page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub social_providers: Vec<SocialProvider>,

    /// Which namespaces' AuthClients this realm admits, by namespace labels, besides its own
    /// namespace (always admitted). Unset: only the realm's own namespace. An empty selector
    /// (`{}`) admits every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_namespaces: Option<LabelSelector>,

    /// Not part of the AuthRealm manifest (never read from or written to one, absent from
    /// the schema): the admitted clients, filled in by [`crate::RealmSettings`] from the
    /// AuthClient documents, the same list as `RealmSettings::clients`. Code that reads
    /// `settings.spec.clients` keeps working until it reads `RealmSettings::clients`.
    #[serde(skip)]
    pub clients: Vec<EffectiveClient>,

    /// Serving certificate of the auth server. Without it, the pods serve plain HTTP inside the
    /// cluster and TLS ends at the Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Ingress in front of the public listener.
    #[serde(default)]
    pub ingress: IngressSpec,

    /// NetworkPolicies around the realm's pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// CIDRs of reverse proxies whose `X-Forwarded-For` header is believed. Requests from other
    /// peers are attributed to the socket address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(regex(pattern = CIDR_PATTERN)))]
    pub trusted_proxies: Vec<String>,

    /// Prometheus monitoring, alert rules and Grafana dashboard.
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// Where security notifications go (lockout, new device, breached password, erasure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsSpec>,

    /// Privacy policy, consent purposes and erasure grace period (GDPR).
    #[serde(default)]
    pub privacy: PrivacySpec,

    /// Security headers sent on every response.
    #[serde(default)]
    pub security_headers: SecurityHeadersSpec,

    /// Scheduling and resource settings of the auth server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,

    /// What happens to the generated key material when the realm is deleted. `Retain` (the
    /// default): the `<realm>-keys` Secret is not owned by the realm and outlives it, because
    /// losing the pepper or the Fernet key ring silently destroys every password hash and TOTP
    /// secret in the database. `Delete`: it is owned and garbage-collected with the realm.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// When true, the operator reconciles nothing for this realm and reports `Paused`.
    #[serde(default)]
    pub paused: bool,
}

/// What happens to a realm's key material when the realm is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// The keys Secret outlives the realm.
    #[default]
    Retain,
    /// The keys Secret is deleted with the realm.
    Delete,
}

fn default_replicas() -> i32 {
    1
}

/// Container image of the auth server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSpec {
    /// Image repository, e.g. `ghcr.io/portcullis-dev/portcullis`.
    #[schemars(length(min = 1, max = 255))]
    pub repository: String,
    /// Image tag or `@sha256:` digest. Defaults to the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: Option<String>,
    /// When the kubelet pulls the image.
    #[serde(default)]
    pub pull_policy: PullPolicy,
}

/// Image pull policy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

/// The realm's PostgreSQL database.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseSpec {
    /// Secret key holding the `postgres://` connection URL (key defaults to `url`).
    pub secret_ref: UrlSecretRef,
}

/// The realm's Redis.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisSpec {
    /// Secret key holding the `redis://` or `rediss://` URL (key defaults to `url`).
    pub secret_ref: UrlSecretRef,
}

/// Password rules.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PasswordPolicy {
    /// Minimum length in characters after NFKC normalisation. Passwords are never truncated;
    /// the maximum is 128.
    #[schemars(range(min = 8, max = 128))]
    pub min_length: u32,
    /// How many of the classes lowercase, uppercase, digit and symbol a password must contain.
    #[schemars(range(min = 0, max = 4))]
    pub character_classes: u32,
    /// Minimum strength estimate, 0 (trivial) to 4 (very strong), zxcvbn-style.
    #[schemars(range(min = 0, max = 4))]
    pub min_strength: u32,
    /// bcrypt work factor. Each step doubles login CPU cost; hashes made with a lower cost are
    /// upgraded at the next successful login.
    #[schemars(range(min = 10, max = 16))]
    pub bcrypt_cost: u32,
    /// Check new passwords against known breaches (HaveIBeenPwned k-anonymity API or an
    /// offline SHA-1 list).
    pub breach_check: BreachCheck,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            character_classes: 3,
            min_strength: 3,
            bcrypt_cost: 12,
            breach_check: BreachCheck::default(),
        }
    }
}

/// Breached-password check.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.mode) || self.mode != 'Offline' || has(self.offlineListRef)",
        "message": "breachCheck.mode Offline requires offlineListRef",
        "reason": "FieldValueRequired"
    }
]))]
pub struct BreachCheck {
    /// Where breached passwords are looked up.
    pub mode: BreachCheckMode,
    /// What happens when the lookup fails or times out: `Open` accepts the password (and counts
    /// the failure in a metric), `Closed` rejects it.
    pub failure_policy: FailurePolicy,
    /// How long to wait for the breach API.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("passwordPolicy.breachCheck.timeout")]))]
    pub timeout: GoDuration,
    /// Base URL of a HaveIBeenPwned-compatible range API (`GET {apiUrl}/range/{prefix}`).
    #[schemars(length(min = 8, max = 255), regex(pattern = URL_PATTERN))]
    pub api_url: String,
    /// Secret key holding a sorted list of uppercase SHA-1 hashes (`HASH` or `HASH:COUNT` per
    /// line), for air-gapped clusters. Required when `mode` is `Offline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_list_ref: Option<SecretKeyRef>,
}

impl Default for BreachCheck {
    fn default() -> Self {
        Self {
            mode: BreachCheckMode::Online,
            failure_policy: FailurePolicy::Open,
            timeout: GoDuration::from_secs(2),
            api_url: "https://api.pwnedpasswords.com".to_owned(),
            offline_list_ref: None,
        }
    }
}

/// Where breached passwords are looked up.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BreachCheckMode {
    /// The HaveIBeenPwned range API (only a 5-hex-digit hash prefix leaves the cluster).
    #[default]
    Online,
    /// A SHA-1 list from a Secret.
    Offline,
    /// No breach check.
    Disabled,
}

/// Behaviour when a dependency cannot answer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Let the request through.
    #[default]
    Open,
    /// Refuse the request.
    Closed,
}

/// Account lockout after repeated failures.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LockoutPolicy {
    /// Failed logins within `window` that lock the identifier.
    #[schemars(range(min = 1, max = 100))]
    pub max_failures: u32,
    /// Sliding window in which failures are counted.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("lockout.window")]))]
    pub window: GoDuration,
    /// Length of the first lockout; each further lockout doubles it up to `maxLockout`.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("lockout.baseLockout")]))]
    pub base_lockout: GoDuration,
    /// Longest lockout.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("lockout.maxLockout")]))]
    pub max_lockout: GoDuration,
    /// Delay added to answers after a few failures, before the lockout.
    pub progressive_delay: ProgressiveDelay,
    /// Email the account owner when their account is locked.
    pub notify_user: bool,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: GoDuration::from_secs(15 * 60),
            base_lockout: GoDuration::from_secs(60),
            max_lockout: GoDuration::from_secs(3_600),
            progressive_delay: ProgressiveDelay::default(),
            notify_user: true,
        }
    }
}

/// Progressive delay: after `afterFailures` failures each answer waits `base`, doubling per
/// further failure up to `max`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProgressiveDelay {
    /// Failures before the first delay; 0 turns progressive delay off.
    #[schemars(range(min = 0, max = 100))]
    pub after_failures: u32,
    /// First delay.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("lockout.progressiveDelay.base")]))]
    pub base: GoDuration,
    /// Longest delay.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("lockout.progressiveDelay.max")]))]
    pub max: GoDuration,
}

impl Default for ProgressiveDelay {
    fn default() -> Self {
        Self {
            after_failures: 3,
            base: GoDuration::from_secs(1),
            max: GoDuration::from_secs(30),
        }
    }
}

/// Multi-factor authentication.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MfaPolicy {
    /// Time-based one-time passwords (RFC 6238).
    pub totp: TotpPolicy,
    /// Number of single-use recovery codes issued when TOTP is set up.
    #[schemars(range(min = 0, max = 20))]
    pub recovery_codes: u32,
}

impl Default for MfaPolicy {
    fn default() -> Self {
        Self {
            totp: TotpPolicy::default(),
            recovery_codes: 10,
        }
    }
}

/// TOTP settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.required) || !self.required || !has(self.enabled) || self.enabled",
        "message": "mfa.totp.required needs mfa.totp.enabled"
    }
]))]
pub struct TotpPolicy {
    /// Users may enrol an authenticator app.
    pub enabled: bool,
    /// Every user must enrol before they can use the realm.
    pub required: bool,
    /// Issuer shown in authenticator apps; defaults to the issuer host.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub issuer_name: Option<String>,
    /// Code length.
    #[schemars(range(min = 6, max = 8))]
    pub digits: u32,
    /// Seconds per code.
    #[schemars(range(min = 15, max = 120))]
    pub period: u32,
}

impl Default for TotpPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            required: false,
            issuer_name: None,
            digits: 6,
            period: 30,
        }
    }
}

/// Token lifetimes and signing.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TokenPolicy {
    /// Lifetime of JWT access tokens.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("tokens.accessTokenTtl")]))]
    pub access_token_ttl: GoDuration,
    /// Lifetime of ID tokens.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("tokens.idTokenTtl")]))]
    pub id_token_ttl: GoDuration,
    /// Absolute lifetime of a refresh-token family from the login that started it.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("tokens.refreshTokenTtl")]))]
    pub refresh_token_ttl: GoDuration,
    /// A refresh token unused for this long expires.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("tokens.refreshIdleTtl")]))]
    pub refresh_idle_ttl: GoDuration,
    /// JWS algorithm of access and ID tokens.
    pub signing_algorithm: SigningAlgorithm,
    /// Signing key rotation.
    pub key_rotation: KeyRotation,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            access_token_ttl: GoDuration::from_secs(600),
            id_token_ttl: GoDuration::from_secs(600),
            refresh_token_ttl: GoDuration::from_secs(30 * 86_400),
            refresh_idle_ttl: GoDuration::from_secs(7 * 86_400),
            signing_algorithm: SigningAlgorithm::ES256,
            key_rotation: KeyRotation::default(),
        }
    }
}

/// JWS signing algorithm.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SigningAlgorithm {
    /// ECDSA with P-256 and SHA-256.
    #[default]
    ES256,
    /// Ed25519.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (for clients that support nothing else).
    RS256,
}

/// Signing key rotation: a new key is published first, used for signing after one access-token
/// lifetime, and old keys stay in the JWKS for `keep` rotations.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KeyRotation {
    /// Interval between rotations.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("tokens.keyRotation.every")]))]
    pub every: GoDuration,
    /// Previous keys kept in the JWKS.
    #[schemars(range(min = 1, max = 10))]
    pub keep: u32,
}

impl Default for KeyRotation {
    fn default() -> Self {
        Self {
            every: GoDuration::from_secs(30 * 86_400),
            keep: 2,
        }
    }
}

/// Browser sessions.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SessionPolicy {
    /// A session unused for this long ends.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("sessions.idleTimeout")]))]
    pub idle_timeout: GoDuration,
    /// A session ends this long after login, however active.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("sessions.absoluteTimeout")]))]
    pub absolute_timeout: GoDuration,
    /// `SameSite` attribute of the session cookie.
    pub same_site: SameSite,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: GoDuration::from_secs(30 * 60),
            absolute_timeout: GoDuration::from_secs(12 * 3_600),
            same_site: SameSite::Lax,
        }
    }
}

/// Cookie `SameSite` attribute.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites (needed for OIDC redirects back to us).
    #[default]
    Lax,
    /// Never sent from other sites.
    Strict,
}

/// Email verification.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EmailVerification {
    /// New accounts must follow the mailed link before they can log in.
    pub required: bool,
}

impl Default for EmailVerification {
    fn default() -> Self {
        Self { required: true }
    }
}

/// A social login provider.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type != 'Oidc' || has(self.issuerUrl)",
        "message": "an Oidc provider needs issuerUrl",
        "reason": "FieldValueRequired"
    },
    {
        "rule": "self.type == 'Oidc' || !has(self.issuerUrl)",
        "message": "issuerUrl is only for Oidc providers; GitHub and Google use built-in endpoints"
    }
]))]
pub struct SocialProvider {
    /// Name used in URLs (`/oauth2/social/{name}/start`) and on the login page.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// Provider preset.
    #[serde(rename = "type")]
    pub provider_type: SocialProviderType,
    /// OAuth client id registered with the provider.
    #[schemars(length(min = 1, max = 256))]
    pub client_id: String,
    /// Secret key holding the OAuth client secret.
    pub client_secret_ref: SecretKeyRef,
    /// Issuer of a generic OpenID Connect provider (discovery at
    /// `{issuerUrl}/.well-known/openid-configuration`). Oidc only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 255), regex(pattern = "^https://[^\\s]+$"))]
    pub issuer_url: Option<String>,
    /// Scopes to request; defaults to the preset's (`openid email profile` for OIDC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(min = 1, max = 128)))]
    pub scopes: Vec<String>,
    /// Only accounts whose verified email is in one of these domains may log in; empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN)))]
    pub allowed_domains: Vec<String>,
}

/// Social login presets.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocialProviderType {
    /// GitHub OAuth apps.
    GitHub,
    /// Google accounts (OpenID Connect).
    Google,
    /// Any OpenID Connect provider, by discovery.
    Oidc,
}

/// Serving certificate: exactly one of `issuerRef`, `selfSigned`, `secretName`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.issuerRef) ? 1 : 0) + (has(self.selfSigned) ? 1 : 0) + (has(self.secretName) ? 1 : 0) == 1",
        "message": "tls needs exactly one of issuerRef, selfSigned or secretName"
    }
]))]
pub struct TlsSpec {
    /// A cert-manager issuer that signs the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// The operator creates a CA and a serving certificate and renews them before expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<SelfSigned>,
    /// An existing `kubernetes.io/tls` Secret in the realm's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,
}

/// A cert-manager issuer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerRef {
    /// Issuer name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// `Issuer` (namespaced) or `ClusterIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
}

/// cert-manager issuer kinds.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IssuerKind {
    /// An `Issuer` in the realm's namespace.
    #[default]
    Issuer,
    /// A cluster-wide `ClusterIssuer`.
    ClusterIssuer,
}

/// Marker for an operator-generated certificate; it has no settings.
///
/// Unknown fields are refused when the manifest is read (`deny_unknown_fields`), but the schema
/// must not say `additionalProperties: false`: apiextensions refuses a CRD that does (kube's
/// schema rewriter drops it only from objects that have properties), and the API server
/// prunes unknown fields of an object without properties anyway.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
#[schemars(transform = allow_additional_properties)]
pub struct SelfSigned {}

/// Removes `additionalProperties: false` from a schema (see [`SelfSigned`]).
fn allow_additional_properties(schema: &mut schemars::Schema) {
    schema.remove("additionalProperties");
}

/// Ingress for the public listener.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IngressSpec {
    /// Create an Ingress.
    pub enabled: bool,
    /// IngressClass name; rate-limit annotations are written for NGINX.
    #[schemars(length(min = 1, max = 253))]
    pub class_name: String,
    /// Host name; defaults to the issuer's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub host: Option<String>,
    /// Extra annotations on the Ingress (for example a cert-manager issuer for the edge).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for IngressSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            class_name: "nginx".to_owned(),
            host: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// NetworkPolicies around the realm's pods: default deny, then only what the realm needs.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicies.
    pub enabled: bool,
    /// Namespace of the ingress controller, allowed to reach the public port.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub ingress_controller_namespace: String,
    /// Namespace of Prometheus, allowed to reach the metrics port (9091) only; the admin
    /// port (9090) is reachable from the realm's own namespace only.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub prometheus_namespace: String,
    /// Further peers allowed to reach the public port (in-cluster apps calling the realm).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ingress_from: Vec<NetworkPolicyPeer>,
    /// Further egress rules (e.g. the database and Redis when they listen on other ports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub egress_to: Vec<NetworkPolicyEgressRule>,
    /// Where PostgreSQL may be reached on port 5432 (CIDRs, pods, namespaces). Empty: any
    /// address on that port.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub database_peers: Vec<NetworkPolicyPeer>,
    /// Where Redis may be reached on port 6379. Empty: any address on that port.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub redis_peers: Vec<NetworkPolicyPeer>,
    /// Where the SMTP server may be reached on ports 587 and 465. Empty: any address on
    /// those ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub smtp_peers: Vec<NetworkPolicyPeer>,
    /// Allow HTTPS (443) to any public address, IPv4 and IPv6 (private, link-local and
    /// unique-local ranges excepted), for social providers and the breach API.
    pub allow_external_https: bool,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            ingress_controller_namespace: "ingress-nginx".to_owned(),
            prometheus_namespace: "monitoring".to_owned(),
            ingress_from: Vec::new(),
            egress_to: Vec::new(),
            database_peers: Vec::new(),
            redis_peers: Vec::new(),
            smtp_peers: Vec::new(),
            allow_external_https: true,
        }
    }
}

/// Monitoring.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MonitoringSpec {
    /// Create a ServiceMonitor (when the prometheus-operator CRDs exist).
    pub service_monitor: bool,
    /// Create a PrometheusRule with the realm's alerts.
    pub prometheus_rule: bool,
    /// Create a Grafana dashboard ConfigMap (label `grafana_dashboard: "1"`).
    pub dashboard: bool,
    /// Scrape interval.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("monitoring.interval")]))]
    pub interval: GoDuration,
    /// Alert thresholds.
    pub alert_thresholds: AlertThresholds,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            service_monitor: true,
            prometheus_rule: true,
            dashboard: true,
            interval: GoDuration::from_secs(30),
            alert_thresholds: AlertThresholds::default(),
        }
    }
}

/// Thresholds of the realm's alert rules.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AlertThresholds {
    /// Failed logins per minute, over 5 minutes, that page.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub failed_logins_per_minute: u32,
    /// Lockouts per minute, over 5 minutes, that page.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub lockouts_per_minute: u32,
    /// Percentage of 5xx answers, over 5 minutes, that pages.
    #[schemars(range(min = 1, max = 100))]
    pub server_error_percent: u32,
    /// Readiness changes per hour that count as flapping.
    #[schemars(range(min = 1, max = 1_000))]
    pub readiness_flaps_per_hour: u32,
    /// Warn when the serving certificate expires within this long.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("monitoring.alertThresholds.certificateExpiryWarning")]))]
    pub certificate_expiry_warning: GoDuration,
    /// Requests refused by the rate limits per minute, over 5 minutes and held for 10, that
    /// warn (`PortcullisRateLimitRejections`).
    #[schemars(range(min = 1, max = 1_000_000))]
    pub rate_limited_per_minute: u32,
    /// Distinct identifiers failing to log in within 15 minutes, at fewer than two failures
    /// each, that page as password spraying (`PortcullisPasswordSpraying`).
    #[schemars(range(min = 1, max = 1_000_000))]
    pub password_spray_identifiers: u32,
    /// Logins per hour whose password is found in a breach list that warn
    /// (`PortcullisBreachedPasswordLogins`).
    #[schemars(range(min = 1, max = 1_000_000))]
    pub breached_logins_per_hour: u32,
    /// Percentage of breach-list lookups failing, over 10 minutes, that warns
    /// (`PortcullisBreachCheckFailing`).
    #[schemars(range(min = 1, max = 100))]
    pub breach_check_error_percent: u32,
    /// Distinct identifiers failing to log in from one client IP within 10 minutes that make
    /// the auth server count that IP as a credential-stuffing source
    /// (`PortcullisCredentialStuffing` pages on any). Read by the auth server, not by a rule.
    #[schemars(range(min = 2, max = 1_000_000))]
    pub credential_stuffing_identifiers_per_ip: u32,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            failed_logins_per_minute: 50,
            lockouts_per_minute: 5,
            server_error_percent: 5,
            readiness_flaps_per_hour: 3,
            certificate_expiry_warning: GoDuration::from_secs(14 * 86_400),
            rate_limited_per_minute: 100,
            password_spray_identifiers: 50,
            breached_logins_per_hour: 10,
            breach_check_error_percent: 10,
            credential_stuffing_identifiers_per_ip: 20,
        }
    }
}

/// Security notifications.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsSpec {
    /// Mail delivery for verification, reset and notice mails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSpec>,
    /// A webhook that receives signed JSON events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
    /// Which events are notified; all of them when unset.
    #[serde(default = "all_notification_events")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub events: Vec<NotificationEvent>,
}

fn all_notification_events() -> Vec<NotificationEvent> {
    vec![
        NotificationEvent::Lockout,
        NotificationEvent::NewDevice,
        NotificationEvent::Breach,
        NotificationEvent::Erasure,
        NotificationEvent::PasswordChanged,
        NotificationEvent::MfaChanged,
        NotificationEvent::IdentityLinked,
    ]
}

/// SMTP delivery.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpSpec {
    /// Secret key holding the `smtp://` or `smtps://` URL with credentials (key defaults to `url`).
    pub secret_ref: UrlSecretRef,
    /// Sender address.
    #[schemars(length(min = 3, max = 254), regex(pattern = EMAIL_PATTERN))]
    pub from: String,
}

/// Webhook delivery.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// Secret key holding the webhook URL (key defaults to `url`); the operator adds a signing
    /// key of its own.
    pub url_secret_ref: UrlSecretRef,
}

/// Notified events.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationEvent {
    /// An account was locked.
    Lockout,
    /// A login from a device not seen before.
    NewDevice,
    /// A password was found in a breach list.
    Breach,
    /// An account was erased.
    Erasure,
    /// A password was changed or reset.
    PasswordChanged,
    /// A second factor was added or removed.
    MfaChanged,
    /// A new sign-in method was linked: a social provider's identity.
    IdentityLinked,
}

/// Privacy settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PrivacySpec {
    /// URL of the privacy policy shown at registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048), regex(pattern = URL_PATTERN))]
    pub policy_url: Option<String>,
    /// Current policy version; users are asked to accept again when it changes.
    #[schemars(length(min = 1, max = 64))]
    pub policy_version: String,
    /// Processing purposes users consent to.
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub purposes: Vec<ConsentPurpose>,
    /// Time between an erasure request and the erasure; sessions end at once either way.
    #[schemars(extend("x-kubernetes-validations" = [crate::duration::max_rule("privacy.erasureGracePeriod")]))]
    pub erasure_grace_period: GoDuration,
}

impl Default for PrivacySpec {
    fn default() -> Self {
        Self {
            policy_url: None,
            policy_version: "1".to_owned(),
            purposes: Vec::new(),
            erasure_grace_period: GoDuration::from_secs(0),
        }
    }
}

/// A processing purpose.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentPurpose {
    /// Machine name, e.g. `analytics`.
    #[schemars(length(min = 1, max = 63), regex(pattern = PURPOSE_PATTERN))]
    pub name: String,
    /// Users cannot use the realm without it (withdrawing it answers `consent_required`).
    #[serde(default)]
    pub required: bool,
    /// Text shown to users.
    #[schemars(length(min = 1, max = 1024))]
    pub description: String,
}

/// Security headers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.hstsPreload) || !self.hstsPreload || (has(self.hstsMaxAge) && self.hstsMaxAge >= 31536000)",
        "message": "hstsPreload needs hstsMaxAge of at least one year (31536000)"
    }
]))]
pub struct SecurityHeadersSpec {
    /// `Strict-Transport-Security` max-age in seconds (includeSubDomains is always set).
    #[schemars(range(min = 0, max = 63_072_000))]
    pub hsts_max_age: u32,
    /// Add `preload` to HSTS.
    pub hsts_preload: bool,
    /// `Content-Security-Policy` of every response.
    #[schemars(length(min = 1, max = 4096))]
    pub content_security_policy: String,
    /// `X-Frame-Options`.
    pub frame_options: FrameOptions,
}

/// The Content-Security-Policy used when the realm sets none.
pub const DEFAULT_CSP: &str =
    "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

impl Default for SecurityHeadersSpec {
    fn default() -> Self {
        Self {
            hsts_max_age: 31_536_000,
            hsts_preload: false,
            content_security_policy: DEFAULT_CSP.to_owned(),
            frame_options: FrameOptions::Deny,
        }
    }
}

/// `X-Frame-Options` values.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FrameOptions {
    /// Never framed.
    #[default]
    Deny,
    /// Framed only by the same origin.
    #[serde(rename = "SAMEORIGIN")]
    SameOrigin,
}

/// Pod scheduling and resources.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PodOverrides {
    /// Container resources; defaults suit a small realm (bcrypt needs CPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread; defaults to spreading over nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topology_spread: Vec<TopologySpreadConstraint>,
    /// Extra pod labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// PriorityClass of the pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
}

/// Observed state of a realm.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthRealmStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, SecretsReady, CertificateReady, MonitoringReady, Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Public base URL of the realm (the issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// OpenID Connect discovery document URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// JWKS URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Ready auth server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// `kid`s in the JWKS, the active signing key first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_key_ids: Vec<String>,
    /// When the signing keys last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key_rotation: Option<Time>,
    /// Expiry of the serving certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<Time>,
    /// Policies attached to this realm.
    #[serde(default)]
    pub attached_policies: AttachedPolicies,
}

/// Policies attached to a realm.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AttachedPolicies {
    /// RateLimitPolicies, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limit: Vec<String>,
    /// The RetentionPolicy, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}
