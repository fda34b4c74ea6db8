//! `portcullis-authserver` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use portcullis_authserver::auth::key_fingerprints;
use portcullis_authserver::http::{ConnectionLimits, Listeners, ServeLimits};
use portcullis_authserver::privacy::retention;
use portcullis_authserver::startup::{
    self, Loaded, Reading, ServiceParts, secrets_dir, settings_check,
};
use portcullis_authserver::store::Postgres;
use portcullis_authserver::store::kv::Kv;
use portcullis_authserver::{http, install_crypto_provider, wiring};
use portcullis_crds::RealmSettings;

/// The Portcullis auth server. Without a subcommand it serves (`serve`).
#[derive(Parser, Debug)]
#[command(
    name = "portcullis-authserver",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the realm: the public listener and the admin listener.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate {
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Data retention.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Secret key material.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check a realm's manifests as `serve` would and print the effective settings as JSON.
    CheckConfig {
        /// Multi-document YAML of the realm's manifests; several files are read as one stream.
        #[arg(
            long = "config",
            short = 'c',
            required = true,
            env = "PORTCULLIS_CONFIG",
            value_delimiter = ','
        )]
        config: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum RetentionCommand {
    /// Apply the realm's RetentionPolicy once (the retention CronJob runs this) and print a
    /// JSON summary, also written as the container's termination message.
    Run {
        /// The realm's manifests, including its RetentionPolicy.
        #[arg(
            long = "config",
            short = 'c',
            required = true,
            env = "PORTCULLIS_CONFIG",
            value_delimiter = ','
        )]
        config: Vec<PathBuf>,
        /// Secrets dir (for the SMTP URL of inactivity warnings).
        #[arg(long, env = "PORTCULLIS_SECRETS_DIR")]
        secrets_dir: Option<PathBuf>,
        /// Also write warning mails here as .eml files.
        #[arg(long, env = "PORTCULLIS_MAIL_DIR")]
        mail_dir: Option<PathBuf>,
        /// Count what would be changed; change nothing, mail nobody.
        #[arg(long)]
        dry_run: bool,
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Where Kubernetes reads the termination message from (written only if it exists).
        #[arg(long, default_value = "/dev/termination-log")]
        termination_log: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Verify the audit chain and print the report as JSON: exit 0 when intact, 1 with
    /// findings (a row changed, inserted or deleted), 2 when it could not be checked.
    Verify {
        /// The realm's manifests (the realm name seeds the chain).
        #[arg(
            long = "config",
            short = 'c',
            required = true,
            env = "PORTCULLIS_CONFIG",
            value_delimiter = ','
        )]
        config: Vec<PathBuf>,
        /// Secrets dir holding the `audit-key`.
        #[arg(long, env = "PORTCULLIS_SECRETS_DIR")]
        secrets_dir: PathBuf,
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// A head recorded elsewhere (`SEQ:HEX`, e.g. from an earlier report or a SIEM): the row
        /// at SEQ must still have this hash, which catches a rewritten tail.
        #[arg(long)]
        expect_head: Option<String>,
    },
}

/// `audit verify` found changed, inserted or deleted rows (exit 1; the report is printed).
#[derive(Debug, thiserror::Error)]
#[error("the audit chain has findings")]
struct AuditFindings;

/// `audit verify` could not check the chain (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("audit verify: {0:#}")]
struct AuditUnchecked(anyhow::Error);

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Write a complete fresh set of secrets (signing key, Fernet key, pepper, cookie key,
    /// admin token, audit key) into a directory; refuses to overwrite.
    Generate {
        /// Target directory.
        #[arg(long, env = "PORTCULLIS_SECRETS_DIR")]
        secrets_dir: PathBuf,
    },
    /// Re-encrypt the stored TOTP secrets under the newest Fernet key (the first line of
    /// `fernet-keys`), in bounded batches; prints the counts as JSON. Exit 0 when every row
    /// opened, 1 otherwise (the rows are named by user id).
    Reencrypt {
        /// The realm's manifests (the realm name).
        #[arg(
            long = "config",
            short = 'c',
            required = true,
            env = "PORTCULLIS_CONFIG",
            value_delimiter = ','
        )]
        config: Vec<PathBuf>,
        /// Secrets dir holding `fernet-keys` and `pepper`.
        #[arg(long, env = "PORTCULLIS_SECRETS_DIR")]
        secrets_dir: PathBuf,
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Rows per batch (each batch is one bounded query and its writes).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
    },
    /// Print the fingerprints of the pepper versions, Fernet keys and audit key versions in a
    /// secrets dir, as the database records them: to find the backup that holds a key a
    /// refused start names.
    Fingerprint {
        /// The secrets dir (or a copy of the realm's keys Secret, one file per key).
        #[arg(long, env = "PORTCULLIS_SECRETS_DIR")]
        secrets_dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// The realm's manifests (multi-document YAML; several files are read as one stream).
    #[arg(
        long = "config",
        short = 'c',
        env = "PORTCULLIS_CONFIG",
        value_delimiter = ','
    )]
    config: Vec<PathBuf>,
    /// Directory with one file per secret (a mounted Secret in Kubernetes).
    #[arg(long, env = "PORTCULLIS_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
    /// Development mode: generate missing secrets, write mail only to the mail dir, keep
    /// sessions in memory when no Redis is given.
    #[arg(long)]
    dev: bool,
    /// Public listener address.
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Admin listener address (health, readiness, admin API).
    #[arg(long, env = "PORTCULLIS_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// Metrics listener address (`/metrics` only).
    #[arg(
        long,
        env = "PORTCULLIS_METRICS_LISTEN",
        default_value = "0.0.0.0:9091"
    )]
    metrics_listen: SocketAddr,
    /// Connections the public listener serves at once (fitted under the open-file limit).
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = ConnectionLimits::PUBLIC.max_connections)]
    max_connections: usize,
    /// PEM certificate chain (serving certificate first): the public listener serves TLS
    /// 1.2/1.3 with it, and picks up a renewed file without a restart. With `--tls-key`.
    #[arg(long, env = "PORTCULLIS_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "PORTCULLIS_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Also write every mail as an .eml file here (the only sink in --dev).
    #[arg(long, env = "PORTCULLIS_MAIL_DIR")]
    mail_dir: Option<PathBuf>,
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Redis URL; without it sessions live in memory (one replica only).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Sorted SHA-1 breach list for `breachCheck.mode: Offline`.
    #[arg(long, env = "PORTCULLIS_BREACH_LIST")]
    breach_list: Option<PathBuf>,
    /// Where Kubernetes reads the termination message from: why the server refused to start
    /// (written only if the file exists).
    #[arg(long, default_value = "/dev/termination-log")]
    termination_log: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("portcullis-authserver: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<AuditFindings>() => ExitCode::from(1),
        Err(error) if error.is::<AuditUnchecked>() => {
            eprintln!("portcullis-authserver: {error:#}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("portcullis-authserver: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a line for the person who started the server; a closed stderr is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter(filter)
        .try_init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    install_crypto_provider();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Migrate { database_url }) => {
            let db = Postgres::connect(&database_url, 2)
                .await
                .context("cannot connect to PostgreSQL")?;
            db.migrate().await.context("migration failed")?;
            eprintln!("migrations applied");
            Ok(())
        }
        Some(Command::Keys {
            command: KeysCommand::Generate { secrets_dir },
        }) => {
            let now = wiring::system_clock().now();
            for path in secrets_dir::generate_keys(&secrets_dir, &wiring::os_random(), now)? {
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
        Some(Command::Keys {
            command: KeysCommand::Fingerprint { secrets_dir },
        }) => {
            let (peppers, fernet_keys) = secrets_dir::load_data_keys(&secrets_dir)?;
            let (_, audit_keys) = secrets_dir::load_audit_keys(&secrets_dir)?;
            let mut fingerprints = key_fingerprints::fingerprints(&peppers, &fernet_keys);
            fingerprints.extend(key_fingerprints::audit_fingerprints(&audit_keys));
            let keys: Vec<serde_json::Value> = fingerprints
                .iter()
                .map(|k| serde_json::json!({"kind": k.kind.as_str(), "keyId": k.key_id, "fingerprint": k.short()}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&keys)?);
            Ok(())
        }
        Some(Command::Keys {
            command:
                KeysCommand::Reencrypt {
                    config,
                    secrets_dir,
                    database_url,
                    batch,
                },
        }) => {
            let settings = load_operator_config(&config)?;
            let (peppers, fernet_keys) = secrets_dir::load_data_keys(&secrets_dir)?;
            let db = Postgres::connect(&database_url, 2)
                .await
                .context("cannot connect to PostgreSQL")?;
            let store = portcullis_authserver::startup::mfa_store::build_from_keys(
                db.pool().clone(),
                &peppers,
                &fernet_keys,
                &settings.name,
            )?;
            let totals = portcullis_authserver::startup::mfa_store::reencrypt_all(
                &store,
                batch,
                wiring::system_clock().now(),
            )
            .await
            .context("re-encryption stopped (rows written so far are fine; run it again)")?;
            println!("{}", serde_json::to_string_pretty(&totals)?);
            if !totals.failed.is_empty() {
                anyhow::bail!(
                    "{} TOTP secret(s) do not open under any key of fernet-keys; left untouched",
                    totals.failed.len()
                );
            }
            Ok(())
        }
        Some(Command::CheckConfig { config }) => {
            let settings = startup::load_settings(&config, Reading::Strict)?.settings;
            println!("{}", serde_json::to_string_pretty(&summary(&settings))?);
            let missing = settings_check::unimplemented_features(&settings);
            if !missing.is_empty() {
                say!(
                    "warning: `serve` refuses this realm until these are implemented: {}",
                    missing.join(", ")
                );
            }
            Ok(())
        }
        Some(Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    secrets_dir,
                    database_url,
                    expect_head,
                },
        }) => {
            let report = audit_verify(&config, &secrets_dir, &database_url, expect_head.as_deref())
                .await
                .map_err(AuditUnchecked)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if report.ok {
                Ok(())
            } else {
                Err(AuditFindings.into())
            }
        }
        Some(Command::Retention {
            command:
                RetentionCommand::Run {
                    config,
                    secrets_dir,
                    mail_dir,
                    dry_run,
                    database_url,
                    termination_log,
                },
        }) => {
            retention_run(
                config,
                secrets_dir,
                mail_dir,
                dry_run,
                &database_url,
                &termination_log,
            )
            .await
        }
    }
}

/// Reads the realm's manifests as the operator wrote them: fields a newer operator added are
/// left out, and named once in a warning (the log and stderr).
fn load_operator_config(paths: &[PathBuf]) -> anyhow::Result<RealmSettings> {
    let Loaded { settings, ignored } = startup::load_settings(paths, Reading::Tolerant)?;
    if !ignored.is_empty() {
        let ignored: Vec<String> = ignored.iter().map(ToString::to_string).collect();
        tracing::warn!(
            ignored = ?ignored,
            "the realm configuration holds what this version does not know (written by a newer operator?); ignored"
        );
        say!(
            "warning: ignored what this version does not know (a newer operator's additions?): {}",
            ignored.join("; ")
        );
    }
    Ok(settings)
}

/// How often the server verifies its audit chain for the gauges: the walk reads every row, so
/// not often; an hour bounds how long a tampered row goes unnoticed by the alert.
const AUDIT_VERIFY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Verifies the audit chain at start and then every [`AUDIT_VERIFY_INTERVAL`], setting
/// `portcullis_audit_chain_broken` and `portcullis_audit_chain_verified_seq`.
fn spawn_audit_verifier(core: std::sync::Arc<portcullis_authserver::auth::core::Core>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(AUDIT_VERIFY_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match portcullis_authserver::auth::admin::verify_chain(&core).await {
                Ok(report) if !report.ok => tracing::error!(
                    findings = report.findings_total,
                    head_seq = report.head.seq,
                    "the audit chain is broken: see `portcullis-authserver audit verify`"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "the audit chain could not be verified"),
            }
        }
    });
}

/// `audit verify`: the whole chain in PostgreSQL, under the secrets dir's audit key.
async fn audit_verify(
    config: &[PathBuf],
    secrets_dir: &std::path::Path,
    database_url: &str,
    expect_head: Option<&str>,
) -> anyhow::Result<portcullis_audit::Report> {
    let expect = expect_head
        .map(|text| {
            portcullis_audit::parse_expected_head(text)
                .context("--expect-head must be SEQ:HEX (a seq and a 64-digit hash)")
        })
        .transpose()?;
    let settings = load_operator_config(config)?;
    let (keys, _) = secrets_dir::load_audit_keys(secrets_dir)?;
    let db = portcullis_authserver::store::Db::from(
        Postgres::connect(database_url, 2)
            .await
            .context("cannot connect to PostgreSQL")?,
    );
    db.audit_log(std::sync::Arc::new(keys), &settings.name)
        .verify(expect)
        .await
        .context("cannot read the audit trail")
}

/// `retention run`: the RetentionPolicy of the config, applied once; the JSON summary goes to
/// stdout and to the termination log the operator reads.
async fn retention_run(
    config: Vec<PathBuf>,
    secrets_dir: Option<PathBuf>,
    mail_dir: Option<PathBuf>,
    dry_run: bool,
    database_url: &str,
    termination_log: &std::path::Path,
) -> anyhow::Result<()> {
    init_logging();
    let settings = load_operator_config(&config)?;
    let retention = settings
        .retention
        .as_ref()
        .context("no RetentionPolicy targets this realm in the given config")?;
    let smtp_url = secrets_dir
        .as_ref()
        .and_then(|dir| std::fs::read_to_string(dir.join(secrets_dir::files::SMTP_URL)).ok())
        .map(|url| url.trim().to_owned());
    let clock = wiring::system_clock();
    // Without a mail sink, warnings are not sent (and retried next run); the rest still runs.
    let mailer = startup::mailer(
        &settings,
        smtp_url.as_deref(),
        mail_dir,
        clock.clone(),
        wiring::os_random(),
    )
    .ok();
    let db = Postgres::connect(database_url, 2)
        .await
        .context("cannot connect to PostgreSQL")?;
    db.migrate().await.context("database migration failed")?;
    let dry_run = dry_run || retention.dry_run;
    // The same lock as `POST /admin/v1/retention/run`: one run at a time per realm.
    let lock = portcullis_privacy::retention::RetentionLock::try_acquire(db.pool(), &settings.name)
        .await
        .context("cannot take the retention lock")?
        .context("another retention run is in progress (its advisory lock is held); not run")?;
    // The privacy crate's rules need the audit key (what they append to the chain is signed)
    // and, for due erasures, the realm's Redis (`REDIS_URL`; without it, the keys of an
    // erased account expire by their TTL: its sessions ended at the request already).
    let audit_keys = match secrets_dir.as_deref() {
        Some(dir) => Some(secrets_dir::load_audit_keys(dir)?.0),
        None => None,
    };
    let audit = audit_keys.map(|keys| {
        portcullis_audit::PgAuditLog::new(
            db.pool().clone(),
            std::sync::Arc::new(keys),
            &settings.name,
        )
    });
    let kv = match std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => Kv::redis(&url, &format!("portcullis:{}:", settings.name))
            .await
            .context("cannot connect to Redis")?,
        None => Kv::memory(clock.clone()),
    };
    let eraser = portcullis_authserver::auth::privacy::KvOnlyEraser::new(kv);
    let notice = portcullis_authserver::auth::privacy::ErasedNotice::for_realm(
        &settings.spec,
        clock.clone(),
    );
    let privacy =
        audit.as_ref().map(
            |audit| portcullis_authserver::privacy::retention::PrivacyRun {
                audit,
                kv: &eraser,
                hook: Some(&notice),
                rules: portcullis_authserver::auth::privacy::retention_rules(&retention.rules),
            },
        );
    let summary = retention::run(
        &db,
        &lock,
        privacy,
        mailer.as_ref(),
        &retention.rules,
        clock.now(),
        dry_run,
    )
    .await
    .context("retention run failed");
    if let Err(error) = lock.release().await {
        tracing::warn!(%error, "retention lock not released; its connection is closed instead");
    }
    let summary = summary?;
    let json = serde_json::to_string(&summary)?;
    println!("{json}");
    startup::termination::write(termination_log, &json);
    Ok(())
}

/// `serve`; a refusal to start is also left as the termination message the operator reads,
/// `{"reason": ..., "message": ...}`.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let termination_log = args.termination_log.clone();
    let served = serve_realm(args).await;
    if let Err(error) = &served {
        let reason = error
            .downcast_ref::<startup::StartupError>()
            .map_or("StartupFailed", startup::StartupError::reason);
        let message = format!("{error:#}");
        startup::termination::write(
            &termination_log,
            &startup::termination::refusal(reason, &message),
        );
    }
    served
}

async fn serve_realm(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    if args.config.is_empty() {
        anyhow::bail!("--config is required (the realm's manifests, e.g. config/dev/realm.yaml)");
    }
    let settings = load_operator_config(&args.config)?;
    // Before secrets and databases: a realm this version cannot serve is refused at once.
    let missing = settings_check::unimplemented_features(&settings);
    if !missing.is_empty() {
        return Err(startup::StartupError::Unimplemented(missing).into());
    }
    // Before secrets and databases too: a certificate that cannot serve is refused at once.
    let public_tls = http::tls::TlsFiles::from_args(args.tls_cert, args.tls_key)
        .and_then(|files| {
            files
                .map(|files| http::tls::PublicTls::load(files, http::tls::RELOAD_EVERY))
                .transpose()
        })
        .map_err(startup::StartupError::from)?;
    let clock = wiring::system_clock();
    let random = wiring::os_random();
    let secrets_dir = match (args.secrets_dir, args.dev) {
        (Some(dir), _) => dir,
        (None, true) => PathBuf::from(".portcullis/secrets"),
        (None, false) => anyhow::bail!("--secrets-dir is required outside --dev"),
    };
    let generate = args.dev.then(|| (&random, clock.now()));
    let (secrets, generated) = secrets_dir::load(&secrets_dir, &settings, generate)?;
    if !generated.is_empty() {
        tracing::warn!(dir = %secrets_dir.display(), files = ?generated, "DEV MODE: generated missing secrets; never use these in production");
        say!(
            "*** DEV MODE: generated secrets {generated:?} in {} ***",
            secrets_dir.display()
        );
    }
    let mail_dir = match (args.mail_dir, args.dev) {
        (Some(dir), _) => Some(dir),
        (None, true) => Some(PathBuf::from(".portcullis/mail")),
        (None, false) => None,
    };
    let mut secrets = secrets;
    if args.dev {
        // In --dev mail goes only to the mail dir, never to a real SMTP server.
        secrets.smtp_url = None;
    }
    let database_url = args
        .database_url
        .context("DATABASE_URL (or --database-url) is required")?;
    let db = Postgres::connect(&database_url, 16)
        .await
        .context("cannot connect to PostgreSQL")?;
    db.migrate().await.context("database migration failed")?;
    let db = db.into();
    // No silent key loss: the keys must cover what the database recorded.
    let recorded = startup::keys_check::verify(&db, &secrets, clock.now()).await?;
    if !recorded.is_empty() {
        let keys: Vec<String> = recorded
            .iter()
            .map(|k| format!("{} {}", k.kind.as_str(), k.key_id))
            .collect();
        tracing::info!(keys = ?keys, "recorded the fingerprints of new keys");
    }
    let kv = startup::connect_kv(
        &settings,
        args.redis_url.as_deref(),
        args.dev,
        clock.clone(),
    )
    .await?;
    let permits = std::thread::available_parallelism().map_or(2, usize::from);
    let realm = settings.name.clone();
    let issuer = settings.spec.issuer.clone();
    let service = startup::build(ServiceParts {
        settings,
        secrets,
        db,
        kv,
        clock,
        random,
        mail_dir: mail_dir.clone(),
        breach_list: args.breach_list,
        hash_permits: permits,
        rate_limiting: true,
        webhook_loopback: args.dev,
    })?;
    if let Some(mfa) = service.state.core.mfa() {
        startup::mfa_store::check_recovery_key_versions(mfa).await?;
    }
    let public = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.admin_listen))?;
    let metrics = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
    let wanted = ServeLimits {
        public: ConnectionLimits {
            max_connections: args.max_connections,
            ..ConnectionLimits::PUBLIC
        },
        ..ServeLimits::default()
    };
    let (limits, lowered) = wanted.fit_to(raise_open_file_limit());
    if lowered {
        tracing::warn!(
            max_connections = limits.public.max_connections,
            "the open-file limit lowers the public listener's connection cap"
        );
    }
    say!("portcullis-authserver: realm {realm} ({issuer})");
    let scheme = if public_tls.is_some() {
        "https"
    } else {
        "http"
    };
    say!(
        "  public API   {scheme}://{}  (e.g. POST /api/v1/register)",
        public.local_addr()?
    );
    say!(
        "  admin        http://{}  (/healthz /readyz, admin API)",
        admin.local_addr()?
    );
    say!(
        "  metrics      http://{}  (/metrics)",
        metrics.local_addr()?
    );
    if let Some(dir) = &mail_dir {
        say!("  mail         {}", dir.display());
    }
    tracing::info!(realm = %realm, "serving");
    let listeners = Listeners {
        public,
        public_tls,
        admin,
        metrics,
    };
    spawn_audit_verifier(service.state.core.clone());
    // One shutdown for the listeners and the notification worker: the worker lets the
    // attempts in flight finish (bounded by its attempt cap) before the process exits.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let notifications = service.notifications.map(|runner| runner.spawn(stopped));
    let shutdown = async move {
        startup::shutdown_signal().await;
        let _ = stop.send(true);
    };
    http::serve(service.state, listeners, limits, shutdown)
        .await
        .map_err(startup::StartupError::from)?;
    if let Some(worker) = notifications
        && let Err(error) = worker.await
    {
        tracing::error!(%error, "notification worker did not stop cleanly");
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one (as the Go runtime does) and returns the
/// limit in force (`None`: unlimited).
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum || (limit.current.is_some() && limit.maximum.is_none()) {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %error, "cannot raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// What an operator wants to see of the effective settings: the realm, the merged limits and
/// the retention schedule. Secrets never appear here (the manifests hold only references).
fn summary(settings: &RealmSettings) -> serde_json::Value {
    let limits: Vec<serde_json::Value> = settings
        .rate_limits
        .limits
        .iter()
        .map(|((route, key), limit)| {
            serde_json::json!({
                "route": format!("{route:?}"),
                "key": format!("{key:?}"),
                "requests": limit.requests,
                "periodSeconds": limit.period.as_secs_f64(),
                "burst": limit.burst,
                // GCRA: `burst + 1` at once, then one every period / requests.
                "atOnce": u64::from(limit.burst) + 1,
                "emissionIntervalMs": limit.period.as_secs_f64() * 1000.0 / f64::from(limit.requests.max(1)),
                "source": limit.source,
            })
        })
        .collect();
    serde_json::json!({
        "realm": settings.name,
        "namespace": settings.namespace,
        "issuer": settings.spec.issuer,
        "issuerHost": settings.issuer_host,
        "trustedProxies": settings.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "spec": settings.spec,
        "rateLimits": {
            "policies": settings.rate_limits.policies,
            "backend": format!("{:?}", settings.rate_limits.backend),
            "failureMode": format!("{:?}", settings.rate_limits.failure_mode),
            "limits": limits,
            "nginx": settings.rate_limits.nginx,
        },
        "clients": settings.clients.iter().map(|c| serde_json::json!({
            "clientId": c.client_id,
            "authClient": match &c.namespace {
                Some(namespace) => format!("{namespace}/{}", c.name),
                None => c.name.clone(),
            },
            "type": format!("{:?}", c.client_type),
            "redirectUris": c.redirect_uris,
            "postLogoutRedirectUris": c.post_logout_redirect_uris,
            "grantTypes": c.grant_types,
            "scopes": c.scopes,
            "firstParty": c.first_party,
        })).collect::<Vec<_>>(),
        "notImplemented": settings_check::unimplemented_features(settings),
        "retention": settings.retention.as_ref().map(|r| serde_json::json!({
            "policy": r.policy,
            "schedule": r.schedule_text,
            "rules": r.rules,
            "dryRun": r.dry_run,
        })),
    })
}
