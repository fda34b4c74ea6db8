//! `portcullis-operator` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_operator::controllers::run;
use portcullis_operator::resources::nginx::ConfOptions;
use portcullis_operator::{crdgen, nginx_config, render};

/// The Portcullis Kubernetes operator.
#[derive(Parser, Debug)]
#[command(name = "portcullis-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the CRD YAML into crds/yaml/ and the portcullis-crds chart.
    Crdgen {
        /// Repository root the files are written under.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Only compare with the files on disk; exit 1 when they are stale.
        #[arg(long)]
        check: bool,
        /// Print the CRDs as one multi-document YAML instead of writing files.
        #[arg(long, conflicts_with = "check")]
        stdout: bool,
    },
    /// Run the controllers (leader-elected) with /metrics, /healthz and /readyz.
    Run {
        /// Watch only this namespace (default: every namespace).
        #[arg(long, env = "PORTCULLIS_NAMESPACE")]
        namespace: Option<String>,
        /// Address of /metrics, /healthz and /readyz.
        #[arg(
            long,
            env = "PORTCULLIS_OPERATOR_LISTEN",
            default_value = "0.0.0.0:8080"
        )]
        listen: std::net::SocketAddr,
        /// Name of the leader-election Lease.
        #[arg(long, default_value = "portcullis-operator")]
        lease_name: String,
        /// Namespace of the Lease (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "portcullis-system")]
        lease_namespace: String,
        /// This replica's identity in the election (the pod name).
        #[arg(long, env = "POD_NAME", default_value = "portcullis-operator")]
        identity: String,
    },
    /// Write the NGINX configuration (an http-context snippet) of a realm run outside
    /// Kubernetes, with its RateLimitPolicies' `proxy.nginx` limits: the same numbers as the
    /// Ingress annotations.
    NginxConfig {
        /// Files with an AuthRealm and the policies that target it (multi-document YAML).
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only compare with `--out`; exit 1 when it is stale.
        #[arg(long, requires = "out")]
        check: bool,
        /// `server_name` (default: the issuer's host).
        #[arg(long)]
        server_name: Option<String>,
        /// HTTPS listen address.
        #[arg(long, default_value = "0.0.0.0:443")]
        listen: String,
        /// Plain HTTP listen address (redirects to HTTPS).
        #[arg(long, default_value = "0.0.0.0:80")]
        http_listen: String,
        /// The auth server's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        upstream: String,
        /// Certificate chain file.
        #[arg(long, default_value = "/etc/portcullis/tls/tls.crt")]
        tls_cert: String,
        /// Private key file.
        #[arg(long, default_value = "/etc/portcullis/tls/tls.key")]
        tls_key: String,
        /// A load balancer in front of NGINX whose X-Forwarded-For NGINX believes (CIDR;
        /// repeatable).
        #[arg(long = "real-ip-from")]
        real_ip_from: Vec<String>,
    },
    /// Validate and build a realm offline; print its manifests in apply order.
    Render {
        /// Files with an AuthRealm and the policies that target it (multi-document YAML).
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Also print the Secrets, with freshly generated values.
        #[arg(long)]
        include_secrets: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis-operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crdgen {
            root,
            check,
            stdout,
        } => {
            let files = crdgen::render(&portcullis_crds::crds())?;
            if stdout {
                for file in files.iter().filter(|f| f.dir == crdgen::YAML_DIR) {
                    print!("---\n{}", file.contents);
                }
            } else if check {
                crdgen::check(&root, &files)?;
                eprintln!("CRDs are up to date");
            } else {
                for path in crdgen::write(&root, &files)? {
                    eprintln!("wrote {}", path.display());
                }
            }
            Ok(())
        }
        Command::Run {
            namespace,
            listen,
            lease_name,
            lease_namespace,
            identity,
        } => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run::run(run::RunOptions {
                namespace,
                listen,
                lease_name,
                lease_namespace,
                identity,
            }))
        }
        Command::NginxConfig {
            files,
            out,
            check,
            server_name,
            listen,
            http_listen,
            upstream,
            tls_cert,
            tls_key,
            real_ip_from,
        } => {
            let options = ConfOptions {
                server_name,
                listen,
                http_listen,
                upstream,
                tls_cert,
                tls_key,
                real_ip_from,
            };
            let generated = nginx_config::generate(&read_texts(&files)?, &options)?;
            match (out, check) {
                (Some(path), true) => {
                    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
                    if on_disk != generated.conf {
                        anyhow::bail!("{} is stale, run `make generate`", path.display());
                    }
                    eprintln!("{} is up to date", path.display());
                }
                (Some(path), false) => {
                    std::fs::write(&path, &generated.conf)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                (None, _) => print!("{}", generated.conf),
            }
            if !check {
                for warning in &generated.warnings {
                    eprintln!("warning: {warning}");
                }
            }
            Ok(())
        }
        Command::Render {
            files,
            include_secrets,
        } => {
            let texts = read_texts(&files)?;
            let manifests = render::read_files(&texts)?;
            // ingress-nginx takes the burst as a multiple of the rate: say when it is rounded.
            if let Ok(settings) = portcullis_crds::RealmSettings::from_manifests(&manifests)
                && let Some(limits) = &settings.rate_limits.nginx
                && let Some(warning) =
                    portcullis_operator::resources::nginx::plan(limits).rounding_warning()
            {
                eprintln!("warning: {warning}");
            }
            let values = render::render_values(
                &manifests,
                include_secrets,
                k8s_openapi::jiff::Timestamp::now(),
                &mut rand::rng(),
            )?;
            print!("{}", render::to_yaml(&values)?);
            Ok(())
        }
    }
}

/// Reads each file as `(name, text)`.
fn read_texts(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            Ok((file.display().to_string(), text))
        })
        .collect()
}
