//! A real NGINX in front of the built auth server, with the configuration the built
//! `portcullis-operator nginx-config` generates from a RateLimitPolicy (docs/nginx.md): the
//! configuration passes `nginx -t`, NGINX terminates TLS 1.2 and 1.3 only, answers 429 as
//! problem+json past the policy's rate, and overwrites a client's `X-Forwarded-For` so the
//! server records the address NGINX saw. Without `nginx` (Debian's package; `make test`
//! installs it as root) each test says SKIPPED and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_e2e::realm::{PASSWORD, certificate, free_port};
use portcullis_e2e::served::{Database, mailed_code, spawn_serving};
use portcullis_e2e::{binary, repo_root, skipped};
use serde_json::{Value, json};

/// The policy's NGINX limits: 2 requests/s per client address, burst 2 (a whole multiple of
/// the rate, so not rounded), 10 connections.
const REQUESTS_PER_SECOND: u32 = 2;
const BURST: u32 = 2;

/// The NGINX binary, or why the tests cannot run.
fn nginx() -> Result<PathBuf, String> {
    let found = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("no nginx in /usr/sbin, /usr/bin or /usr/local/sbin (scripts/test.sh installs Debian's nginx as root)")?;
    let version = Command::new(&found)
        .arg("-V")
        .output()
        .map_err(|e| format!("{} -V: {e}", found.display()))?;
    // `nginx -V` writes to stderr.
    if !String::from_utf8_lossy(&version.stderr).contains("--with-http_ssl_module") {
        return Err(format!("{} has no ssl module", found.display()));
    }
    Ok(found)
}

/// A realm served in plain HTTP on loopback behind NGINX, which terminates TLS for
/// `https://localhost:{https_port}` (the issuer).
struct Fronted {
    /// `https://localhost:{port}`: NGINX, and the realm's issuer.
    issuer: String,
    /// `http://localhost:{port}`: NGINX's redirect to HTTPS.
    plain: String,
    /// The auth server itself, `http://127.0.0.1:{port}`, bypassing NGINX.
    upstream: String,
    ca_pem: String,
    /// The generated `portcullis.conf`.
    generated: String,
    nginx: Child,
    server: Child,
    database: Option<Database>,
    work: tempfile::TempDir,
}

impl Fronted {
    /// The auth server, then `nginx-config`, `nginx -t` and NGINX; `None` (after saying
    /// SKIPPED) without NGINX.
    async fn start(test: &str) -> Option<Self> {
        let nginx = match nginx() {
            Ok(nginx) => nginx,
            Err(reason) => {
                skipped(test, &reason);
                return None;
            }
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let name = format!("acme-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let (https_port, http_port) = (free_port(), free_port());
        let issuer = format!("https://localhost:{https_port}");
        // NGINX's address (loopback) is trusted, so the server believes the X-Forwarded-For
        // NGINX writes: without that every client would be NGINX to it (docs/nginx.md).
        let realm = format!(
            "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {{name: {name}}}
spec:
  issuer: {issuer}
  trustedProxies: [127.0.0.1/32]
  database: {{secretRef: {{name: db}}}}
  passwordPolicy: {{bcryptCost: 10, breachCheck: {{mode: Disabled}}}}
  notifications: {{smtp: {{secretRef: {{name: smtp}}, from: no-reply@localhost.localdomain}}}}
  privacy:
    policyVersion: \"1\"
    purposes:
      - {{name: account, required: true, description: Create and secure your account.}}
"
        );
        // Only NGINX reads the policy: its application rules are the auth server's business.
        let policy = format!(
            "apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: edge}}
spec:
  targetRef: {{kind: AuthRealm, name: {name}}}
  rules:
    - name: everything
      routes: [All]
      limits:
        - {{key: Ip, requests: 600, period: 1m, burst: 100}}
  proxy:
    nginx: {{enabled: true, requestsPerSecond: {REQUESTS_PER_SECOND}, burst: {BURST}, connections: 10}}
"
        );
        std::fs::write(dir.join("realm.yaml"), realm).unwrap();
        std::fs::write(dir.join("policy.yaml"), policy).unwrap();
        let (ca_pem, chain, key) = certificate();
        std::fs::write(dir.join("tls.crt"), chain).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
        for sub in ["secrets", "mail"] {
            std::fs::create_dir(dir.join(sub)).unwrap();
        }

        let database = Database::create().await;
        let mut command = Command::new(binary("portcullis-authserver").unwrap());
        command
            .args(["serve", "--dev", "--config"])
            .arg(dir.join("realm.yaml"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--secrets-dir")
            .arg(dir.join("secrets"))
            .arg("--mail-dir")
            .arg(dir.join("mail"))
            .env("DATABASE_URL", &database.url)
            .env(
                "REDIS_URL",
                std::env::var("REDIS_URL").expect("REDIS_URL must be set (make test starts Redis)"),
            );
        let (server, upstream, _admin) = spawn_serving(command);
        let upstream_addr = upstream
            .strip_prefix("http://")
            .expect("the server behind NGINX serves plain HTTP")
            .to_owned();

        let generated = Command::new(binary("portcullis-operator").unwrap())
            .arg("nginx-config")
            .arg("-f")
            .arg(dir.join("realm.yaml"))
            .arg("-f")
            .arg(dir.join("policy.yaml"))
            .arg("--out")
            .arg(dir.join("portcullis.conf"))
            .args(["--listen", &format!("127.0.0.1:{https_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .args(["--upstream", &upstream_addr])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            generated.status.success(),
            "nginx-config failed: {}",
            String::from_utf8_lossy(&generated.stderr)
        );
        std::fs::write(dir.join("nginx.conf"), main_conf(dir)).unwrap();

        // `nginx -t` on exactly what runs next.
        let checked = nginx_command(&nginx, dir).arg("-t").output().unwrap();
        let said = String::from_utf8_lossy(&checked.stderr).into_owned();
        assert!(
            checked.status.success() && said.contains("test is successful"),
            "nginx -t refused the generated configuration:\n{said}\n{}",
            std::fs::read_to_string(dir.join("portcullis.conf")).unwrap()
        );

        let nginx = nginx_command(&nginx, dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut fronted = Self {
            issuer,
            plain: format!("http://localhost:{http_port}"),
            upstream,
            ca_pem,
            generated: std::fs::read_to_string(dir.join("portcullis.conf")).unwrap(),
            nginx,
            server,
            database: Some(database),
            work,
        };
        fronted.wait_listening(https_port);
        Some(fronted)
    }

    /// Waits until NGINX accepts connections on `port`.
    fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.nginx.try_wait().unwrap() {
                panic!("nginx exited ({status}):\n{}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx is not listening on {port}:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("error.log")).unwrap_or_default()
    }

    /// A client that trusts the test CA, follows no redirects, speaks only TLS `version`
    /// and connects from `local` (any 127.0.0.0/8 address is loopback on Linux, so each test
    /// client can be a client address of its own in NGINX's per-address zones).
    fn client(&self, local: IpAddr, version: reqwest::tls::Version) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .tls_version_min(version)
            .tls_version_max(version)
            .local_address(local)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    async fn stop(mut self) {
        self.shut_down();
        if let Some(database) = self.database.take() {
            database.drop_now().await;
        }
    }

    /// NGINX by SIGTERM (its master stops the workers: a SIGKILL would leave them holding the
    /// ports), then the server.
    fn shut_down(&mut self) {
        if matches!(self.nginx.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.nginx.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.nginx.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Drop for Fronted {
    fn drop(&mut self) {
        // A failed test never reaches stop(): no process may outlive it.
        self.shut_down();
    }
}

/// `nginx -p <dir> -c <dir>/nginx.conf -e <dir>/error.log`: everything under the temp dir,
/// so it runs as any user (`-e` also covers the log NGINX opens before reading the
/// configuration).
fn nginx_command(nginx: &Path, dir: &Path) -> Command {
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"));
    command
}

/// The shipped `config/nginx/nginx.conf` (which includes `portcullis.conf`), with what a test
/// instance needs in front: the foreground, a pid file, logs and temp dirs in `dir`, and, as
/// root, workers that stay root (the default `nobody` could not enter the 0700 temp dir).
fn main_conf(dir: &Path) -> String {
    let shipped = std::fs::read_to_string(repo_root().join("config/nginx/nginx.conf")).unwrap();
    let d = dir.display();
    let running_as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let user = if running_as_root {
        "user root root;\n"
    } else {
        ""
    };
    let http = format!(
        "http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
"
    );
    assert!(
        shipped.contains("\nhttp {\n"),
        "config/nginx/nginx.conf has no `http {{` block"
    );
    let shipped = shipped
        .replace("worker_processes auto;", "worker_processes 1;")
        .replace("http {\n", &http);
    format!("daemon off;\npid {d}/nginx.pid;\n{user}{shipped}")
}

/// A TLS ClientHello (one record) whose `client_version` is `version` ([3, 2]: TLS 1.1;
/// [3, 3]: TLS 1.2), offering ECDHE-ECDSA with AES-128 in GCM (1.2 only) and CBC-SHA (1.0
/// and 1.1) on P-256, the test certificate's key. rustls cannot speak TLS 1.1, so the older
/// handshake is written by hand.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups: secp256r1
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04,
        0x03, // signature_algorithms: ecdsa_p256_sha256
    ];
    let mut body = version.to_vec();
    body.extend([0x5a; 32]); // random
    body.push(0); // no session id
    body.extend([0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x09]); // cipher suites
    body.extend([0x01, 0x00]); // compression: null
    body.extend(u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![0x01]; // ClientHello
    handshake.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 record layer
    record.extend(u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend(handshake);
    record
}

/// The first bytes NGINX answers a raw ClientHello with (empty if it just closes).
fn answer_to(hello: &[u8], https_port: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", https_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(hello).unwrap();
    let mut answer = [0u8; 16];
    let mut read = 0;
    while read < answer.len() {
        match stream.read(&mut answer[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    answer[..read].to_vec()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

const CLIENT_A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const CLIENT_B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

#[tokio::test]
async fn nginx_in_front_passes_nginx_t_and_serves_discovery_over_tls_1_2_and_1_3_only() {
    let Some(fronted) = Fronted::start(
        "nginx_in_front_passes_nginx_t_and_serves_discovery_over_tls_1_2_and_1_3_only",
    )
    .await
    else {
        return;
    };
    // `nginx -t` passed in start(); the generated file says what it enforces.
    assert!(
        fronted.generated.contains("ssl_protocols TLSv1.2 TLSv1.3;"),
        "{}",
        fronted.generated
    );
    assert!(
        fronted
            .generated
            .contains(&format!("rate={REQUESTS_PER_SECOND}r/s"))
    );
    assert!(
        fronted
            .generated
            .contains(&format!("burst={BURST} nodelay"))
    );

    for (version, client) in [
        (
            "TLS 1.3",
            fronted.client(CLIENT_A, reqwest::tls::Version::TLS_1_3),
        ),
        (
            "TLS 1.2",
            fronted.client(CLIENT_B, reqwest::tls::Version::TLS_1_2),
        ),
    ] {
        let discovery = client
            .get(format!(
                "{}/.well-known/openid-configuration",
                fronted.issuer
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{version} through NGINX: {e:?}"));
        assert_eq!(discovery.status(), 200, "{version}");
        let hsts: Vec<_> = discovery
            .headers()
            .get_all("strict-transport-security")
            .iter()
            .collect();
        assert_eq!(hsts.len(), 1, "one HSTS header over {version}: {hsts:?}");
        let document: Value = discovery.json().await.unwrap();
        assert_eq!(document["issuer"], fronted.issuer.as_str(), "{version}");
    }

    // TLS 1.1 is refused with a protocol_version alert, where the same hello as TLS 1.2 gets a
    // ServerHello.
    let https_port = port_of(&fronted.issuer);
    let tls12 = answer_to(&client_hello([3, 3]), https_port);
    assert!(
        tls12.len() >= 11 && tls12[0] == 0x16 && tls12[5] == 0x02 && tls12[9..11] == [3, 3],
        "a TLS 1.2 hello gets a TLS 1.2 ServerHello: {tls12:02x?}"
    );
    let tls11 = answer_to(&client_hello([3, 2]), https_port);
    assert!(
        tls11.len() >= 7 && tls11[0] == 0x15 && tls11[5] == 2 && tls11[6] == 70,
        "a TLS 1.1 hello gets a fatal protocol_version alert: {tls11:02x?}"
    );

    // Port 80's server only redirects to HTTPS.
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{}/.well-known/openid-configuration",
            fronted.plain
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    assert_eq!(
        redirect.headers()["location"],
        "https://localhost/.well-known/openid-configuration"
    );
    fronted.stop().await;
}

#[tokio::test]
async fn nginx_answers_429_problem_json_past_the_policy_rate_and_recovers() {
    let Some(fronted) =
        Fronted::start("nginx_answers_429_problem_json_past_the_policy_rate_and_recovers").await
    else {
        return;
    };
    let url = format!("{}/.well-known/openid-configuration", fronted.issuer);
    let client = fronted.client(CLIENT_A, reqwest::tls::Version::TLS_1_3);
    // One request plus the burst pass at once (nodelay); one more within the same half
    // second is past the rate.
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..10 {
        let response = client.get(&url).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let passed = statuses.iter().filter(|s| **s == 200).count();
    let limited = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    // Sequential requests take a few milliseconds each; allow one token refilled meanwhile.
    let allowed = usize::try_from(1 + BURST).unwrap();
    assert!(
        (allowed..=allowed + 1).contains(&passed),
        "{passed} passed before the 429 (1 + burst {BURST} expected): {statuses:?}"
    );
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        limited
            .headers()
            .get_all("strict-transport-security")
            .iter()
            .count(),
        1
    );
    let problem: Value = limited.json().await.unwrap();
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["code"], "rate_limited");

    // The limit is per client address: another client is not limited meanwhile...
    let other = fronted.client(CLIENT_B, reqwest::tls::Version::TLS_1_2);
    assert_eq!(other.get(&url).send().await.unwrap().status(), 200);
    // ...and the limited one passes again once the rate has refilled its bucket.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    fronted.stop().await;
}

#[tokio::test]
async fn a_planted_x_forwarded_for_is_not_what_the_server_records_but_the_address_nginx_saw() {
    let Some(fronted) = Fronted::start(
        "a_planted_x_forwarded_for_is_not_what_the_server_records_but_the_address_nginx_saw",
    )
    .await
    else {
        return;
    };
    // An account, made on the server directly (NGINX's 2 r/s is not under test here).
    let direct = reqwest::Client::new();
    let email = "behind-nginx@example.com";
    let registered = direct
        .post(format!("{}/api/v1/register", fronted.upstream))
        .json(&json!({"email": email, "password": PASSWORD, "policy_version": "1", "consents": {"account": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 202);
    let token = mailed_code(&fronted.work.path().join("mail"), "Verification code:");
    let verified = direct
        .post(format!("{}/api/v1/verify-email", fronted.upstream))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);

    // NGINX overwrites the header rather than appending to it.
    assert!(
        fronted
            .generated
            .contains("proxy_set_header X-Forwarded-For $remote_addr;"),
        "{}",
        fronted.generated
    );
    // Through NGINX from 127.0.0.3, claiming to be 203.0.113.9.
    let client = fronted.client(CLIENT_B, reqwest::tls::Version::TLS_1_3);
    let login = client
        .post(format!("{}/api/v1/login", fronted.issuer))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    let sessions: Value = client
        .get(format!("{}/api/v1/me/sessions", fronted.issuer))
        .bearer_auth(login["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Not the planted address, and not NGINX's own (127.0.0.1): the client's, which NGINX
    // wrote into X-Forwarded-For for the server, which trusts NGINX. (The server's own rule,
    // the rightmost untrusted entry, would also skip a planted address NGINX appended to.)
    assert_eq!(sessions[0]["ip"], "127.0.0.3", "{sessions}");
    fronted.stop().await;
}
