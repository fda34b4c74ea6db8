//! `portcullis-authserver` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_crds::{RealmSettings, parse_manifests};

/// The Portcullis auth server.
#[derive(Parser, Debug)]
#[command(name = "portcullis-authserver", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a realm's manifests (one AuthRealm, its RateLimitPolicies and RetentionPolicy),
    /// check them as the server would at start, and print the effective settings as JSON.
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis-authserver: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig { config } => {
            let settings = load_settings(&config)?;
            println!("{}", serde_json::to_string_pretty(&summary(&settings))?);
            Ok(())
        }
    }
}

/// Reads and checks the realm configuration from one or more YAML files.
fn load_settings(paths: &[PathBuf]) -> anyhow::Result<RealmSettings> {
    let mut yaml = String::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        yaml.push_str("\n---\n");
        yaml.push_str(&text);
    }
    let manifests = parse_manifests(&yaml).context("invalid realm configuration")?;
    RealmSettings::from_manifests(&manifests).context("invalid realm configuration")
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
        "retention": settings.retention.as_ref().map(|r| serde_json::json!({
            "policy": r.policy,
            "schedule": r.schedule_text,
            "rules": r.rules,
            "dryRun": r.dry_run,
        })),
    })
}
