//! Test harness: a real server on loopback against a fresh PostgreSQL database (from
//! `#[sqlx::test]`) and Redis under a unique key prefix, mail written to a temp dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_authserver::auth::hashing::PasswordHasher;
use portcullis_authserver::clock::Clock;
use portcullis_authserver::startup::{self, ServiceParts, secrets_dir};
use portcullis_authserver::store::Db;
use portcullis_authserver::store::kv::Kv;
use portcullis_authserver::{http, wiring};
use portcullis_crds::realm::AuthRealmSpec;
use portcullis_crds::{RealmSettings, parse_manifests};
use serde_json::{Value, json};
use sqlx::PgPool;
use tempfile::TempDir;

pub const PASSWORD: &str = "Tangerine-Orbit-42-Quiet";
pub const OTHER_PASSWORD: &str = "Saffron-Canyon-97-Lantern";

pub const BASE_REALM: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: test}
spec:
  issuer: http://auth.localhost
  database: {secretRef: {name: db}}
  passwordPolicy: {bcryptCost: 10, breachCheck: {mode: Disabled}}
  emailVerification: {required: false}
  lockout: {progressiveDelay: {afterFailures: 0}}
  notifications: {smtp: {secretRef: {name: smtp}, from: no-reply@auth.localhost}}
  privacy:
    policyVersion: \"1\"
    purposes:
      - {name: account, required: true, description: Run the account.}
      - {name: news, required: false, description: Product news.}
";

/// How a test server is set up.
pub struct Options {
    /// Changes to the base realm.
    pub spec: Box<dyn FnOnce(&mut AuthRealmSpec)>,
    /// The clock (manual clocks let tests move time).
    pub clock: Clock,
    /// Redis key prefix; servers sharing one share sessions and lockouts.
    pub redis_prefix: String,
    /// Concurrent bcrypt runs.
    pub hash_permits: usize,
    /// SMTP server mail also goes to (besides the mail dir).
    pub smtp_url: Option<String>,
    /// Connection and request limits of the listeners.
    pub limits: http::ServeLimits,
    /// TLS on the public listener (then `base` is `https://`).
    pub tls: Option<http::tls::PublicTls>,
    /// AuthClient documents (YAML, realm `test`); with any, the issuer is the listener's own
    /// `http(s)://localhost:PORT` (relying parties compare it with the URL they use).
    pub clients: Vec<String>,
    /// Enforce the realm's rate limits (off by default: most tests' volume would trip them).
    pub rate_limiting: bool,
    /// RateLimitPolicy documents (YAML, realm `test`).
    pub policies: Vec<String>,
    /// Another Redis than `REDIS_URL` (e.g. a [`PrivateRedis`] a test stops and starts).
    pub redis_url: Option<String>,
    /// A notification webhook: its URL and signing key, written to the secrets dir as
    /// `webhook-url` and `webhook-secret` (as the operator does).
    pub webhook: Option<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            spec: Box::new(|_| {}),
            clock: wiring::system_clock(),
            redis_prefix: format!("test:{}:", uuid::Uuid::new_v4()),
            hash_permits: 2,
            smtp_url: None,
            limits: http::ServeLimits::default(),
            tls: None,
            clients: Vec::new(),
            rate_limiting: false,
            policies: Vec::new(),
            redis_url: None,
            webhook: None,
        }
    }
}

impl Options {
    pub fn spec(f: impl FnOnce(&mut AuthRealmSpec) + 'static) -> Self {
        Self {
            spec: Box::new(f),
            ..Self::default()
        }
    }
}

pub struct TestServer {
    pub base: String,
    pub admin: String,
    pub metrics: String,
    pub hasher: Arc<PasswordHasher>,
    pub admin_token: String,
    pub http: reqwest::Client,
    pub mail_dir: PathBuf,
    pub redis_prefix: String,
    _dirs: (TempDir, TempDir),
    _shutdown: tokio::sync::oneshot::Sender<()>,
    /// Stops the notification worker when the server is dropped.
    _stop_notifications: tokio::sync::watch::Sender<bool>,
}

pub fn settings(customize: impl FnOnce(&mut AuthRealmSpec)) -> RealmSettings {
    settings_with_clients(customize, &[])
}

/// The test realm changed by `customize`, with the AuthClient documents `clients`.
pub fn settings_with_clients(
    customize: impl FnOnce(&mut AuthRealmSpec),
    clients: &[String],
) -> RealmSettings {
    let mut yaml = BASE_REALM.to_owned();
    for client in clients {
        yaml.push_str("---\n");
        yaml.push_str(client);
    }
    let mut manifests = parse_manifests(&yaml).unwrap();
    customize(&mut manifests.realms[0].spec);
    RealmSettings::from_manifests(&manifests).unwrap()
}

pub async fn start(pool: PgPool, options: Options) -> TestServer {
    start_sharing(pool, options, None).await
}

/// Starts a server; with `secrets_from`, it uses that server's secrets dir (two replicas).
pub async fn start_sharing(
    pool: PgPool,
    options: Options,
    secrets_from: Option<&TestServer>,
) -> TestServer {
    portcullis_authserver::install_crypto_provider();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let localhost = format!(
        "{}://localhost:{}",
        if options.tls.is_some() {
            "https"
        } else {
            "http"
        },
        public.local_addr().unwrap().port()
    );
    let with_clients = !options.clients.is_empty();
    let customize = options.spec;
    let issuer = localhost.clone();
    let settings = settings_with_clients(
        move |spec| {
            customize(spec);
            if with_clients {
                spec.issuer = issuer;
            }
        },
        &options
            .clients
            .iter()
            .chain(&options.policies)
            .cloned()
            .collect::<Vec<_>>(),
    );
    let secrets_dir = TempDir::new().unwrap();
    if let Some(other) = secrets_from {
        for entry in std::fs::read_dir(other._dirs.0.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), secrets_dir.path().join(entry.file_name())).unwrap();
        }
    }
    if let Some((url, key)) = &options.webhook {
        std::fs::write(secrets_dir.path().join("webhook-url"), url).unwrap();
        std::fs::write(secrets_dir.path().join("webhook-secret"), key).unwrap();
    }
    let random = wiring::os_random();
    let generate = Some((&random, options.clock.now()));
    let (mut secrets, _) = secrets_dir::load(secrets_dir.path(), &settings, generate).unwrap();
    let admin_token = secrets.admin_token.clone();
    secrets.smtp_url = options.smtp_url.clone();
    let mail_dir = TempDir::new().unwrap();
    let redis_url = options.redis_url.clone().unwrap_or_else(|| {
        std::env::var("REDIS_URL")
            .expect("REDIS_URL must point at a Redis server (scripts/test.sh starts one)")
    });
    let kv = Kv::redis(&redis_url, &options.redis_prefix).await.unwrap();
    let service = startup::build(ServiceParts {
        settings,
        secrets,
        db: Db::from_pool(pool),
        kv,
        clock: options.clock.clone(),
        random,
        mail_dir: Some(mail_dir.path().to_path_buf()),
        breach_list: None,
        hash_permits: options.hash_permits,
        rate_limiting: options.rate_limiting,
        webhook_loopback: true,
    })
    .unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let (base, admin_base, metrics_base) = (
        if with_clients {
            localhost
        } else {
            format!("{scheme}://{}", public.local_addr().unwrap())
        },
        url(admin.local_addr().unwrap()),
        url(metrics.local_addr().unwrap()),
    );
    let listeners = http::Listeners {
        public,
        public_tls: options.tls,
        admin,
        metrics,
    };
    let limits = options.limits;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_notifications, notifications_stopped) = tokio::sync::watch::channel(false);
    if let Some(runner) = service.notifications {
        runner.spawn(notifications_stopped);
    }
    let state = service.state;
    tokio::spawn(async move {
        http::serve(state, listeners, limits, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestServer {
        base,
        admin: admin_base,
        metrics: metrics_base,
        hasher: service.hasher,
        admin_token,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        mail_dir: mail_dir.path().to_path_buf(),
        redis_prefix: options.redis_prefix,
        _dirs: (secrets_dir, mail_dir),
        _shutdown: tx,
        _stop_notifications: stop_notifications,
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn violation_codes(&self) -> Vec<String> {
        self.body["violations"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|x| x["code"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The session cookie value set by this answer.
    pub fn session_cookie(&self) -> Option<String> {
        let set = self.header("set-cookie")?;
        let value = set
            .strip_prefix("__Host-portcullis_session=")?
            .split(';')
            .next()?;
        (!value.is_empty()).then(|| value.to_owned())
    }
}

pub async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// How a request authenticates.
#[derive(Clone, Debug, Default)]
pub enum Cred {
    #[default]
    None,
    Bearer(String),
    /// Session cookie and, when given, the CSRF token header.
    Cookie(String, Option<String>),
}

impl TestServer {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        cred: &Cred,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request = match cred {
            Cred::None => request,
            Cred::Bearer(token) => request.bearer_auth(token),
            Cred::Cookie(cookie, csrf) => {
                let r = request.header("cookie", format!("__Host-portcullis_session={cookie}"));
                match csrf {
                    Some(token) => r.header("x-csrf-token", token),
                    None => r,
                }
            }
        };
        read(request.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(body), &Cred::None)
            .await
    }

    pub async fn get(&self, path: &str, cred: &Cred) -> Answer {
        self.call(reqwest::Method::GET, path, None, cred).await
    }

    pub async fn admin_call(&self, method: reqwest::Method, path: &str) -> Answer {
        let request = self
            .http
            .request(method, format!("{}{path}", self.admin))
            .bearer_auth(&self.admin_token);
        read(request.send().await.unwrap()).await
    }

    pub async fn register(&self, email: &str, password: &str) -> Answer {
        self.post("/api/v1/register", json!({"email": email, "password": password, "policy_version": "1", "consents": {"account": true}})).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.post(
            "/api/v1/login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Asks for a password reset of `email`.
    pub async fn request_reset(&self, email: &str) -> Answer {
        self.post("/api/v1/password-reset", json!({"email": email}))
            .await
    }

    /// Sets `new_password` with a reset `token`.
    pub async fn confirm_reset(&self, token: &str, new_password: &str) -> Answer {
        self.post(
            "/api/v1/password-reset/confirm",
            json!({"token": token, "new_password": new_password}),
        )
        .await
    }

    /// Registers (verification off) and logs in; returns the login answer.
    pub async fn user(&self, email: &str) -> Answer {
        let registered = self.register(email, PASSWORD).await;
        assert_eq!(registered.status, 201, "{registered:?}");
        let login = self.login(email, PASSWORD).await;
        assert_eq!(login.status, 200, "{login:?}");
        login
    }

    pub async fn refresh(&self, token: &str) -> Answer {
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Sends `n` requests built by `build` at once, each on its own task; answers in order.
    pub async fn parallel(
        &self,
        n: usize,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Vec<Answer> {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let request = build(&self.http, &self.base);
                tokio::spawn(async move { read(request.send().await.unwrap()).await })
            })
            .collect();
        let mut answers = Vec::new();
        for handle in handles {
            answers.push(handle.await.unwrap());
        }
        answers
    }

    /// A file of the server's secrets dir.
    pub fn secret_file(&self, name: &str) -> String {
        std::fs::read_to_string(self._dirs.0.path().join(name)).unwrap()
    }

    /// The secret of the confidential client `client_id` (generated into the secrets dir).
    pub fn client_secret(&self, client_id: &str) -> String {
        std::fs::read_to_string(
            self._dirs
                .0
                .path()
                .join(format!("client-secret-{client_id}")),
        )
        .unwrap()
        .trim()
        .to_owned()
    }

    /// Every mail written so far, oldest first.
    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.mail_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }

    /// Every mail, once at least `count` were written (mail goes out in the background),
    /// waiting up to five seconds.
    pub async fn mails_settled(&self, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.mails().len() < count && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.mails()
    }

    /// The code on the line after `label` in the newest mail that has one, waiting up to five
    /// seconds (some mails are sent in the background).
    pub async fn mailed_code(&self, label: &str) -> String {
        self.newest_code(label, |_| true).await
    }

    /// As [`Self::mailed_code`], from the newest such mail addressed to `to`: a background
    /// notice to another user may land after the mail a test waits for.
    pub async fn mailed_code_to(&self, to: &str, label: &str) -> String {
        let header = format!("To: {to}");
        self.newest_code(label, |mail| mail.lines().any(|l| l.trim() == header))
            .await
    }

    async fn newest_code(&self, label: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .mails()
                .iter()
                .rev()
                .filter(|m| wanted(m))
                .find_map(|mail| {
                    let mut lines = mail.lines();
                    lines.find(|l| l.trim() == label)?;
                    lines.next().map(|l| l.trim().to_owned())
                });
            match found {
                Some(code) => return code,
                None if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                None => panic!("no mail with {label:?}"),
            }
        }
    }
}

pub fn bearer(login: &Answer) -> Cred {
    Cred::Bearer(login.body["access_token"].as_str().unwrap().to_owned())
}

pub fn cookie(login: &Answer) -> Cred {
    Cred::Cookie(
        login.session_cookie().unwrap(),
        login.body["csrf_token"].as_str().map(str::to_owned),
    )
}

pub fn cookie_without_csrf(login: &Answer) -> Cred {
    Cred::Cookie(login.session_cookie().unwrap(), None)
}

/// A manual clock at the current time; it moves only when a test advances it.
pub fn stopped_clock() -> Clock {
    Clock::manual(wiring::system_clock().now())
}

pub fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// A Redis server of one test's own, which it may stop and start again on the same port (the
/// shared one from `scripts/services.sh` serves every test in parallel and must stay up).
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts `redis-server` on a free loopback port, without persistence.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.start_again().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on its port (empty: nothing is saved) and waits for it.
    pub async fn start_again(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/services.sh installs it)");
        self.child = Some(child);
        for _ in 0..250 {
            if self.command(&["PING"]).await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on port {} did not answer", self.port);
    }

    /// Stops the server (kill and wait: its port is free afterwards).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command on a fresh connection; `None` when the server does not answer.
    pub async fn command(&self, args: &[&str]) -> Option<redis::Value> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await.ok()
    }

    /// `calls=` of `cmdstat_<command>` in `INFO commandstats` (0 before the first call).
    pub async fn calls(&self, command: &str) -> u64 {
        let info = match self.command(&["INFO", "commandstats"]).await {
            Some(redis::Value::BulkString(bytes)) => String::from_utf8(bytes).unwrap(),
            Some(redis::Value::VerbatimString { text, .. }) => text,
            other => panic!("INFO answered {other:?}"),
        };
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
