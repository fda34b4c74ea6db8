//! A realm served over TLS by the built `portcullis-authserver serve`, as a browser or a
//! relying-party library meets it: issuer `https://localhost:{port}` with a certificate from a
//! throwaway CA (rcgen), the AuthClients a test registers, mail verification on (`--dev` writes
//! every mail to the mail dir), real PostgreSQL (a fresh database) and Redis (a key prefix of
//! its own: the realm name is unique to the test).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    PKCS_ECDSA_P256_SHA256,
};

use crate::binary;
use crate::served::{Database, mailed_code, spawn_serving};

/// The password every test account is created with.
pub const PASSWORD: &str = "Tangerine-Orbit-42-Quiet";

/// A running realm.
pub struct Realm {
    /// The realm's name (`metadata.name`): what its pages show.
    pub name: String,
    /// `https://localhost:{port}`, byte for byte the `iss` of its tokens.
    pub issuer: String,
    /// The admin listener, `http://127.0.0.1:{port}`.
    pub admin: String,
    /// The CA that issued the server's certificate, PEM (for clients that verify it).
    pub ca_pem: String,
    /// Path of the CA certificate (for `NODE_EXTRA_CA_CERTS`).
    pub ca_file: PathBuf,
    child: Child,
    database: Option<Database>,
    work: tempfile::TempDir,
}

/// What a test adds to the realm [`Realm::start`] makes.
#[derive(Default)]
pub struct Extras {
    /// The port to serve on (the issuer names it); a free one when `None`.
    pub port: Option<u16>,
    /// YAML lines under `spec:` (indented by two spaces), e.g. `socialProviders`.
    pub spec: String,
    /// Files to put in the secrets dir before the start: (name, content).
    pub secrets: Vec<(String, String)>,
}

impl Realm {
    /// Starts a realm with these AuthClient documents (`realmRef.name` is filled in; write
    /// `REALM` where the realm's name goes).
    pub async fn start(clients: &[String]) -> Self {
        Self::start_with(clients, Extras::default()).await
    }

    /// As [`Realm::start`], with `extras`.
    pub async fn start_with(clients: &[String], extras: Extras) -> Self {
        // Its HTTP clients (reqwest without a default TLS provider): ring, as everywhere here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let name = format!("acme-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let port = extras.port.unwrap_or_else(free_port);
        let issuer = format!("https://localhost:{port}");
        let work = tempfile::tempdir().unwrap();
        let (ca_pem, chain, key) = certificate();
        let ca_file = work.path().join("ca.crt");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        std::fs::write(work.path().join("tls.crt"), chain).unwrap();
        std::fs::write(work.path().join("tls.key"), key).unwrap();
        let mut config = format!(
            "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {{name: {name}}}
spec:
  issuer: {issuer}
  database: {{secretRef: {{name: db}}}}
  passwordPolicy: {{bcryptCost: 10, breachCheck: {{mode: Disabled}}}}
  lockout: {{progressiveDelay: {{afterFailures: 0}}}}
  notifications: {{smtp: {{secretRef: {{name: smtp}}, from: no-reply@localhost.localdomain}}}}
  privacy:
    policyVersion: \"1\"
    purposes:
      - {{name: account, required: true, description: Create and secure your account.}}
{}",
            extras.spec
        );
        for client in clients {
            config.push_str("---\n");
            config.push_str(&client.replace("REALM", &name));
        }
        let config_file = work.path().join("realm.yaml");
        std::fs::write(&config_file, config).unwrap();
        for dir in ["secrets", "mail"] {
            std::fs::create_dir(work.path().join(dir)).unwrap();
        }
        for (file, content) in &extras.secrets {
            std::fs::write(work.path().join("secrets").join(file), content).unwrap();
        }
        let database = Database::create().await;
        let mut command = Command::new(binary("portcullis-authserver").unwrap());
        command
            .args(["serve", "--dev", "--config"])
            .arg(&config_file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--admin-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert")
            .arg(work.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(work.path().join("tls.key"))
            .arg("--secrets-dir")
            .arg(work.path().join("secrets"))
            .arg("--mail-dir")
            .arg(work.path().join("mail"))
            .env("DATABASE_URL", &database.url)
            .env(
                "REDIS_URL",
                std::env::var("REDIS_URL").expect("REDIS_URL must be set (make test starts Redis)"),
            );
        let (child, public, admin) = spawn_serving(command);
        assert_eq!(public, format!("https://127.0.0.1:{port}"));
        Self {
            name,
            issuer,
            admin,
            ca_pem,
            ca_file,
            child,
            database: Some(database),
            work,
        }
    }

    /// Where the server writes its mail.
    pub fn mail_dir(&self) -> PathBuf {
        self.work.path().join("mail")
    }

    /// The secret `--dev` generated for the confidential client `client_id`.
    pub fn client_secret(&self, client_id: &str) -> String {
        let file = self
            .work
            .path()
            .join("secrets")
            .join(format!("client-secret-{client_id}"));
        std::fs::read_to_string(file).unwrap().trim().to_owned()
    }

    /// An HTTP client that trusts the realm's CA and follows no redirects.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Registers `email` through the API and verifies it with the mailed code: an account
    /// that can sign in.
    pub async fn account(&self, email: &str) {
        let http = self.http();
        let registered = http
            .post(format!("{}/api/v1/register", self.issuer))
            .json(&serde_json::json!({"email": email, "password": PASSWORD, "policy_version": "1", "consents": {"account": true}}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 202, "{:?}", registered.text().await);
        let token = mailed_code(&self.mail_dir(), "Verification code:");
        let verified = http
            .post(format!("{}/api/v1/verify-email", self.issuer))
            .json(&serde_json::json!({"token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(verified.status(), 200, "{:?}", verified.text().await);
    }

    /// A count from the realm's database: `sql` is a `SELECT count(*)` with one text
    /// parameter `$1` (a test's look at what the server stored).
    pub async fn count(&self, sql: &'static str, param: &str) -> i64 {
        let url = &self.database.as_ref().expect("the realm's database").url;
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let count = sqlx::query_scalar(sql)
            .bind(param)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        count
    }

    /// Stops the server and drops its database.
    pub async fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(database) = self.database.take() {
            database.drop_now().await;
        }
    }
}

impl Drop for Realm {
    fn drop(&mut self) {
        // A failed test never reaches stop(): the process must not outlive it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free a moment ago (the issuer must name the port before the server binds).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway CA and a serving certificate for `localhost` from it: (CA PEM, chain PEM, key
/// PEM).
pub fn certificate() -> (String, String, String) {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    // Distinct names: with rcgen's default name on both, OpenSSL (Node) takes the serving
    // certificate for a self-signed one.
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Portcullis e2e test CA");
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let ca = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).unwrap();
    let chain = format!("{}{ca_pem}", cert.pem());
    (ca_pem, chain, key.serialize_pem())
}

/// Whether `path` is an executable file.
pub fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
