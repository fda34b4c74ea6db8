//! Start-up: the realm's settings and what is refused in them, the secrets dir, the stores,
//! and the assembly of the core and the HTTP state.

pub mod keys_check;
pub mod mfa_store;
pub mod secrets_dir;
pub mod settings_check;
pub mod termination;

use std::path::PathBuf;
use std::sync::Arc;

use portcullis_crds::{
    Ignored, ManifestError, RealmSettings, TolerantManifests, parse_manifests,
    parse_manifests_tolerant,
};

use crate::auth::breach::BreachChecker;
use crate::auth::core::{Core, CoreParts};
use crate::auth::hashing::{PasswordHasher, PoolSize};
use crate::auth::limits::{Limiter, LimiterParts};
use crate::auth::oidc::clients::ClientRegistry;
use crate::auth::tokens::KeyRing;
use crate::clock::Clock;
use crate::http::state::{AppState, WebSettings};
use crate::mail::{Mailer, Outbox, Sinks};
use crate::metrics::Metrics;
use crate::random::Random;
use crate::readiness::Readiness;
use crate::store::Db;
use crate::store::kv::Kv;
use secrets_dir::Secrets;

/// Why the server could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The realm configuration is unreadable or invalid.
    #[error("invalid realm configuration: {0}")]
    Config(String),
    /// A secret is missing or malformed.
    #[error(transparent)]
    Secrets(#[from] secrets_dir::SecretsError),
    /// A required setting is missing.
    #[error("{0}")]
    Missing(String),
    /// A dependency could not be reached.
    #[error("{0}")]
    Dependency(String),
    /// The realm asks for features this version does not implement.
    #[error(
        "the realm asks for what this auth server version has not implemented: {}; remove them or run a version that has them",
        .0.join(", ")
    )]
    Unimplemented(Vec<String>),
    /// Strictly read manifests hold fields or kinds this version does not know.
    #[error(
        "invalid realm configuration: not known to this version (a typo, or a field of a newer operator, which `serve` ignores): {}",
        .0.join("; ")
    )]
    UnknownFields(Vec<String>),
    /// The keys in the secrets dir do not cover the fingerprints the database recorded.
    #[error(transparent)]
    KeysMismatch(#[from] crate::auth::key_fingerprints::KeysMismatch),
    /// Stored recovery codes carry key versions (pepper versions `vN`) the peppers lack.
    #[error(
        "recovery codes in the database are hashed with pepper versions missing from the secrets dir: {}; restore those peppers (keep an old pepper until no code uses it)",
        .0.join(", ")
    )]
    RecoveryKeysMissing(Vec<String>),
    /// The public listener's TLS certificate or key cannot be used.
    #[error("TLS on the public listener: {0}")]
    Tls(#[from] crate::http::tls::TlsError),
}

impl StartupError {
    /// A stable CamelCase reason, for the termination message the operator reads
    /// (`KeysMismatch` becomes a condition of the realm).
    pub fn reason(&self) -> &'static str {
        match self {
            StartupError::Config(_) => "InvalidConfig",
            StartupError::Secrets(_) => "InvalidSecrets",
            StartupError::Missing(_) => "MissingSetting",
            StartupError::Dependency(_) => "DependencyUnavailable",
            StartupError::Unimplemented(_) => "NotImplemented",
            StartupError::UnknownFields(_) => "UnknownFields",
            StartupError::KeysMismatch(_) | StartupError::RecoveryKeysMissing(_) => "KeysMismatch",
            StartupError::Tls(_) => "InvalidTls",
        }
    }
}

/// How strictly a realm's manifests are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Files a person wrote (`check-config`): a field or kind this version does not know is
    /// a typo, and refused with every such field named.
    Strict,
    /// What the operator wrote (`serve`, `retention run`): a newer operator may add defaulted
    /// fields this version does not know; they are left out and reported in
    /// [`Loaded::ignored`], as the API server prunes unknown fields.
    Tolerant,
}

/// A realm's settings, and what reading its manifests left out.
#[derive(Debug)]
pub struct Loaded {
    /// The effective settings.
    pub settings: RealmSettings,
    /// Fields and documents this version does not know (empty when read strictly).
    pub ignored: Vec<Ignored>,
}

/// Reads a realm's manifests from one or more YAML files, derives its settings and refuses
/// what no command can work with (see `settings_check::check`).
pub fn load_settings(paths: &[PathBuf], reading: Reading) -> Result<Loaded, StartupError> {
    let mut yaml = String::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StartupError::Config(format!("cannot read {}: {e}", path.display())))?;
        yaml.push_str("\n---\n");
        yaml.push_str(&text);
    }
    let config = |e: ManifestError| StartupError::Config(e.to_string());
    let TolerantManifests { manifests, ignored } =
        parse_manifests_tolerant(&yaml).map_err(config)?;
    let manifests = match reading {
        Reading::Tolerant => manifests,
        Reading::Strict if !ignored.is_empty() => {
            return Err(StartupError::UnknownFields(
                ignored.iter().map(ToString::to_string).collect(),
            ));
        }
        Reading::Strict => parse_manifests(&yaml).map_err(config)?,
    };
    let settings = RealmSettings::from_manifests(&manifests)
        .map_err(|e| StartupError::Config(e.to_string()))?;
    settings_check::check(&settings).map_err(StartupError::Config)?;
    let ignored = match reading {
        Reading::Strict => Vec::new(),
        Reading::Tolerant => ignored,
    };
    Ok(Loaded { settings, ignored })
}

/// The sender of the realm's mail: `notifications.smtp.from`, else `no-reply@<issuer host>`.
pub fn mail_sender(settings: &RealmSettings) -> String {
    let host = settings
        .issuer_host
        .split(':')
        .next()
        .unwrap_or("localhost");
    settings
        .spec
        .notifications
        .as_ref()
        .and_then(|n| n.smtp.as_ref())
        .map_or_else(|| format!("no-reply@{host}"), |s| s.from.clone())
}

/// A mailer for the realm: SMTP when `smtp_url` is given, `.eml` files into `dir`.
pub fn mailer(
    settings: &RealmSettings,
    smtp_url: Option<&str>,
    dir: Option<PathBuf>,
    clock: Clock,
    random: Random,
) -> Result<Mailer, crate::mail::MailError> {
    let from = mail_sender(settings);
    let sinks = Sinks {
        from: &from,
        issuer: &settings.spec.issuer,
        realm: &settings.name,
        smtp_url,
        dir,
    };
    Mailer::new(sinks, clock, random)
}

/// Everything [`build`] assembles.
pub struct ServiceParts {
    /// The realm.
    pub settings: RealmSettings,
    /// Loaded secrets.
    pub secrets: Secrets,
    /// Accounts database.
    pub db: Db,
    /// Session store.
    pub kv: Kv,
    /// Clock.
    pub clock: Clock,
    /// Random source.
    pub random: Random,
    /// Where mail is written as `.eml` files.
    pub mail_dir: Option<PathBuf>,
    /// The offline breach list, for `mode: Offline`.
    pub breach_list: Option<PathBuf>,
    /// Concurrent bcrypt runs (the core count); eight callers per run may queue.
    pub hash_permits: usize,
    /// Whether the realm's rate limits are enforced: always in `serve`; tests and benchmarks
    /// that are not about limits leave them off, as their volume would trip them.
    pub rate_limiting: bool,
    /// Whether a webhook receiver on a loopback address over http is allowed: `--dev` and
    /// tests only; a deployment posts to public https receivers only.
    pub webhook_loopback: bool,
}

/// What [`build`] makes: the state the listeners serve, and the hasher (its counters are
/// read by tests and benchmarks).
#[derive(Debug)]
pub struct Service {
    /// The HTTP state.
    pub state: AppState,
    /// The password hasher.
    pub hasher: Arc<PasswordHasher>,
    /// The notification worker to start with the server's shutdown watch (PostgreSQL only;
    /// on the in-memory database notices are mailed at once).
    pub notifications: Option<crate::notify::outbox::Runner>,
}

/// Builds the service from its parts, refusing realms it cannot serve.
pub fn build(parts: ServiceParts) -> Result<Service, StartupError> {
    let ServiceParts {
        settings,
        secrets,
        db,
        kv,
        clock,
        random,
        mail_dir,
        breach_list,
        hash_permits,
        rate_limiting,
        webhook_loopback,
    } = parts;
    settings_check::check(&settings).map_err(StartupError::Config)?;
    let missing = settings_check::unimplemented_features(&settings);
    if !missing.is_empty() {
        return Err(StartupError::Unimplemented(missing));
    }
    let spec = &settings.spec;
    let hasher = PasswordHasher::new(
        secrets.peppers.clone(),
        spec.password_policy.bcrypt_cost,
        PoolSize::with_permits(hash_permits),
        random.clone(),
    )
    .map_err(|e| StartupError::Config(e.to_string()))?;
    let breach = BreachChecker::new(&spec.password_policy.breach_check, breach_list)
        .map_err(StartupError::Config)?;
    let keys = Arc::new(
        KeyRing::new(&secrets.signing_keys, crate::wiring::signing_random())
            .map_err(|e| StartupError::Config(e.to_string()))?,
    );
    let mailer = mailer(
        &settings,
        secrets.smtp_url.as_deref(),
        mail_dir,
        clock.clone(),
        random.clone(),
    )
    .map_err(|e| StartupError::Missing(format!("mail: {e}")))?;
    let metrics = Arc::new(Metrics::new(
        secrets
            .signing_keys
            .first()
            .is_some_and(|k| k.created.is_some()),
    ));
    let clients = ClientRegistry::new(&settings.clients, &secrets.client_secrets)
        .map_err(StartupError::Missing)?;
    let (redis, prefix) = match &kv {
        Kv::Redis { conn, prefix } => (Some(conn.clone()), prefix.clone()),
        Kv::Memory(_) => (None, format!("portcullis:{}:", settings.name)),
    };
    let limits = Arc::new(Limiter::new(LimiterParts {
        limits: settings.rate_limits.clone(),
        enabled: rate_limiting,
        redis,
        prefix,
        clock: clock.clone(),
        metrics: metrics.clone(),
    }));
    let social = if spec.social_providers.is_empty() {
        None
    } else {
        let pg = db.postgres().ok_or_else(|| {
            StartupError::Config("socialProviders need PostgreSQL (the links live there)".into())
        })?;
        Some(social_providers(spec, &secrets, pg.pool().clone())?)
    };
    let settings = Arc::new(settings);
    let web = WebSettings::new(&settings, &secrets.admin_token);
    let audit = db.audit_log(secrets.audit_keys.clone(), &settings.name);
    let mut key_fingerprints =
        crate::auth::key_fingerprints::fingerprints(&secrets.peppers, &secrets.fernet_keys);
    key_fingerprints.extend(crate::auth::key_fingerprints::audit_fingerprints(
        &secrets.audit_key_lines,
    ));
    let mailer = Arc::new(mailer);
    let wants_webhook = settings
        .spec
        .notifications
        .as_ref()
        .is_some_and(|n| n.webhook.is_some());
    if wants_webhook && secrets.webhook.is_none() {
        return Err(StartupError::Missing(
            "notifications.webhook needs webhook-url and webhook-secret in the secrets dir".into(),
        ));
    }
    let (durable, notifications) = match db.postgres() {
        Some(pg) => {
            // The webhook client needs a TLS provider; the server's is ring.
            crate::install_crypto_provider();
            let (durable, runner) = crate::notify::outbox::setup(crate::notify::outbox::Setup {
                pool: pg.pool().clone(),
                clock: clock.clone(),
                mailer: mailer.clone(),
                webhook: secrets
                    .webhook
                    .as_ref()
                    .map(|(url, key)| (url.as_str(), key.as_str())),
                realm: &settings.name,
                allow_loopback: webhook_loopback,
                metrics: metrics.clone(),
                config: crate::notify::outbox::WORKER_CONFIG,
            })
            .map_err(|e| StartupError::Config(e.to_string()))?;
            (Some(durable), Some(runner))
        }
        None => (None, None),
    };
    // The second factor lives in PostgreSQL only; the in-memory database has none.
    let mfa = db
        .postgres()
        .map(|pg| mfa_store::build(pg.pool().clone(), &secrets, &settings.name))
        .transpose()?;
    let core = Core::new(CoreParts {
        settings,
        db: db.clone(),
        kv: kv.clone(),
        hasher: hasher.clone(),
        breach,
        keys: keys.clone(),
        outbox: Outbox::Deliver {
            mailer,
            metrics: metrics.clone(),
        },
        clock: clock.clone(),
        random: random.clone(),
        metrics: metrics.clone(),
        csrf_key: secrets.cookie_key.clone(),
        clients,
        limits,
        audit,
        key_fingerprints,
    });
    let core = match durable {
        Some(durable) => core.with_durable_notices(durable),
        None => core,
    };
    let core = match mfa {
        Some(mfa) => core.with_mfa(mfa),
        None => core,
    };
    let core = match social {
        Some(social) => core.with_social(social),
        None => core,
    };
    let state = AppState {
        core: Arc::new(core),
        metrics,
        keys,
        readiness: Readiness::new(db, kv),
        clock,
        random,
        web: Arc::new(web),
    };
    Ok(Service {
        state,
        hasher,
        notifications,
    })
}

/// The realm's social providers with their client secrets, spoken to over the crate's client
/// (trusting `social-ca.crt` alone when the secrets dir has it). Nothing is fetched here: each
/// provider is discovered on its first use, so one that is down stops no one else.
fn social_providers(
    spec: &portcullis_crds::realm::AuthRealmSpec,
    secrets: &Secrets,
    pool: sqlx::PgPool,
) -> Result<crate::auth::social::Social, StartupError> {
    crate::install_crypto_provider();
    let mut settings = Vec::with_capacity(spec.social_providers.len());
    for provider in &spec.social_providers {
        let secret = secrets.social_secrets.get(&provider.name).ok_or_else(|| {
            StartupError::Missing(format!(
                "socialProviders {}: its client secret {} is not in the secrets dir",
                provider.name,
                secrets_dir::files::social_client_secret(&provider.name)
            ))
        })?;
        settings.push(
            portcullis_social::ProviderSettings::from_crd(provider, secret)
                .map_err(|e| StartupError::Config(e.to_string()))?,
        );
    }
    let http = match &secrets.social_ca {
        Some(pem) => portcullis_social::HttpClient::trusting(pem),
        None => portcullis_social::HttpClient::new(),
    }
    .map_err(|e| StartupError::Config(format!("social providers' HTTP client: {e}")))?;
    Ok(crate::auth::social::Social::new(
        settings,
        http,
        portcullis_social::pg::PgLinkStore::new(pool),
    ))
}

/// Connects the session store: Redis when a URL is given; memory (on `clock`) only for one
/// replica.
pub async fn connect_kv(
    settings: &RealmSettings,
    redis_url: Option<&str>,
    dev: bool,
    clock: Clock,
) -> Result<Kv, StartupError> {
    match redis_url {
        Some(url) => Kv::redis(url, &format!("portcullis:{}:", settings.name))
            .await
            .map_err(|e| StartupError::Dependency(format!("cannot connect to Redis: {e}"))),
        None if settings.spec.redis.is_some() && !dev => Err(StartupError::Missing(
            "the realm has spec.redis but REDIS_URL is not set".into(),
        )),
        None if settings.spec.replicas > 1 => Err(StartupError::Missing(
            "several replicas need Redis: set REDIS_URL".into(),
        )),
        None => Ok(Kv::memory(clock)),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; draining requests");
}
