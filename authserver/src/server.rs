//! Start-up: configuration, secrets, stores and the two listeners, with graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use portcullis_crds::{RealmSettings, parse_manifests};
use tokio::net::TcpListener;

use crate::auth::accounts::AuthService;
use crate::auth::breach::BreachChecker;
use crate::auth::hashing::PasswordHasher;
use crate::auth::tokens::KeyRing;
use crate::clock::Clock;
use crate::http::{self, state::AppState};
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::secrets::Secrets;
use crate::settings_check;
use crate::store::kv::Kv;
use crate::store::postgres::Db;

/// Why the server could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The realm configuration is unreadable or invalid.
    #[error("invalid realm configuration: {0}")]
    Config(String),
    /// A secret is missing or malformed.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
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
}

/// Reads a realm's manifests from one or more YAML files and derives its settings.
pub fn load_settings(paths: &[PathBuf]) -> Result<RealmSettings, StartupError> {
    let mut yaml = String::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StartupError::Config(format!("cannot read {}: {e}", path.display())))?;
        yaml.push_str("\n---\n");
        yaml.push_str(&text);
    }
    let manifests = parse_manifests(&yaml).map_err(|e| StartupError::Config(e.to_string()))?;
    let settings = RealmSettings::from_manifests(&manifests)
        .map_err(|e| StartupError::Config(e.to_string()))?;
    settings_check::check(&settings).map_err(StartupError::Config)?;
    Ok(settings)
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

/// Everything `build_service` assembles.
pub struct ServiceParts {
    /// The realm.
    pub settings: RealmSettings,
    /// Loaded secrets.
    pub secrets: Secrets,
    /// Database.
    pub db: Db,
    /// Session store.
    pub kv: Kv,
    /// Clock.
    pub clock: Clock,
    /// Where mail is written as `.eml` files.
    pub mail_dir: Option<PathBuf>,
    /// The offline breach list, for `mode: Offline`.
    pub breach_list: Option<PathBuf>,
    /// Concurrent bcrypt runs (defaults to the core count).
    pub hash_permits: usize,
}

/// Builds the account service from its parts.
pub fn build_service(parts: ServiceParts) -> Result<(Arc<AuthService>, String), StartupError> {
    let ServiceParts {
        settings,
        secrets,
        db,
        kv,
        clock,
        mail_dir,
        breach_list,
        hash_permits,
    } = parts;
    settings_check::check(&settings).map_err(StartupError::Config)?;
    let missing = settings_check::unimplemented_features(&settings);
    if !missing.is_empty() {
        return Err(StartupError::Unimplemented(missing));
    }
    let spec = &settings.spec;
    if spec.tokens.signing_algorithm != portcullis_crds::realm::SigningAlgorithm::ES256 {
        return Err(StartupError::Config(format!(
            "tokens.signingAlgorithm {:?} is not implemented by this auth server version; use ES256",
            spec.tokens.signing_algorithm
        )));
    }
    let hasher = PasswordHasher::new(
        secrets.peppers.clone(),
        spec.password_policy.bcrypt_cost,
        hash_permits,
    )
    .map_err(|e| StartupError::Config(e.to_string()))?;
    let breach = BreachChecker::new(&spec.password_policy.breach_check, breach_list)
        .map_err(StartupError::Config)?;
    let keys =
        KeyRing::new(&secrets.signing_keys).map_err(|e| StartupError::Config(e.to_string()))?;
    let from = mail_sender(&settings);
    let mailer = Mailer::new(
        &from,
        &spec.issuer,
        &settings.name,
        secrets.smtp_url.as_deref(),
        mail_dir,
    )
    .map_err(|e| StartupError::Missing(format!("mail: {e}")))?;
    let service = AuthService {
        settings: Arc::new(settings),
        db,
        kv,
        hasher,
        breach,
        keys,
        mailer,
        clock,
        cookie_key: secrets.cookie_key.clone(),
        metrics: Arc::new(Metrics::new(
            secrets
                .signing_keys
                .first()
                .is_some_and(|k| k.created.is_some()),
        )),
    };
    Ok((Arc::new(service), secrets.admin_token))
}

/// Serves the public and admin apps until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    state: AppState,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let public_app =
        http::public_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let admin_app = http::admin_router(state).into_make_service_with_connect_info::<SocketAddr>();
    let public = axum::serve(public, public_app).with_graceful_shutdown(wait(rx.clone()));
    let admin = axum::serve(admin, admin_app).with_graceful_shutdown(wait(rx));
    tokio::try_join!(public.into_future(), admin.into_future())?;
    Ok(())
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

/// Connects the session store: Redis when a URL is given; memory only for one replica.
pub async fn connect_kv(
    settings: &RealmSettings,
    redis_url: Option<&str>,
    dev: bool,
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
        None => Ok(Kv::memory()),
    }
}
