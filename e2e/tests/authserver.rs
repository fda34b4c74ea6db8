//! The built `portcullis-authserver` binary, started as an operator would start it, against
//! real PostgreSQL and Redis (DATABASE_URL / REDIS_URL; `make test` provides them).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use portcullis_e2e::served::{Database, mailed_code, spawn_serving};
use portcullis_e2e::{binary, repo_root};
use serde_json::{Value, json};

struct Server {
    child: Child,
    public: String,
    admin: String,
    mail_dir: tempfile::TempDir,
    _secrets: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve --dev` of the dev realm on loopback ports, with these secrets and mail dirs.
fn dev_serve(database_url: &str, secrets: &std::path::Path, mail_dir: &std::path::Path) -> Command {
    let mut command = Command::new(binary("portcullis-authserver").unwrap());
    command
        .args([
            "serve",
            "--dev",
            "--config",
            "config/dev/realm.yaml",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--secrets-dir")
        .arg(secrets)
        .arg("--mail-dir")
        .arg(mail_dir)
        .env("DATABASE_URL", database_url)
        .env(
            "REDIS_URL",
            std::env::var("REDIS_URL").expect("REDIS_URL must be set"),
        );
    command
}

fn start(database_url: &str) -> Server {
    let secrets = tempfile::tempdir().unwrap();
    let mail_dir = tempfile::tempdir().unwrap();
    let (child, public, admin) =
        spawn_serving(dev_serve(database_url, secrets.path(), mail_dir.path()));
    Server {
        child,
        public,
        admin,
        mail_dir,
        _secrets: secrets,
    }
}

/// The operator's `render` output for `args`, as JSON documents.
fn render(args: &[&str]) -> Vec<Value> {
    let rendered = Command::new(binary("portcullis-operator").unwrap())
        .arg("render")
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    serde_saphyr::from_multiple(&String::from_utf8(rendered.stdout).unwrap()).unwrap()
}

#[tokio::test]
async fn dev_mode_serves_a_whole_account_lifecycle_and_stops_on_sigterm() {
    // One TLS stack, rustls with ring; reqwest is built without a default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let database = Database::create().await;
    let mut server = start(&database.url);
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", server.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let register = http
        .post(format!("{}/api/v1/register", server.public))
        .json(&json!({"email": "e2e@example.com", "password": "Tangerine-Orbit-42-Quiet", "policy_version": "1", "consents": {"account": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 202);
    let token = mailed_code(server.mail_dir.path(), "Verification code:");
    let verify = http
        .post(format!("{}/api/v1/verify-email", server.public))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), 200);
    let login: Value = http
        .post(format!("{}/api/v1/login", server.public))
        .json(&json!({"email": "e2e@example.com", "password": "Tangerine-Orbit-42-Quiet"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = http
        .get(format!("{}/api/v1/me", server.public))
        .bearer_auth(login["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "e2e@example.com");
    // Graceful shutdown on SIGTERM: the process exits by itself, successfully.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    database.drop_now().await;
}

#[test]
fn outside_dev_a_missing_secret_stops_the_server_with_its_name() {
    let secrets = tempfile::tempdir().unwrap();
    let output = Command::new(binary("portcullis-authserver").unwrap())
        .args([
            "serve",
            "--config",
            "config/dev/realm.yaml",
            "--secrets-dir",
        ])
        .arg(secrets.path())
        .env("DATABASE_URL", "postgres://unused@127.0.0.1:1/none")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("secret signing-keys.json is missing"),
        "{stderr}"
    );
}

#[test]
fn keys_generate_writes_a_set_the_server_accepts_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(binary("portcullis-authserver").unwrap())
            .args(["keys", "generate", "--secrets-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    for file in [
        "signing-keys.json",
        "fernet-keys",
        "pepper",
        "cookie-key",
        "admin-token",
        "audit-key",
    ] {
        assert!(dir.path().join(file).is_file(), "{file}");
    }
    let again = run();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
}

/// The operator's rendered ConfigMap, keys Secret, TLS Secret and container arguments make a
/// server that starts, is ready and answers over HTTPS with the realm's certificate (the
/// self-signed one, trusted through its CA as the Ingress trusts it): the contract between
/// the two binaries, checked end to end.
#[tokio::test]
async fn what_the_operator_renders_is_what_the_auth_server_runs_with() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let work = tempfile::tempdir().unwrap();
    // The minimal sample with the TLS the operator provisions itself.
    let manifest = work.path().join("realm-tls.yaml");
    let minimal =
        std::fs::read_to_string(repo_root().join("config/samples/realm-minimal.yaml")).unwrap();
    std::fs::write(
        &manifest,
        format!("{minimal}  tls:\n    selfSigned: {{}}\n"),
    )
    .unwrap();
    let documents = render(&["--include-secrets", "-f", manifest.to_str().unwrap()]);
    let find = |kind: &str, name: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the render"))
            .clone()
    };
    let config = work.path().join("realm.yaml");
    std::fs::write(
        &config,
        find("ConfigMap", "demo-config")["data"]["realm.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let secrets = work.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    use base64::Engine;
    for (key, value) in find("Secret", "demo-keys")["data"].as_object().unwrap() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap();
        std::fs::write(secrets.join(key), bytes).unwrap();
    }
    // What the pod gets projected from the realm's own SMTP Secret (demo-smtp, key url).
    std::fs::write(secrets.join("smtp-url"), "smtp://127.0.0.1:2525").unwrap();
    // The realm's TLS Secret, mounted as a directory.
    let tls = work.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let tls_secret = find("Secret", "demo-tls");
    for (key, value) in tls_secret["data"].as_object().unwrap() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap();
        std::fs::write(tls.join(key), bytes).unwrap();
    }
    let deployment = find("Deployment", "demo");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["mountPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mount = |name: &str| {
        mounts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap()
    };
    // The pod's paths, mapped onto the temp dir; listeners on loopback ports.
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            if a.starts_with(&mount("config")) {
                config.display().to_string()
            } else if let Some(file) = a.strip_prefix(&format!("{}/", mount("tls"))) {
                tls.join(file).display().to_string()
            } else if a == mount("secrets") {
                secrets.display().to_string()
            } else if a.starts_with("0.0.0.0:") {
                "127.0.0.1:0".to_owned()
            } else {
                a.to_owned()
            }
        })
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--tls-cert" && w[1] == tls.join("tls.crt").display().to_string()),
        "{args:?}"
    );
    let database = Database::create().await;
    let mut command = Command::new(binary("portcullis-authserver").unwrap());
    // The rendered arguments leave the metrics listener at the server's default, which must
    // be the container's metrics port; the test moves it to a free port, as a fixed one
    // would collide with test runs side by side.
    let metrics_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .unwrap()["containerPort"]
        .as_u64()
        .unwrap();
    let help = Command::new(binary("portcullis-authserver").unwrap())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(&format!("[default: 0.0.0.0:{metrics_port}]")),
        "the server's default metrics listener is not the rendered port {metrics_port}:\n{help}"
    );
    command
        .args(&args)
        .env("DATABASE_URL", &database.url)
        .env("PORTCULLIS_METRICS_LISTEN", "127.0.0.1:0")
        .env_remove("REDIS_URL");
    let (mut child, public, admin) = spawn_serving(command);
    let http = reqwest::Client::new();
    let ready = http.get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // HTTPS to the public host the certificate names, trusting the realm's CA.
    let port = public.rsplit(':').next().unwrap();
    assert!(public.starts_with("https://"), "{public}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.crt")).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(
            "auth.demo.example.com",
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let jwks: Value = https
        .get(format!(
            "https://auth.demo.example.com:{port}/.well-known/jwks.json"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !jwks["keys"].as_array().unwrap().is_empty(),
        "the operator's signing keys are published"
    );
    let _ = child.kill();
    let _ = child.wait();
    database.drop_now().await;
}

/// The command the retention CronJob runs: JSON summary on stdout and in the termination
/// message file the operator reads.
#[tokio::test]
async fn retention_run_prints_its_summary_and_leaves_it_as_the_termination_message() {
    let database = Database::create().await;
    let work = tempfile::tempdir().unwrap();
    let termination = work.path().join("termination-log");
    // Kubernetes creates the file; the command only fills it.
    std::fs::write(&termination, "").unwrap();
    let output = Command::new(binary("portcullis-authserver").unwrap())
        .args([
            "retention",
            "run",
            "--dry-run",
            "--config",
            "config/samples/realm-full.yaml,config/samples/retentionpolicy.yaml",
        ])
        .arg("--termination-log")
        .arg(&termination)
        .env("DATABASE_URL", &database.url)
        .env("RUST_LOG", "warn")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["dryRun"], true);
    assert_eq!(printed["counts"]["unverifiedAccounts"], 0);
    assert!(
        printed["counts"].get("inactiveAccounts").is_some(),
        "the sample has an inactiveAccounts rule"
    );
    let left: Value =
        serde_json::from_str(&std::fs::read_to_string(&termination).unwrap()).unwrap();
    assert_eq!(left, printed);
    database.drop_now().await;
}

#[test]
fn retention_run_without_a_policy_says_so() {
    let output = Command::new(binary("portcullis-authserver").unwrap())
        .args([
            "retention",
            "run",
            "--config",
            "config/samples/realm-minimal.yaml",
        ])
        .env("DATABASE_URL", "postgres://unused@127.0.0.1:1/none")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no RetentionPolicy targets this realm")
    );
}

/// The retention CronJob the operator renders for the full sample runs as rendered (paths mapped
/// onto a temp dir) and succeeds against a real database.
#[tokio::test]
async fn the_rendered_retention_job_runs() {
    let documents = render(&[
        "-f",
        "config/samples/realm-full.yaml",
        "-f",
        "config/samples/ratelimitpolicy.yaml",
        "-f",
        "config/samples/retentionpolicy.yaml",
    ]);
    let config_map = documents
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "acme-config")
        .unwrap();
    let cron_job = documents
        .iter()
        .find(|d| d["kind"] == "CronJob")
        .expect("a retention CronJob");
    let container = &cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("realm.yaml");
    std::fs::write(&config, config_map["data"]["realm.yaml"].as_str().unwrap()).unwrap();
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .map(|a| {
            if a.ends_with("realm.yaml") {
                config.display().to_string()
            } else if a.starts_with("/var/run/") {
                work.path().display().to_string()
            } else {
                a.to_owned()
            }
        })
        .collect();
    assert_eq!(&args[..2], ["retention", "run"]);
    // The mounted Secret's audit key (the audit rules and due erasures need it).
    use base64::Engine as _;
    std::fs::write(
        work.path().join("audit-key"),
        format!(
            "1:{}\n",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        ),
    )
    .unwrap();
    let database = Database::create().await;
    let output = Command::new(binary("portcullis-authserver").unwrap())
        .args(&args)
        .env("DATABASE_URL", &database.url)
        .env("RUST_LOG", "warn")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["dryRun"], false);
    assert!(
        summary["counts"].get("withdrawnConsents").is_some(),
        "{summary}"
    );
    database.drop_now().await;
}

/// Starts `command`, checks that it becomes ready, and stops it.
async fn serves_and_is_ready(command: Command) {
    let (mut child, _, admin) = spawn_serving(command);
    let ready = reqwest::get(format!("{admin}/readyz")).await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready.status(), 200);
}

/// No silent key loss, end to end: the first start records the keys' fingerprints; a restart
/// with another pepper exits non-zero, says why on stderr and leaves the termination message
/// the operator turns into the realm's KeysMismatch condition; an added Fernet key
/// (rotation) serves and is recorded, so removing it again is refused; the keys restored serve.
#[tokio::test]
async fn a_server_whose_keys_do_not_match_the_data_refuses_to_start_and_says_why() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let database = Database::create().await;
    let work = tempfile::tempdir().unwrap();
    let (secrets, mail_dir) = (work.path().join("secrets"), work.path().join("mail"));
    std::fs::create_dir_all(&mail_dir).unwrap();
    let termination = work.path().join("termination-log");
    let serve = || {
        let mut command = dev_serve(&database.url, &secrets, &mail_dir);
        command.arg("--termination-log").arg(&termination);
        command
    };
    let refused = || {
        // Kubernetes creates the file; the server only fills it.
        std::fs::write(&termination, "").unwrap();
        let output = serve()
            .env("RUST_LOG", "warn")
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let message: Value =
            serde_json::from_str(&std::fs::read_to_string(&termination).unwrap()).unwrap();
        assert_eq!(message["reason"], "KeysMismatch", "{message}");
        (
            String::from_utf8_lossy(&output.stderr).into_owned(),
            message,
        )
    };

    // First start: --dev generates the keys; their fingerprints are recorded.
    serves_and_is_ready(serve()).await;
    let (pepper, fernet) = (secrets.join("pepper"), secrets.join("fernet-keys"));
    let (original_pepper, original_fernet) = (
        std::fs::read_to_string(&pepper).unwrap(),
        std::fs::read_to_string(&fernet).unwrap(),
    );

    // Another pepper under the recorded version: refused, on stderr and for the operator.
    std::fs::write(&pepper, format!("v1:{}\n", STANDARD.encode([42u8; 32]))).unwrap();
    let (stderr, message) = refused();
    assert!(
        stderr.contains("pepper version v1 is another key"),
        "{stderr}"
    );
    assert!(stderr.contains("refusing to start"), "{stderr}");
    let said = message["message"].as_str().unwrap();
    assert!(said.contains("pepper version v1 is another key"), "{said}");
    assert!(said.contains("restore the original v1 line"), "{said}");

    // The pepper restored and a new encrypting Fernet key added (rotation): serves.
    std::fs::write(&pepper, &original_pepper).unwrap();
    let added = URL_SAFE.encode([43u8; 32]);
    std::fs::write(&fernet, format!("{added}\n{original_fernet}")).unwrap();
    serves_and_is_ready(serve()).await;
    let fingerprints = Command::new(binary("portcullis-authserver").unwrap())
        .args(["keys", "fingerprint", "--secrets-dir"])
        .arg(&secrets)
        .output()
        .unwrap();
    assert!(fingerprints.status.success());
    let fingerprints: Value = serde_json::from_slice(&fingerprints.stdout).unwrap();
    let added_id = fingerprints
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "fernet")
        .unwrap()["keyId"]
        .as_str()
        .unwrap()
        .to_owned();

    // That key is recorded now: dropping it again is refused, naming it.
    std::fs::write(&fernet, &original_fernet).unwrap();
    let (stderr, _) = refused();
    assert!(
        stderr.contains(&format!("Fernet key {added_id} (")),
        "{stderr}"
    );

    // Every key back: serves.
    std::fs::write(&fernet, format!("{added}\n{original_fernet}")).unwrap();
    serves_and_is_ready(serve()).await;
    database.drop_now().await;
}
