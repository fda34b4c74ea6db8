//! The effective settings of a realm: its manifests with defaults applied, rate-limit policies
//! merged and every cross-field and cross-object rule checked. Both binaries use this: the
//! operator to validate before it builds anything, the auth server to configure itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use kube::ResourceExt;

use crate::client::{AuthClient, ClientType, EffectiveClient, GrantType};
use crate::cron::{CronError, CronSchedule};
use crate::manifests::RealmManifests;
use crate::rate_limit::{
    LimitKey, NginxLimits, RateLimitBackend, RateLimitFailureMode, RateLimitPolicy, Route,
};
use crate::realm::{AuthRealm, AuthRealmSpec, BreachCheckMode, SocialProviderType};
use crate::retention::{RetentionPolicy, RetentionRules};

/// Everything a realm's auth server and its Kubernetes objects are derived from.
#[derive(Clone, Debug, PartialEq)]
pub struct RealmSettings {
    /// `metadata.name` of the AuthRealm.
    pub name: String,
    /// `metadata.namespace` of the AuthRealm, when set.
    pub namespace: Option<String>,
    /// The realm spec with every default applied.
    pub spec: AuthRealmSpec,
    /// Host (and port, when not the scheme's default) of the issuer URL.
    pub issuer_host: String,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Merged rate limits.
    pub rate_limits: EffectiveRateLimits,
    /// Retention, when a RetentionPolicy targets the realm.
    pub retention: Option<EffectiveRetention>,
    /// The OpenID Connect clients the realm serves: its admitted AuthClients, by client id.
    pub clients: Vec<EffectiveClient>,
}

/// Rate limits after merging every policy that targets the realm.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectiveRateLimits {
    /// Names of the merged policies; empty when the built-in defaults apply.
    pub policies: Vec<String>,
    /// Where counters live.
    pub backend: RateLimitBackend,
    /// Behaviour when the counter store fails (`Closed` if any policy asks for it).
    pub failure_mode: RateLimitFailureMode,
    /// The winning limit per route class and key.
    pub limits: BTreeMap<(Route, LimitKey), EffectiveLimit>,
    /// Reverse-proxy limits (the lowest of every policy that enables them).
    pub nginx: Option<NginxLimits>,
}

/// One merged limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveLimit {
    /// Requests allowed per period.
    pub requests: u32,
    /// Length of the period.
    pub period: Duration,
    /// Extra requests allowed in a burst.
    pub burst: u32,
    /// Policy and rule the limit came from, `policy/rule` (`default/<rule>` for built-ins).
    pub source: String,
}

impl EffectiveLimit {
    /// Whether `self` allows fewer requests than `other`: the lower rate wins, then the
    /// smaller burst.
    fn is_stricter_than(&self, other: &EffectiveLimit) -> bool {
        // Compare requests/period as cross products in u128 to stay exact.
        let lhs = u128::from(self.requests) * other.period.as_millis();
        let rhs = u128::from(other.requests) * self.period.as_millis();
        lhs < rhs || (lhs == rhs && self.burst < other.burst)
    }
}

/// Retention after checks.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectiveRetention {
    /// Name of the RetentionPolicy.
    pub policy: String,
    /// The cron schedule as written.
    pub schedule_text: String,
    /// The parsed schedule.
    pub schedule: CronSchedule,
    /// Rules with defaults applied.
    pub rules: RetentionRules,
    /// Count only, change nothing.
    pub dry_run: bool,
}

/// An IP network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Network address (host bits cleared).
    pub network: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n`; host bits must be zero.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let network: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        let cidr = Cidr { network, prefix };
        cidr.contains(network)
            .then_some(cidr)
            .filter(|c| c.mask(network) == network)
    }

    fn mask(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `addr` is inside the network. An IPv4 network never contains an IPv6 address
    /// and vice versa, except IPv4-mapped IPv6 addresses, which are compared as IPv4.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        addr.is_ipv4() == self.network.is_ipv4() && self.mask(addr) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// One reason a set of manifests cannot make a working realm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// No AuthRealm among the manifests.
    #[error("no AuthRealm in the manifests")]
    NoRealm,
    /// More than one AuthRealm: one auth server serves one realm.
    #[error("more than one AuthRealm ({}): one auth server serves one realm", .0.join(", "))]
    MultipleRealms(Vec<String>),
    /// A policy targets another realm.
    #[error("{kind} {policy:?} targets realm {target:?}, not {realm:?}")]
    WrongTarget {
        /// Kind of the policy.
        kind: &'static str,
        /// Name of the policy.
        policy: String,
        /// The realm it names.
        target: String,
        /// The realm being configured.
        realm: String,
    },
    /// A policy lives in another namespace than the realm.
    #[error("{kind} {policy:?} is in namespace {namespace:?}, the realm in {realm_namespace:?}")]
    WrongNamespace {
        /// Kind of the policy.
        kind: &'static str,
        /// Name of the policy.
        policy: String,
        /// The policy's namespace.
        namespace: String,
        /// The realm's namespace.
        realm_namespace: String,
    },
    /// More than one RetentionPolicy targets the realm.
    #[error("more than one RetentionPolicy targets the realm ({}): keep one", .0.join(", "))]
    MultipleRetentionPolicies(Vec<String>),
    /// The retention schedule is not a valid cron schedule.
    #[error("RetentionPolicy {policy:?}: schedule {schedule:?} is invalid: {error}")]
    InvalidSchedule {
        /// Name of the policy.
        policy: String,
        /// The schedule as written.
        schedule: String,
        /// What is wrong with it.
        error: CronError,
    },
    /// The schedule never fires.
    #[error("RetentionPolicy {policy:?}: schedule {schedule:?} never fires")]
    ScheduleNeverFires {
        /// Name of the policy.
        policy: String,
        /// The schedule as written.
        schedule: String,
    },
    /// Two rules of one policy share a name.
    #[error("RateLimitPolicy {policy:?}: rule name {rule:?} is used twice")]
    DuplicateRuleName {
        /// Name of the policy.
        policy: String,
        /// The repeated rule name.
        rule: String,
    },
    /// One rule limits the same key twice.
    #[error("RateLimitPolicy {policy:?}, rule {rule:?}: key {key:?} is limited twice")]
    DuplicateLimitKey {
        /// Name of the policy.
        policy: String,
        /// Name of the rule.
        rule: String,
        /// The repeated key.
        key: LimitKey,
    },
    /// A policy asks for the Redis backend but the realm has no Redis.
    #[error("RateLimitPolicy {0:?} uses the Redis backend but the realm has no spec.redis")]
    RedisBackendWithoutRedis(String),
    /// Several replicas need Redis.
    #[error(
        "replicas is {0} but spec.redis is not set: sessions, lockouts and rate limits must be shared"
    )]
    ReplicasWithoutRedis(i32),
    /// A number is outside its allowed range.
    #[error("{field} is {value}, allowed {min}..={max}")]
    OutOfRange {
        /// Field path.
        field: &'static str,
        /// The value.
        value: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A duration must be longer than zero.
    #[error("{0} must be longer than 0s")]
    ZeroDuration(String),
    /// Two durations are in the wrong order.
    #[error("{shorter} ({shorter_value}) must not exceed {longer} ({longer_value})")]
    DurationOrder {
        /// Field that must be the shorter.
        shorter: &'static str,
        /// Its value as written.
        shorter_value: String,
        /// Field that must be the longer.
        longer: &'static str,
        /// Its value as written.
        longer_value: String,
    },
    /// The progressive delay would never start before the lockout.
    #[error(
        "lockout.progressiveDelay.afterFailures ({after}) must be below lockout.maxFailures ({max}), or 0 to turn the delay off"
    )]
    DelayAfterLockout {
        /// `afterFailures`.
        after: u32,
        /// `maxFailures`.
        max: u32,
    },
    /// The key rotation period leaves no time to publish a key before it signs.
    #[error(
        "tokens.keyRotation.every ({every}) must be longer than tokens.accessTokenTtl ({ttl}): a new key is published one access-token lifetime before it signs"
    )]
    RotationShorterThanTokens {
        /// `keyRotation.every`.
        every: String,
        /// `accessTokenTtl`.
        ttl: String,
    },
    /// The issuer URL is not acceptable.
    #[error("issuer {issuer:?}: {reason}")]
    InvalidIssuer {
        /// The issuer as written.
        issuer: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A trusted proxy is not a CIDR.
    #[error("trustedProxies: {0:?} is not a CIDR with its host bits zero (e.g. 10.0.0.0/8)")]
    InvalidCidr(String),
    /// Two entries of a keyed list share a key.
    #[error("{list}: {key:?} appears twice")]
    Duplicate {
        /// The list, e.g. `clients`.
        list: &'static str,
        /// The repeated key.
        key: String,
    },
    /// A client is configured in a way OAuth forbids.
    #[error("client {client:?}: {reason}")]
    InvalidClient {
        /// Client id.
        client: String,
        /// Why it is refused.
        reason: String,
    },
    /// A social provider is configured inconsistently.
    #[error("social provider {provider:?}: {reason}")]
    InvalidSocialProvider {
        /// Provider name.
        provider: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A field required by another is missing.
    #[error("{0}")]
    MissingDependency(&'static str),
    /// A duration is longer than its field allows ([`crate::duration::MAXIMA`]); the message
    /// is the schema's.
    #[error("{}", crate::duration::too_long_message(.field, .max))]
    DurationTooLong {
        /// Field path, as in the maxima table.
        field: String,
        /// The maximum, as written in the table.
        max: String,
    },
    /// A name cannot name the children derived from it.
    #[error("name {0:?}: {1}")]
    InvalidName(String, &'static str),
}

impl SettingsError {
    /// A stable CamelCase reason for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoRealm => "NoRealm",
            Self::MultipleRealms(_) => "MultipleRealms",
            Self::WrongTarget { .. } => "WrongTarget",
            Self::WrongNamespace { .. } => "WrongNamespace",
            Self::MultipleRetentionPolicies(_) => "MultipleRetentionPolicies",
            Self::InvalidSchedule { .. } => "InvalidSchedule",
            Self::ScheduleNeverFires { .. } => "ScheduleNeverFires",
            Self::DuplicateRuleName { .. } => "DuplicateRuleName",
            Self::DuplicateLimitKey { .. } => "DuplicateLimitKey",
            Self::RedisBackendWithoutRedis(_) => "RedisBackendWithoutRedis",
            Self::ReplicasWithoutRedis(_) => "ReplicasWithoutRedis",
            Self::OutOfRange { .. } => "OutOfRange",
            Self::ZeroDuration(_) => "ZeroDuration",
            Self::DurationOrder { .. } => "DurationOrder",
            Self::DelayAfterLockout { .. } => "DelayAfterLockout",
            Self::RotationShorterThanTokens { .. } => "RotationShorterThanTokens",
            Self::InvalidIssuer { .. } => "InvalidIssuer",
            Self::InvalidCidr(_) => "InvalidCidr",
            Self::Duplicate { .. } => "Duplicate",
            Self::InvalidClient { .. } => "InvalidClient",
            Self::InvalidSocialProvider { .. } => "InvalidSocialProvider",
            Self::MissingDependency(_) => "MissingDependency",
            Self::InvalidName(..) => "InvalidName",
            Self::DurationTooLong { .. } => "DurationTooLong",
        }
    }
}

/// Every reason a set of manifests was refused, in the order found (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsErrors(pub Vec<SettingsError>);

impl SettingsErrors {
    /// The reason of the first error, for a condition.
    pub fn reason(&self) -> &'static str {
        self.0.first().map_or("InvalidSpec", SettingsError::reason)
    }

    /// Whether any error is exactly `error`.
    pub fn contains(&self, error: &SettingsError) -> bool {
        self.0.contains(error)
    }
}

impl fmt::Display for SettingsErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let messages: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&messages.join("; "))
    }
}

impl std::error::Error for SettingsErrors {}

impl RealmSettings {
    /// Derives the settings from a realm's manifests: exactly one AuthRealm, any number of
    /// RateLimitPolicies, at most one RetentionPolicy and any number of AuthClients, all
    /// targeting it.
    pub fn from_manifests(manifests: &RealmManifests) -> Result<Self, SettingsErrors> {
        match manifests.realms.as_slice() {
            [] => Err(SettingsErrors(vec![SettingsError::NoRealm])),
            [realm] => Self::derive(
                realm,
                &manifests.rate_limit_policies,
                &manifests.retention_policies,
                &manifests.clients,
            ),
            many => Err(SettingsErrors(vec![SettingsError::MultipleRealms(
                many.iter().map(ResourceExt::name_any).collect(),
            )])),
        }
    }

    /// Derives the settings of `realm` with the policies and the admitted clients that target
    /// it. Admission by namespace is the operator's decision (it writes only admitted clients
    /// into the realm ConfigMap); here each client must name the realm and have a client id
    /// of its own.
    pub fn derive(
        realm: &AuthRealm,
        rate_limit_policies: &[RateLimitPolicy],
        retention_policies: &[RetentionPolicy],
        clients: &[AuthClient],
    ) -> Result<Self, SettingsErrors> {
        let mut errors = Vec::new();
        let name = realm.name_any();
        let namespace = realm.namespace();
        let spec = &realm.spec;

        if let Some(reason) = check_realm_name(&name) {
            errors.push(SettingsError::InvalidName(name.clone(), reason));
        }
        let issuer_host = check_issuer(&spec.issuer, &mut errors);
        check_realm_spec(spec, &mut errors);
        let trusted_proxies = spec
            .trusted_proxies
            .iter()
            .filter_map(|text| {
                let cidr = Cidr::parse(text);
                if cidr.is_none() {
                    errors.push(SettingsError::InvalidCidr(text.clone()));
                }
                cidr
            })
            .collect();

        for policy in rate_limit_policies {
            check_target(
                realm,
                "RateLimitPolicy",
                policy,
                &policy.spec.target_ref.name,
                &mut errors,
            );
        }
        for policy in retention_policies {
            check_target(
                realm,
                "RetentionPolicy",
                policy,
                &policy.spec.target_ref.name,
                &mut errors,
            );
        }
        for client in clients {
            if !client.targets(&name, namespace.as_deref()) {
                errors.push(SettingsError::WrongTarget {
                    kind: "AuthClient",
                    policy: client.name_any(),
                    target: client.spec.realm_ref.name.clone(),
                    realm: name.clone(),
                });
            }
        }
        let mut effective_clients: Vec<EffectiveClient> =
            clients.iter().map(EffectiveClient::of).collect();
        effective_clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        check_unique(
            "clients",
            effective_clients.iter().map(|c| c.client_id.as_str()),
            &mut errors,
        );
        for client in &effective_clients {
            check_client(client, &mut errors);
        }
        let rate_limits = merge_rate_limits(spec, rate_limit_policies, &mut errors);
        let retention = match retention_policies {
            [] => None,
            [policy] => effective_retention(policy, &mut errors),
            many => {
                errors.push(SettingsError::MultipleRetentionPolicies(
                    many.iter().map(ResourceExt::name_any).collect(),
                ));
                None
            }
        };

        if !errors.is_empty() {
            return Err(SettingsErrors(errors));
        }
        let mut spec = spec.clone();
        spec.clients = effective_clients.clone();
        Ok(RealmSettings {
            name,
            namespace,
            spec,
            issuer_host,
            trusted_proxies,
            rate_limits,
            retention,
            clients: effective_clients,
        })
    }
}

fn check_target<K: ResourceExt>(
    realm: &AuthRealm,
    kind: &'static str,
    policy: &K,
    target: &str,
    errors: &mut Vec<SettingsError>,
) {
    let realm_name = realm.name_any();
    if target != realm_name {
        errors.push(SettingsError::WrongTarget {
            kind,
            policy: policy.name_any(),
            target: target.to_owned(),
            realm: realm_name,
        });
    }
    // A policy without a namespace (a standalone file) is read as the realm's own.
    if let (Some(namespace), Some(realm_namespace)) = (policy.namespace(), realm.namespace())
        && namespace != realm_namespace
    {
        errors.push(SettingsError::WrongNamespace {
            kind,
            policy: policy.name_any(),
            namespace,
            realm_namespace,
        });
    }
}

/// Refuses `value` when it exceeds the maximum of `field` (the schema's CEL rule, checked
/// again for a standalone auth server).
fn check_maximum(field: &str, value: &crate::GoDuration, errors: &mut Vec<SettingsError>) {
    if let Some(max) = crate::duration::maximum(field)
        && value.as_duration() > max.as_duration()
    {
        errors.push(SettingsError::DurationTooLong {
            field: field.to_owned(),
            max: max.as_str().to_owned(),
        });
    }
}

/// The realm name rules of the schema's CEL: a DNS-1035 label (the Service is named after
/// the realm) of at most 40 characters (child names append suffixes).
fn check_realm_name(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    let valid = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !valid {
        Some(
            "realm names must be DNS-1035 labels (start with a letter): the realm's Service is named after it",
        )
    } else if name.len() > 40 {
        Some("realm names are at most 40 characters: child object names are derived from them")
    } else {
        None
    }
}

/// Checks the issuer and returns its host (with a non-default port).
fn check_issuer(issuer: &str, errors: &mut Vec<SettingsError>) -> String {
    let invalid = |reason| SettingsError::InvalidIssuer {
        issuer: issuer.to_owned(),
        reason,
    };
    let (scheme, rest) = match issuer.split_once("://") {
        Some(parts) => parts,
        None => {
            errors.push(invalid("not an absolute URL"));
            return String::new();
        }
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                host
            } else {
                authority
            }
        });
    if authority.is_empty() || authority.contains('@') {
        errors.push(invalid("needs a host and no user info"));
    }
    if issuer.contains('?') || issuer.contains('#') {
        errors.push(invalid("must not contain a query or fragment"));
    }
    if issuer.ends_with('/') {
        errors.push(invalid(
            "must not end with '/': the iss claim would differ from the discovery URL base",
        ));
    }
    let localhost = host == "localhost" || host.ends_with(".localhost");
    match scheme {
        "https" => {}
        "http" if localhost => {}
        "http" => errors.push(invalid("must use https:// (http:// only for localhost)")),
        _ => errors.push(invalid("must use https://")),
    }
    authority.to_owned()
}

/// The schema bounds and CEL rules, checked again so a standalone auth server (which reads
/// YAML without an API server) refuses exactly what the API server would.
fn check_realm_spec(spec: &AuthRealmSpec, errors: &mut Vec<SettingsError>) {
    let mut range = |field: &'static str, value: i64, min: i64, max: i64| {
        if !(min..=max).contains(&value) {
            errors.push(SettingsError::OutOfRange {
                field,
                value,
                min,
                max,
            });
        }
    };
    let pw = &spec.password_policy;
    range("replicas", spec.replicas.into(), 1, 20);
    range("passwordPolicy.minLength", pw.min_length.into(), 8, 128);
    range(
        "passwordPolicy.characterClasses",
        pw.character_classes.into(),
        0,
        4,
    );
    range("passwordPolicy.minStrength", pw.min_strength.into(), 0, 4);
    range("passwordPolicy.bcryptCost", pw.bcrypt_cost.into(), 10, 16);
    range(
        "lockout.maxFailures",
        spec.lockout.max_failures.into(),
        1,
        100,
    );
    range("mfa.totp.digits", spec.mfa.totp.digits.into(), 6, 8);
    range("mfa.totp.period", spec.mfa.totp.period.into(), 15, 120);
    range("mfa.recoveryCodes", spec.mfa.recovery_codes.into(), 0, 20);
    range(
        "tokens.keyRotation.keep",
        spec.tokens.key_rotation.keep.into(),
        1,
        10,
    );

    if spec.replicas > 1 && spec.redis.is_none() {
        errors.push(SettingsError::ReplicasWithoutRedis(spec.replicas));
    }

    let lockout = &spec.lockout;
    let tokens = &spec.tokens;
    let sessions = &spec.sessions;
    for (field, value) in [
        ("lockout.window", &lockout.window),
        ("lockout.baseLockout", &lockout.base_lockout),
        ("tokens.accessTokenTtl", &tokens.access_token_ttl),
        ("tokens.idTokenTtl", &tokens.id_token_ttl),
        ("tokens.refreshTokenTtl", &tokens.refresh_token_ttl),
        ("tokens.refreshIdleTtl", &tokens.refresh_idle_ttl),
        ("tokens.keyRotation.every", &tokens.key_rotation.every),
        ("sessions.idleTimeout", &sessions.idle_timeout),
        ("sessions.absoluteTimeout", &sessions.absolute_timeout),
        (
            "passwordPolicy.breachCheck.timeout",
            &pw.breach_check.timeout,
        ),
    ] {
        if value.as_duration().is_zero() {
            errors.push(SettingsError::ZeroDuration(field.to_owned()));
        }
    }
    for (field, value) in [
        (
            "passwordPolicy.breachCheck.timeout",
            &pw.breach_check.timeout,
        ),
        ("lockout.window", &lockout.window),
        ("lockout.baseLockout", &lockout.base_lockout),
        ("lockout.maxLockout", &lockout.max_lockout),
        (
            "lockout.progressiveDelay.base",
            &lockout.progressive_delay.base,
        ),
        (
            "lockout.progressiveDelay.max",
            &lockout.progressive_delay.max,
        ),
        ("tokens.accessTokenTtl", &tokens.access_token_ttl),
        ("tokens.idTokenTtl", &tokens.id_token_ttl),
        ("tokens.refreshTokenTtl", &tokens.refresh_token_ttl),
        ("tokens.refreshIdleTtl", &tokens.refresh_idle_ttl),
        ("tokens.keyRotation.every", &tokens.key_rotation.every),
        ("sessions.idleTimeout", &sessions.idle_timeout),
        ("sessions.absoluteTimeout", &sessions.absolute_timeout),
        ("monitoring.interval", &spec.monitoring.interval),
        (
            "monitoring.alertThresholds.certificateExpiryWarning",
            &spec.monitoring.alert_thresholds.certificate_expiry_warning,
        ),
        (
            "privacy.erasureGracePeriod",
            &spec.privacy.erasure_grace_period,
        ),
    ] {
        check_maximum(field, value, errors);
    }
    for (shorter, short, longer, long) in [
        (
            "lockout.baseLockout",
            &lockout.base_lockout,
            "lockout.maxLockout",
            &lockout.max_lockout,
        ),
        (
            "lockout.progressiveDelay.base",
            &lockout.progressive_delay.base,
            "lockout.progressiveDelay.max",
            &lockout.progressive_delay.max,
        ),
        (
            "sessions.idleTimeout",
            &sessions.idle_timeout,
            "sessions.absoluteTimeout",
            &sessions.absolute_timeout,
        ),
        (
            "tokens.refreshIdleTtl",
            &tokens.refresh_idle_ttl,
            "tokens.refreshTokenTtl",
            &tokens.refresh_token_ttl,
        ),
    ] {
        if short.as_duration() > long.as_duration() {
            errors.push(SettingsError::DurationOrder {
                shorter,
                shorter_value: short.to_string(),
                longer,
                longer_value: long.to_string(),
            });
        }
    }
    let delay_after = lockout.progressive_delay.after_failures;
    if delay_after != 0 && delay_after >= lockout.max_failures {
        errors.push(SettingsError::DelayAfterLockout {
            after: delay_after,
            max: lockout.max_failures,
        });
    }
    if tokens.key_rotation.every.as_duration() <= tokens.access_token_ttl.as_duration() {
        errors.push(SettingsError::RotationShorterThanTokens {
            every: tokens.key_rotation.every.to_string(),
            ttl: tokens.access_token_ttl.to_string(),
        });
    }
    if pw.breach_check.mode == BreachCheckMode::Offline
        && pw.breach_check.offline_list_ref.is_none()
    {
        errors.push(SettingsError::MissingDependency(
            "passwordPolicy.breachCheck.mode Offline requires offlineListRef",
        ));
    }
    if spec.email_verification.required
        && spec
            .notifications
            .as_ref()
            .and_then(|n| n.smtp.as_ref())
            .is_none()
    {
        errors.push(SettingsError::MissingDependency(
            "emailVerification.required needs notifications.smtp: verification mails must be delivered",
        ));
    }
    if spec.mfa.totp.required && !spec.mfa.totp.enabled {
        errors.push(SettingsError::MissingDependency(
            "mfa.totp.required needs mfa.totp.enabled",
        ));
    }
    if let Some(tls) = &spec.tls {
        let set = [
            tls.issuer_ref.is_some(),
            tls.self_signed.is_some(),
            tls.secret_name.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            errors.push(SettingsError::MissingDependency(
                "tls needs exactly one of issuerRef, selfSigned or secretName",
            ));
        }
    }
    let headers = &spec.security_headers;
    if headers.hsts_preload && headers.hsts_max_age < 31_536_000 {
        errors.push(SettingsError::MissingDependency(
            "securityHeaders.hstsPreload needs hstsMaxAge of at least one year (31536000)",
        ));
    }

    check_unique(
        "socialProviders",
        spec.social_providers.iter().map(|p| p.name.as_str()),
        errors,
    );
    check_unique(
        "privacy.purposes",
        spec.privacy.purposes.iter().map(|p| p.name.as_str()),
        errors,
    );
    for provider in &spec.social_providers {
        let invalid = |reason| SettingsError::InvalidSocialProvider {
            provider: provider.name.clone(),
            reason,
        };
        match (provider.provider_type, &provider.issuer_url) {
            (SocialProviderType::Oidc, None) => {
                errors.push(invalid("an Oidc provider needs issuerUrl"))
            }
            (SocialProviderType::GitHub | SocialProviderType::Google, Some(_)) => {
                errors.push(invalid("issuerUrl is only for Oidc providers"))
            }
            _ => {}
        }
    }
}

fn check_unique<'a>(
    list: &'static str,
    keys: impl Iterator<Item = &'a str>,
    errors: &mut Vec<SettingsError>,
) {
    let mut seen = BTreeSet::new();
    for key in keys {
        if !seen.insert(key) {
            errors.push(SettingsError::Duplicate {
                list,
                key: key.to_owned(),
            });
        }
    }
}

/// The CEL rules of an AuthClient and the redirect URI rules, checked again for a standalone
/// auth server.
pub fn check_client(client: &EffectiveClient, errors: &mut Vec<SettingsError>) {
    let mut invalid = |reason: String| {
        errors.push(SettingsError::InvalidClient {
            client: client.client_id.clone(),
            reason,
        })
    };
    if looks_like_uuid(&client.client_id) {
        // The subject of a client-credentials token is its client id, and user ids are UUIDs:
        // such a client could mint tokens whose `sub` names a user.
        invalid(
            "a client id shaped like a UUID could be taken for a user id; choose another"
                .to_owned(),
        );
    }
    let public = client.client_type == ClientType::Public;
    if public && client.grant_types.contains(&GrantType::ClientCredentials) {
        invalid("a Public client cannot use the client_credentials grant".to_owned());
    }
    if client.grant_types.contains(&GrantType::AuthorizationCode) && client.redirect_uris.is_empty()
    {
        invalid("the authorization_code grant needs at least one redirectUri".to_owned());
    }
    for uri in client
        .redirect_uris
        .iter()
        .chain(&client.post_logout_redirect_uris)
    {
        if let Err(reason) = check_redirect_uri(uri) {
            invalid(format!("redirect URI {uri:?} {reason}"));
        }
    }
}

/// Whether `id` has a UUID's shape (hyphenated or 32 hex digits), the shape of user ids.
fn looks_like_uuid(id: &str) -> bool {
    let hex = |part: &str| part.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = id.split('-').collect();
    match parts.as_slice() {
        [whole] => whole.len() == 32 && hex(whole),
        [a, b, c, d, e] => {
            [a.len(), b.len(), c.len(), d.len(), e.len()] == [8, 4, 4, 4, 12]
                && parts.iter().all(|part| hex(part))
        }
        _ => false,
    }
}

/// Redirect URIs per RFC 6749 §3.1.2 and RFC 8252 (native apps): absolute, no fragment,
/// https — or http on a loopback host, or a private-use scheme with a reverse-domain name.
fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.contains('#') {
        return Err("must not contain a fragment");
    }
    // Browsers read a backslash as a slash, so `http://evil\.localhost` would leave loopback.
    if uri.contains('\\') {
        return Err("must not contain a backslash");
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err("must be absolute");
    };
    match scheme {
        "https" => Ok(()),
        "http" => {
            let Some(after_slashes) = rest.strip_prefix("//") else {
                return Err("must be absolute");
            };
            // The authority ends at the path, the query or the fragment (RFC 3986 §3.2).
            let authority = after_slashes
                .split(['/', '?', '#'])
                .next()
                .unwrap_or_default();
            if authority.contains('@') {
                return Err("must not carry user information");
            }
            let host = match authority.rsplit_once(':') {
                Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
                _ => authority,
            };
            let host = host.to_ascii_lowercase();
            if ["localhost", "127.0.0.1", "[::1]"].contains(&host.as_str())
                || host.ends_with(".localhost")
            {
                Ok(())
            } else {
                Err("must use https (http only on loopback hosts)")
            }
        }
        // Private-use schemes must be reverse-domain names (RFC 8252 §7.1).
        scheme if scheme.contains('.') => Ok(()),
        _ => Err("must use https, loopback http, or a reverse-domain private-use scheme"),
    }
}

/// The built-in limits: all of them when no RateLimitPolicy targets the realm, and those of
/// every route and key no policy names otherwise. Bursts follow GCRA (`burst + 1` at once):
/// a user retyping a password or an MFA code gets five tries before waiting.
fn default_limits() -> BTreeMap<(Route, LimitKey), EffectiveLimit> {
    let minute = Duration::from_secs(60);
    let hour = Duration::from_secs(3_600);
    let limit = |requests, period, burst, rule: &str| EffectiveLimit {
        requests,
        period,
        burst,
        source: format!("default/{rule}"),
    };
    BTreeMap::from([
        ((Route::Login, LimitKey::Ip), limit(30, minute, 10, "login")),
        (
            (Route::Login, LimitKey::User),
            limit(10, minute, 4, "login"),
        ),
        ((Route::Mfa, LimitKey::User), limit(10, minute, 4, "mfa")),
        (
            (Route::Register, LimitKey::Ip),
            limit(10, hour, 5, "register"),
        ),
        (
            (Route::PasswordReset, LimitKey::Ip),
            limit(10, hour, 5, "password-reset"),
        ),
        (
            (Route::PasswordReset, LimitKey::User),
            limit(3, hour, 2, "password-reset"),
        ),
        (
            (Route::Token, LimitKey::Client),
            limit(600, minute, 100, "token"),
        ),
        ((Route::All, LimitKey::Ip), limit(600, minute, 200, "all")),
    ])
}

fn merge_rate_limits(
    spec: &AuthRealmSpec,
    policies: &[RateLimitPolicy],
    errors: &mut Vec<SettingsError>,
) -> EffectiveRateLimits {
    let shared_default = if spec.redis.is_some() {
        RateLimitBackend::Redis
    } else {
        RateLimitBackend::Local
    };
    if policies.is_empty() {
        return EffectiveRateLimits {
            policies: Vec::new(),
            backend: shared_default,
            failure_mode: RateLimitFailureMode::Closed,
            limits: default_limits(),
            nginx: None,
        };
    }
    let mut merged = EffectiveRateLimits {
        policies: Vec::new(),
        backend: RateLimitBackend::Local,
        failure_mode: RateLimitFailureMode::Open,
        limits: BTreeMap::new(),
        nginx: None,
    };
    // Policies are merged in name order so the result (and `source`) never depends on the
    // order the API server listed them in.
    let mut sorted: Vec<&RateLimitPolicy> = policies.iter().collect();
    sorted.sort_by_key(|p| p.name_any());
    for policy in sorted {
        let policy_name = policy.name_any();
        let pspec = &policy.spec;
        let backend = pspec.backend.unwrap_or(shared_default);
        if backend == RateLimitBackend::Redis {
            if spec.redis.is_none() {
                errors.push(SettingsError::RedisBackendWithoutRedis(policy_name.clone()));
            }
            merged.backend = RateLimitBackend::Redis;
        }
        if pspec.failure_mode == RateLimitFailureMode::Closed {
            merged.failure_mode = RateLimitFailureMode::Closed;
        }
        let mut rule_names = BTreeSet::new();
        for rule in &pspec.rules {
            if !rule_names.insert(rule.name.as_str()) {
                errors.push(SettingsError::DuplicateRuleName {
                    policy: policy_name.clone(),
                    rule: rule.name.clone(),
                });
            }
            let mut keys = BTreeSet::new();
            for limit in &rule.limits {
                if !keys.insert(limit.key) {
                    errors.push(SettingsError::DuplicateLimitKey {
                        policy: policy_name.clone(),
                        rule: rule.name.clone(),
                        key: limit.key,
                    });
                }
                if !(1..=1_000_000).contains(&limit.requests) {
                    errors.push(SettingsError::OutOfRange {
                        field: "rules[].limits[].requests",
                        value: limit.requests.into(),
                        min: 1,
                        max: 1_000_000,
                    });
                    continue;
                }
                check_maximum("limits.period", &limit.period, errors);
                if limit.period.as_duration().is_zero() {
                    errors.push(SettingsError::ZeroDuration(format!(
                        "RateLimitPolicy {policy_name:?}, rule {:?}: period",
                        rule.name
                    )));
                    continue;
                }
                let candidate = EffectiveLimit {
                    requests: limit.requests,
                    period: limit.period.as_duration(),
                    burst: limit.burst,
                    source: format!("{policy_name}/{}", rule.name),
                };
                for route in &rule.routes {
                    match merged.limits.get(&(*route, limit.key)) {
                        Some(current) if !candidate.is_stricter_than(current) => {}
                        _ => {
                            merged.limits.insert((*route, limit.key), candidate.clone());
                        }
                    }
                }
            }
        }
        if let Some(nginx) = pspec.proxy.as_ref().and_then(|p| p.nginx.as_ref()) {
            for (field, value) in [
                ("proxy.nginx.requestsPerSecond", nginx.requests_per_second),
                ("proxy.nginx.connections", nginx.connections),
            ] {
                if !(1..=100_000).contains(&value) {
                    errors.push(SettingsError::OutOfRange {
                        field,
                        value: value.into(),
                        min: 1,
                        max: 100_000,
                    });
                }
            }
        }
        if let Some(nginx) = pspec
            .proxy
            .as_ref()
            .and_then(|p| p.nginx.as_ref())
            .filter(|n| n.enabled)
        {
            merged.nginx = Some(match merged.nginx.take() {
                None => nginx.clone(),
                Some(current) => NginxLimits {
                    enabled: true,
                    requests_per_second: current.requests_per_second.min(nginx.requests_per_second),
                    burst: current.burst.min(nginx.burst),
                    connections: current.connections.min(nginx.connections),
                },
            });
        }
        merged.policies.push(policy_name);
    }
    // A policy replaces the default of each route and key it names, looser or stricter; every
    // other route and key keeps its default, so adding a policy never drops a protection.
    for (route_key, default) in default_limits() {
        merged.limits.entry(route_key).or_insert(default);
    }
    merged
}

/// The longest RetentionPolicy name: its CronJob `<name>-retention` must stay within the 52
/// characters of a CronJob name (the schema's CEL rule says the same).
pub const MAX_RETENTION_POLICY_NAME: usize = 42;

fn effective_retention(
    policy: &RetentionPolicy,
    errors: &mut Vec<SettingsError>,
) -> Option<EffectiveRetention> {
    let name = policy.name_any();
    if name.len() > MAX_RETENTION_POLICY_NAME {
        errors.push(SettingsError::InvalidName(
            name.clone(),
            "RetentionPolicy names are at most 42 characters: its CronJob <name>-retention must stay within the 52 characters a CronJob name may have",
        ));
    }
    let spec = &policy.spec;
    let schedule: CronSchedule = match spec.schedule.parse() {
        Ok(schedule) => schedule,
        Err(error) => {
            errors.push(SettingsError::InvalidSchedule {
                policy: name,
                schedule: spec.schedule.clone(),
                error,
            });
            return None;
        }
    };
    // A schedule that fires at all fires within any five years (Feb 29 included), so one
    // fixed starting point decides it without reading the clock.
    if schedule
        .next_after(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .is_none()
    {
        errors.push(SettingsError::ScheduleNeverFires {
            policy: name.clone(),
            schedule: spec.schedule.clone(),
        });
    }
    let rules = &spec.rules;
    if let Some(inactive) = &rules.inactive_accounts {
        if inactive.after.as_duration().is_zero() {
            errors.push(SettingsError::ZeroDuration(
                "rules.inactiveAccounts.after".to_owned(),
            ));
        }
        if inactive.warn_before.as_duration() >= inactive.after.as_duration() {
            errors.push(SettingsError::DurationOrder {
                shorter: "rules.inactiveAccounts.warnBefore",
                shorter_value: inactive.warn_before.to_string(),
                longer: "rules.inactiveAccounts.after",
                longer_value: inactive.after.to_string(),
            });
        }
    }
    for (field, value) in [
        ("rules.auditLogs.retainFor", &rules.audit_logs.retain_for),
        (
            "rules.unverifiedAccounts.after",
            &rules.unverified_accounts.after,
        ),
    ] {
        if value.as_duration().is_zero() {
            errors.push(SettingsError::ZeroDuration(field.to_owned()));
        }
    }
    let mut maxima = vec![
        ("rules.auditLogs.retainFor", &rules.audit_logs.retain_for),
        (
            "rules.unverifiedAccounts.after",
            &rules.unverified_accounts.after,
        ),
        (
            "rules.expiredSessionsAndTokens.after",
            &rules.expired_sessions_and_tokens.after,
        ),
        (
            "rules.withdrawnConsents.retainFor",
            &rules.withdrawn_consents.retain_for,
        ),
    ];
    if let Some(inactive) = &rules.inactive_accounts {
        maxima.push(("rules.inactiveAccounts.after", &inactive.after));
        maxima.push(("rules.inactiveAccounts.warnBefore", &inactive.warn_before));
    }
    for (field, value) in maxima {
        check_maximum(field, value, errors);
    }
    Some(EffectiveRetention {
        policy: name,
        schedule_text: spec.schedule.clone(),
        schedule,
        rules: rules.clone(),
        dry_run: spec.dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::parse_manifests;

    const REALM: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: demo, namespace: auth}
spec:
  issuer: https://auth.example.com
  database: {secretRef: {name: db}}
  notifications: {smtp: {secretRef: {name: smtp}, from: no-reply@example.com}}
";

    fn realm_with(extra_spec: &str) -> String {
        format!("{REALM}{extra_spec}")
    }

    fn policy(name: &str, body: &str) -> String {
        format!(
            "---
apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: {name}, namespace: auth}}
spec:
  targetRef: {{name: demo}}
{body}"
        )
    }

    fn rules(rules: &[(&str, &str, &str)]) -> String {
        // (routes, key, "requests/period/burst")
        let mut out = String::from("  rules:\n");
        for (i, (routes, key, limit)) in rules.iter().enumerate() {
            let [requests, period, burst]: [&str; 3] =
                limit.split('/').collect::<Vec<_>>().try_into().unwrap();
            out.push_str(&format!(
                "    - name: r{i}\n      routes: [{routes}]\n      limits: [{{key: {key}, requests: {requests}, period: {period}, burst: {burst}}}]\n"
            ));
        }
        out
    }

    fn client(name: &str, spec: &str) -> String {
        format!(
            "---
apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {{name: {name}, namespace: auth}}
spec: {{realmRef: {{name: demo}}, {spec}}}
"
        )
    }

    #[test]
    fn admitted_clients_are_served_by_their_effective_ids() {
        let yaml = format!(
            "{REALM}{}{}",
            client(
                "web",
                "type: Confidential, redirectUris: [\"https://a.example.com/cb\"]"
            ),
            client(
                "spa",
                "clientId: a-spa, type: Public, redirectUris: [\"https://a.example.com/cb\"]"
            )
        );
        let s = settings(&yaml).unwrap();
        let ids: Vec<&str> = s.clients.iter().map(|c| c.client_id.as_str()).collect();
        assert_eq!(ids, ["a-spa", "auth-web"]);
        assert_eq!(
            s.spec.clients, s.clients,
            "the copy in the spec is the same list"
        );
        assert_eq!(s.clients[1].client_type, ClientType::Confidential);
    }

    fn settings(yaml: &str) -> Result<RealmSettings, SettingsErrors> {
        RealmSettings::from_manifests(
            &parse_manifests(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")),
        )
    }

    fn limit(s: &RealmSettings, route: Route, key: LimitKey) -> (u32, u64, u32, String) {
        let l = &s.rate_limits.limits[&(route, key)];
        (l.requests, l.period.as_secs(), l.burst, l.source.clone())
    }

    #[test]
    fn defaults_fill_every_unset_field() {
        let s = settings(REALM).unwrap();
        let spec = &s.spec;
        let secs = |d: &crate::GoDuration| d.as_duration().as_secs();
        let table: Vec<(&str, u64, u64)> = vec![
            ("replicas", spec.replicas as u64, 1),
            ("minLength", spec.password_policy.min_length.into(), 12),
            (
                "characterClasses",
                spec.password_policy.character_classes.into(),
                3,
            ),
            ("minStrength", spec.password_policy.min_strength.into(), 3),
            ("bcryptCost", spec.password_policy.bcrypt_cost.into(), 12),
            (
                "breach timeout",
                secs(&spec.password_policy.breach_check.timeout),
                2,
            ),
            ("maxFailures", spec.lockout.max_failures.into(), 5),
            ("window", secs(&spec.lockout.window), 900),
            ("baseLockout", secs(&spec.lockout.base_lockout), 60),
            ("maxLockout", secs(&spec.lockout.max_lockout), 3_600),
            (
                "delay after",
                spec.lockout.progressive_delay.after_failures.into(),
                3,
            ),
            ("delay base", secs(&spec.lockout.progressive_delay.base), 1),
            ("delay max", secs(&spec.lockout.progressive_delay.max), 30),
            ("totp digits", spec.mfa.totp.digits.into(), 6),
            ("totp period", spec.mfa.totp.period.into(), 30),
            ("recovery codes", spec.mfa.recovery_codes.into(), 10),
            ("access ttl", secs(&spec.tokens.access_token_ttl), 600),
            ("id ttl", secs(&spec.tokens.id_token_ttl), 600),
            (
                "refresh ttl",
                secs(&spec.tokens.refresh_token_ttl),
                30 * 86_400,
            ),
            (
                "refresh idle",
                secs(&spec.tokens.refresh_idle_ttl),
                7 * 86_400,
            ),
            (
                "rotation every",
                secs(&spec.tokens.key_rotation.every),
                30 * 86_400,
            ),
            ("rotation keep", spec.tokens.key_rotation.keep.into(), 2),
            ("session idle", secs(&spec.sessions.idle_timeout), 1_800),
            (
                "session absolute",
                secs(&spec.sessions.absolute_timeout),
                43_200,
            ),
            (
                "hsts",
                spec.security_headers.hsts_max_age.into(),
                31_536_000,
            ),
            ("erasure grace", secs(&spec.privacy.erasure_grace_period), 0),
            (
                "rateLimitedPerMinute",
                spec.monitoring
                    .alert_thresholds
                    .rate_limited_per_minute
                    .into(),
                100,
            ),
            (
                "passwordSprayIdentifiers",
                spec.monitoring
                    .alert_thresholds
                    .password_spray_identifiers
                    .into(),
                50,
            ),
            (
                "breachedLoginsPerHour",
                spec.monitoring
                    .alert_thresholds
                    .breached_logins_per_hour
                    .into(),
                10,
            ),
            (
                "breachCheckErrorPercent",
                spec.monitoring
                    .alert_thresholds
                    .breach_check_error_percent
                    .into(),
                10,
            ),
            (
                "credentialStuffingIdentifiersPerIp",
                spec.monitoring
                    .alert_thresholds
                    .credential_stuffing_identifiers_per_ip
                    .into(),
                20,
            ),
        ];
        for (field, actual, expected) in table {
            assert_eq!(actual, expected, "{field}");
        }
        assert_eq!(
            spec.password_policy.breach_check.mode,
            BreachCheckMode::Online
        );
        assert!(spec.mfa.totp.enabled && !spec.mfa.totp.required);
        assert!(spec.email_verification.required);
        assert!(spec.network_policy.enabled && spec.network_policy.allow_external_https);
        assert!(spec.monitoring.service_monitor && spec.monitoring.prometheus_rule);
        assert_eq!(
            spec.security_headers.content_security_policy,
            crate::realm::DEFAULT_CSP
        );
        assert_eq!(
            spec.tokens.signing_algorithm,
            crate::realm::SigningAlgorithm::ES256
        );
        assert_eq!(s.issuer_host, "auth.example.com");
        assert!(s.retention.is_none());
        use crate::realm::NotificationEvent::*;
        assert_eq!(
            spec.notifications.as_ref().map(|n| n.events.clone()),
            Some(vec![
                Lockout,
                NewDevice,
                Breach,
                Erasure,
                PasswordChanged,
                MfaChanged,
                IdentityLinked
            ]),
            "every event is notified unless the realm narrows the list"
        );
    }

    #[test]
    fn retention_defaults_fill_every_unset_rule() {
        let yaml = format!(
            "{REALM}---
apiVersion: portcullis.dev/v1alpha1
kind: RetentionPolicy
metadata: {{name: gdpr, namespace: auth}}
spec:
  targetRef: {{name: demo}}
"
        );
        let retention = settings(&yaml).unwrap().retention.unwrap();
        let secs = |d: &crate::GoDuration| d.as_duration().as_secs();
        assert_eq!(retention.schedule_text, "0 3 * * *");
        assert_eq!(secs(&retention.rules.audit_logs.retain_for), 365 * 86_400);
        assert_eq!(secs(&retention.rules.unverified_accounts.after), 7 * 86_400);
        assert_eq!(
            secs(&retention.rules.expired_sessions_and_tokens.after),
            86_400
        );
        assert_eq!(
            secs(&retention.rules.withdrawn_consents.retain_for),
            90 * 86_400
        );
        assert!(
            retention.rules.inactive_accounts.is_none(),
            "deleting accounts is opt-in"
        );
        assert!(!retention.dry_run);
    }

    #[test]
    fn without_policies_the_built_in_limits_apply() {
        let s = settings(REALM).unwrap();
        assert!(s.rate_limits.policies.is_empty());
        assert_eq!(s.rate_limits.backend, RateLimitBackend::Local);
        assert_eq!(s.rate_limits.failure_mode, RateLimitFailureMode::Closed);
        assert_eq!(limit(&s, Route::Login, LimitKey::User).0, 10);
        let with_redis = settings(&realm_with("  redis: {secretRef: {name: r}}\n")).unwrap();
        assert_eq!(with_redis.rate_limits.backend, RateLimitBackend::Redis);
    }

    /// (routes, key, "requests/period/burst") per rule.
    type Rules = Vec<(&'static str, &'static str, &'static str)>;
    /// (case, policy a's rules, policy b's rules, expected winner for (Login, Ip)).
    type MergeCase = (&'static str, Rules, Rules, (u32, u64, u32, &'static str));

    /// One row: the policies' rules, and the expected winner for (Login, Ip).
    #[test]
    fn merging_keeps_the_lower_limit_for_the_same_route_and_key() {
        let cases: Vec<MergeCase> = vec![
            (
                "lower requests win",
                vec![("Login", "Ip", "10/1m/0")],
                vec![("Login", "Ip", "20/1m/0")],
                (10, 60, 0, "a/r0"),
            ),
            (
                "lower rate wins across periods",
                vec![("Login", "Ip", "10/1m/0")],
                vec![("Login", "Ip", "100/1h/0")],
                (100, 3_600, 0, "b/r0"),
            ),
            (
                "second policy can win",
                vec![("Login", "Ip", "50/1m/0")],
                vec![("Login", "Ip", "5/1m/0")],
                (5, 60, 0, "b/r0"),
            ),
            (
                "equal rate, smaller burst wins",
                vec![("Login", "Ip", "60/1m/10")],
                vec![("Login", "Ip", "1/1s/2")],
                (1, 1, 2, "b/r0"),
            ),
            (
                "full tie keeps the first by name",
                vec![("Login", "Ip", "60/1m/5")],
                vec![("Login", "Ip", "1/1s/5")],
                (60, 60, 5, "a/r0"),
            ),
        ];
        for (case, a, b, expected) in cases {
            let yaml = format!(
                "{REALM}{}{}",
                policy("a", &rules(&a)),
                policy("b", &rules(&b))
            );
            let s = settings(&yaml).unwrap_or_else(|e| panic!("{case}: {e}"));
            let (requests, period, burst, source) = limit(&s, Route::Login, LimitKey::Ip);
            assert_eq!(
                (requests, period, burst, source.as_str()),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn merging_does_not_depend_on_the_order_policies_are_listed() {
        let a = policy("a", &rules(&[("Login", "Ip", "10/1m/0")]));
        let b = policy("b", &rules(&[("Login", "Ip", "600/1h/0")]));
        let ab = settings(&format!("{REALM}{a}{b}")).unwrap();
        let ba = settings(&format!("{REALM}{b}{a}")).unwrap();
        assert_eq!(ab.rate_limits, ba.rate_limits);
    }

    #[test]
    fn different_keys_and_routes_are_kept_side_by_side() {
        let yaml = format!(
            "{REALM}{}",
            policy(
                "a",
                &rules(&[
                    ("Login, Mfa", "Ip", "10/1m/0"),
                    ("Login", "User", "5/15m/0"),
                    ("All", "Ip", "600/1m/0")
                ])
            )
        );
        let s = settings(&yaml).unwrap();
        let from_policy: Vec<(Route, LimitKey, &str)> = s
            .rate_limits
            .limits
            .iter()
            .filter(|(_, l)| !l.source.starts_with("default/"))
            .map(|((route, key), l)| (*route, *key, l.source.as_str()))
            .collect();
        assert_eq!(
            from_policy,
            [
                (Route::Login, LimitKey::Ip, "a/r0"),
                (Route::Login, LimitKey::User, "a/r1"),
                (Route::Mfa, LimitKey::Ip, "a/r0"),
                (Route::All, LimitKey::Ip, "a/r2")
            ]
        );
        assert_eq!(s.rate_limits.policies, ["a"]);
    }

    #[test]
    fn a_policy_replaces_the_defaults_it_names_and_keeps_every_other_default() {
        // A policy for the token endpoint alone, looser than the default there.
        let yaml = format!(
            "{REALM}{}",
            policy("tokens", &rules(&[("Token", "Client", "6000/1m/500")]))
        );
        let s = settings(&yaml).unwrap();
        let defaults = settings(REALM).unwrap().rate_limits.limits;
        assert_eq!(
            limit(&s, Route::Token, LimitKey::Client),
            (6_000, 60, 500, "tokens/r0".to_owned()),
            "the policy's value replaces the default, even when looser"
        );
        let keys: Vec<&(Route, LimitKey)> = s.rate_limits.limits.keys().collect();
        assert_eq!(
            keys,
            defaults.keys().collect::<Vec<_>>(),
            "no route and key is dropped or added"
        );
        for (route_key, default) in &defaults {
            if *route_key != (Route::Token, LimitKey::Client) {
                assert_eq!(&s.rate_limits.limits[route_key], default, "{route_key:?}");
            }
        }
        assert_eq!(
            limit(&s, Route::Login, LimitKey::User),
            (10, 60, 4, "default/login".to_owned()),
            "login stays protected"
        );
    }

    /// GCRA lets `burst + 1` through at once: a person retyping a password or an MFA code, or
    /// asking for a second reset mail, is not refused by the defaults.
    #[test]
    fn default_limits_per_user_leave_room_to_retype() {
        let s = settings(REALM).unwrap();
        let table = [
            (Route::Login, LimitKey::User, (10, 60, 4, "default/login")),
            (Route::Mfa, LimitKey::User, (10, 60, 4, "default/mfa")),
            (
                Route::PasswordReset,
                LimitKey::User,
                (3, 3_600, 2, "default/password-reset"),
            ),
            (Route::Login, LimitKey::Ip, (30, 60, 10, "default/login")),
        ];
        for (route, key, (requests, period, burst, source)) in table {
            assert_eq!(
                limit(&s, route, key),
                (requests, period, burst, source.to_owned()),
                "{route:?}/{key:?}"
            );
        }
    }

    #[test]
    fn closed_failure_mode_and_redis_backend_win_the_merge() {
        let realm = realm_with("  redis: {secretRef: {name: r}}\n");
        let r = rules(&[("Login", "Ip", "10/1m/0")]);
        let yaml = format!(
            "{realm}{}{}",
            policy("a", &format!("{r}  backend: Local\n  failureMode: Open\n")),
            policy(
                "b",
                &format!("{r}  backend: Redis\n  failureMode: Closed\n")
            )
        );
        let s = settings(&yaml).unwrap();
        assert_eq!(s.rate_limits.backend, RateLimitBackend::Redis);
        assert_eq!(s.rate_limits.failure_mode, RateLimitFailureMode::Closed);
    }

    #[test]
    fn nginx_limits_take_the_lowest_of_enabled_policies() {
        let r = rules(&[("Login", "Ip", "10/1m/0")]);
        let yaml = format!(
            "{REALM}{}{}{}",
            policy(
                "a",
                &format!(
                    "{r}  proxy: {{nginx: {{requestsPerSecond: 10, burst: 50, connections: 30}}}}\n"
                )
            ),
            policy(
                "b",
                &format!(
                    "{r}  proxy: {{nginx: {{requestsPerSecond: 30, burst: 20, connections: 10}}}}\n"
                )
            ),
            policy(
                "c",
                &format!(
                    "{r}  proxy: {{nginx: {{enabled: false, requestsPerSecond: 1, burst: 1, connections: 1}}}}\n"
                )
            )
        );
        let nginx = settings(&yaml).unwrap().rate_limits.nginx.unwrap();
        assert_eq!(
            (nginx.requests_per_second, nginx.burst, nginx.connections),
            (10, 20, 10)
        );
    }

    fn retention(name: &str, target: &str, extra: &str) -> String {
        format!(
            "---
apiVersion: portcullis.dev/v1alpha1
kind: RetentionPolicy
metadata: {{name: {name}, namespace: auth}}
spec:
  targetRef: {{name: {target}}}
{extra}"
        )
    }

    /// Each row: the manifests and the reason the settings must refuse them with.
    #[test]
    fn inconsistent_manifests_are_refused_with_a_typed_error() {
        let r = rules(&[("Login", "Ip", "10/1m/0")]);
        let cases: Vec<(&str, String, &str)> = vec![
            ("no realm", policy("a", &r), "NoRealm"),
            (
                "two realms",
                format!("{REALM}---\n{}", REALM.replace("name: demo", "name: other")),
                "MultipleRealms",
            ),
            (
                "policy for another realm",
                format!(
                    "{REALM}{}",
                    policy("a", &r).replace("name: demo", "name: other")
                ),
                "WrongTarget",
            ),
            (
                "policy in another namespace",
                format!(
                    "{REALM}{}",
                    policy("a", &r).replace("namespace: auth", "namespace: elsewhere")
                ),
                "WrongNamespace",
            ),
            (
                "two retention policies",
                format!(
                    "{REALM}{}{}",
                    retention("a", "demo", ""),
                    retention("b", "demo", "")
                ),
                "MultipleRetentionPolicies",
            ),
            (
                "retention for another realm",
                format!("{REALM}{}", retention("a", "other", "")),
                "WrongTarget",
            ),
            (
                "reversed cron range",
                format!(
                    "{REALM}{}",
                    retention("a", "demo", "  schedule: \"0 10-5 * * *\"\n")
                ),
                "InvalidSchedule",
            ),
            (
                "cron that never fires",
                format!(
                    "{REALM}{}",
                    retention("a", "demo", "  schedule: \"0 0 31 2 *\"\n")
                ),
                "ScheduleNeverFires",
            ),
            (
                "warning after the action",
                format!(
                    "{REALM}{}",
                    retention(
                        "a",
                        "demo",
                        "  rules: {inactiveAccounts: {after: 30d, warnBefore: 60d}}\n"
                    )
                ),
                "DurationOrder",
            ),
            (
                "duplicate rule name",
                format!(
                    "{REALM}{}",
                    policy("a", &format!("{r}{}", r.replace("  rules:\n", "")))
                ),
                "DuplicateRuleName",
            ),
            (
                "duplicate key in a rule",
                format!(
                    "{REALM}{}",
                    policy(
                        "a",
                        "  rules:\n    - name: x\n      routes: [Login]\n      limits: [{key: Ip, requests: 1, period: 1m}, {key: Ip, requests: 2, period: 1m}]\n"
                    )
                ),
                "DuplicateLimitKey",
            ),
            (
                "redis backend without redis",
                format!("{REALM}{}", policy("a", &format!("{r}  backend: Redis\n"))),
                "RedisBackendWithoutRedis",
            ),
            (
                "zero period",
                format!(
                    "{REALM}{}",
                    policy("a", &rules(&[("Login", "Ip", "10/0s/0")]))
                ),
                "ZeroDuration",
            ),
            (
                "replicas without redis",
                realm_with("  replicas: 2\n"),
                "ReplicasWithoutRedis",
            ),
            (
                "bcrypt cost out of range",
                realm_with("  passwordPolicy: {bcryptCost: 9}\n"),
                "OutOfRange",
            ),
            (
                "base lockout above max",
                realm_with("  lockout: {baseLockout: 2h, maxLockout: 1h}\n"),
                "DurationOrder",
            ),
            (
                "idle above absolute",
                realm_with("  sessions: {idleTimeout: 1d, absoluteTimeout: 12h}\n"),
                "DurationOrder",
            ),
            (
                "refresh idle above absolute",
                realm_with("  tokens: {refreshIdleTtl: 60d, refreshTokenTtl: 30d}\n"),
                "DurationOrder",
            ),
            (
                "delay never before lockout",
                realm_with("  lockout: {maxFailures: 3, progressiveDelay: {afterFailures: 3}}\n"),
                "DelayAfterLockout",
            ),
            (
                "rotation shorter than tokens",
                realm_with("  tokens: {accessTokenTtl: 1h, keyRotation: {every: 30m}}\n"),
                "RotationShorterThanTokens",
            ),
            (
                "a lockout window of eleven thousand years",
                realm_with("  lockout: {window: 4000000d}\n"),
                "DurationTooLong",
            ),
            (
                "a refresh token living longer than its maximum",
                realm_with("  tokens: {refreshTokenTtl: 401d, refreshIdleTtl: 1d}\n"),
                "DurationTooLong",
            ),
            (
                "audit logs kept for a century",
                format!(
                    "{REALM}{}",
                    retention("a", "demo", "  rules: {auditLogs: {retainFor: 36500d}}\n")
                ),
                "DurationTooLong",
            ),
            (
                "a rate-limit period of a year",
                format!(
                    "{REALM}{}",
                    policy("a", &rules(&[("Login", "Ip", "10/365d/0")]))
                ),
                "DurationTooLong",
            ),
            (
                "zero access token ttl",
                realm_with("  tokens: {accessTokenTtl: 0s}\n"),
                "ZeroDuration",
            ),
            (
                "cidr with host bits",
                realm_with("  trustedProxies: [10.0.0.1/8]\n"),
                "InvalidCidr",
            ),
            (
                "verification without mail",
                REALM.replace("  notifications: {smtp: {secretRef: {name: smtp}, from: no-reply@example.com}}\n", ""),
                "MissingDependency",
            ),
            (
                "issuer with trailing slash",
                REALM.replace("https://auth.example.com", "https://auth.example.com/"),
                "InvalidIssuer",
            ),
            (
                "http issuer",
                REALM.replace("https://auth.example.com", "http://auth.example.com"),
                "InvalidIssuer",
            ),
            (
                "duplicate client",
                format!(
                    "{REALM}{}{}",
                    client("x", "clientId: a, type: Public, redirectUris: [\"https://a.example.com/cb\"]"),
                    client("second", "clientId: a, type: Public, redirectUris: [\"https://a.example.com/cb\"]")
                ),
                "Duplicate",
            ),
            (
                "http redirect to a remote host",
                format!(
                    "{REALM}{}",
                    client("x", "type: Public, redirectUris: [\"http://a.example.com/cb\"]")
                ),
                "InvalidClient",
            ),
            (
                "redirect with fragment",
                format!(
                    "{REALM}{}",
                    client("x", "type: Public, redirectUris: [\"https://a.example.com/cb#x\"]")
                ),
                "InvalidClient",
            ),
            (
                "client id shaped like a user id",
                format!(
                    "{REALM}{}",
                    client("x", "clientId: 0f8fad5b-d9cb-469f-a165-70867728950e, type: Confidential, grantTypes: [client_credentials]")
                ),
                "InvalidClient",
            ),
            (
                "public client with client_credentials",
                format!(
                    "{REALM}{}",
                    client("x", "type: Public, grantTypes: [client_credentials]")
                ),
                "InvalidClient",
            ),
            (
                "client of another realm",
                format!(
                    "{REALM}{}",
                    client("x", "type: Public, redirectUris: [\"https://a.example.com/cb\"]")
                        .replace("realmRef: {name: demo}", "realmRef: {name: other}")
                ),
                "WrongTarget",
            ),
            (
                "client naming the realm in another namespace",
                format!(
                    "{REALM}{}",
                    client("x", "type: Public, redirectUris: [\"https://a.example.com/cb\"]")
                        .replace("realmRef: {name: demo}", "realmRef: {name: demo, namespace: elsewhere}")
                ),
                "WrongTarget",
            ),
        ];
        for (case, yaml, reason) in cases {
            let errors = settings(&yaml).expect_err(case);
            assert!(
                errors.0.iter().any(|e| e.reason() == reason),
                "{case}: expected {reason}, got {errors}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let yaml = realm_with(
            "  replicas: 2\n  passwordPolicy: {bcryptCost: 30}\n  trustedProxies: [nonsense]\n",
        );
        let reasons: Vec<&str> = settings(&yaml)
            .unwrap_err()
            .0
            .iter()
            .map(SettingsError::reason)
            .collect();
        assert_eq!(
            reasons,
            ["OutOfRange", "ReplicasWithoutRedis", "InvalidCidr"]
        );
    }

    #[test]
    fn acceptable_redirect_uris_pass() {
        for uri in [
            "https://app.example.com/cb",
            "http://localhost:5173/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(check_redirect_uri(uri), Ok(()), "{uri}");
        }
        for uri in [
            "myapp:/cb",
            "http://evil.example.com/cb",
            "/relative",
            "https://a/cb#frag",
        ] {
            assert!(check_redirect_uri(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn loopback_lookalikes_with_a_remote_host_are_refused() {
        for uri in [
            "http://evil.example?.localhost/cb",
            "http://evil.example\\.localhost/cb",
            "http://evil.example#.localhost/cb",
            "http://localhost@evil.example/cb",
            "http://evil.example/.localhost",
            "http:evil.example.localhost",
        ] {
            assert!(check_redirect_uri(uri).is_err(), "{uri}");
        }
        assert_eq!(check_redirect_uri("http://LOCALHOST:5173/cb"), Ok(()));
        assert_eq!(check_redirect_uri("http://app.localhost/cb?x=1"), Ok(()));
    }

    #[test]
    fn client_ids_shaped_like_user_ids_are_recognised() {
        for id in [
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "0f8fad5bd9cb469fa16570867728950e",
        ] {
            assert!(looks_like_uuid(id), "{id}");
        }
        for id in [
            "shop-web",
            "0f8fad5b-d9cb-469f-a165",
            "billing-worker-0f8fad5b",
        ] {
            assert!(!looks_like_uuid(id), "{id}");
        }
    }

    #[test]
    fn http_issuers_are_allowed_on_localhost_only() {
        let ok = settings(&REALM.replace("https://auth.example.com", "http://auth.localhost:8080"))
            .unwrap();
        assert_eq!(ok.issuer_host, "auth.localhost:8080");
        assert!(
            settings(&REALM.replace("https://auth.example.com", "http://localhost.evil.com"))
                .is_err()
        );
    }

    #[test]
    fn cidrs_parse_and_contain_addresses() {
        let v4 = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(v4.contains("10.1.2.3".parse().unwrap()));
        assert!(!v4.contains("11.0.0.1".parse().unwrap()));
        assert!(
            v4.contains("::ffff:10.9.9.9".parse().unwrap()),
            "IPv4-mapped IPv6"
        );
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "10.0.0.0", "x/8", "fd00::/129"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }
}
