//! The backup and recovery procedure of `docs/operations.md`, followed with the built binaries,
//! real PostgreSQL and the real `pg_dump`/`pg_restore`: back up the database (online, with
//! `pg_dump --format=custom`) and the secrets dir, destroy the database, restore both, and the
//! users of the backup log in again with their passwords; a restore beside the wrong keys is
//! refused at start, naming each key. Without `pg_dump`/`pg_restore` of the server's major
//! version (or newer) the tests say SKIPPED and pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

use portcullis_e2e::served::{Database, spawn_serving, wait_for_mail};
use portcullis_e2e::{binary, repo_root, skipped, totp};
use serde_json::{Value, json};

const PASSWORD: &str = "Tangerine-Orbit-42-Quiet";
/// The password alice changes to after the backup.
const NEW_PASSWORD: &str = "Marmalade-Comet-57-Silent";

/// `pg_dump` and `pg_restore` able to handle the server: of its major version or newer.
struct PgTools {
    pg_dump: PathBuf,
    pg_restore: PathBuf,
}

/// The major version a `--version` line names: `pg_dump (PostgreSQL) 15.14 (Debian ...)`.
fn tool_major(tool: &Path) -> Option<u32> {
    let output = Command::new(tool).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let version = text.split(')').nth(1)?.split_whitespace().next()?;
    version.split('.').next()?.parse().ok()
}

/// The server's own client binaries first (`/usr/lib/postgresql/<major>/bin`, where Debian puts
/// them), then those on PATH; `Err` says why there are none to use.
async fn pg_tools(admin: &sqlx::PgPool) -> Result<PgTools, String> {
    let version: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
        .fetch_one(admin)
        .await
        .expect("the server's version");
    let server_major = version.parse::<u32>().expect("a version number") / 10000;
    let mut dirs = vec![PathBuf::from(format!(
        "/usr/lib/postgresql/{server_major}/bin"
    ))];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    for dir in dirs {
        let (pg_dump, pg_restore) = (dir.join("pg_dump"), dir.join("pg_restore"));
        if !pg_dump.is_file() || !pg_restore.is_file() {
            continue;
        }
        match (tool_major(&pg_dump), tool_major(&pg_restore)) {
            (Some(dump), Some(restore)) if dump >= server_major && restore >= dump => {
                return Ok(PgTools {
                    pg_dump,
                    pg_restore,
                });
            }
            _ => continue,
        }
    }
    Err(format!(
        "no pg_dump and pg_restore of PostgreSQL {server_major} or newer (install postgresql-client-{server_major})"
    ))
}

/// The pool on `DATABASE_URL`'s own database, from which test databases are created and dropped.
async fn admin_pool() -> sqlx::PgPool {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must be set (make test starts PostgreSQL)");
    sqlx::PgPool::connect(&url)
        .await
        .expect("PostgreSQL at DATABASE_URL")
}

/// Runs `command` and panics with its stderr when it fails.
fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The backup procedure of docs/operations.md: `pg_dump --format=custom` of the running
/// database (one consistent snapshot, no need to stop the server).
fn back_up_database(tools: &PgTools, database_url: &str, file: &Path) {
    run(
        Command::new(&tools.pg_dump)
            .args(["--format=custom", "--file"])
            .arg(file)
            .arg(database_url),
        "pg_dump",
    );
}

/// The restore procedure of docs/operations.md, into an empty database.
fn restore_database(tools: &PgTools, database_url: &str, file: &Path) {
    run(
        Command::new(&tools.pg_restore)
            .args([
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                "--dbname",
            ])
            .arg(database_url)
            .arg(file),
        "pg_restore",
    );
}

/// Copies every file of `from` into `to` (the secrets dir is flat, one file per key).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `portcullis-authserver keys generate`: a fresh set of keys, as outside Kubernetes.
fn generate_keys(dir: &Path) {
    run(
        Command::new(binary("portcullis-authserver").unwrap())
            .args(["keys", "generate", "--secrets-dir"])
            .arg(dir),
        "keys generate",
    );
}

/// `keys fingerprint` of a secrets dir: (kind, key id, fingerprint) sorted.
fn fingerprints_of(dir: &Path) -> Vec<(String, String, String)> {
    let output = Command::new(binary("portcullis-authserver").unwrap())
        .args(["keys", "fingerprint", "--secrets-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let keys: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut keys: Vec<_> = keys
        .iter()
        .map(|k| {
            let field = |name: &str| k[name].as_str().unwrap().to_owned();
            (field("kind"), field("keyId"), field("fingerprint"))
        })
        .collect();
    keys.sort();
    keys
}

/// The fingerprints a database recorded, as `keys fingerprint` prints them (docs/operations.md
/// gives this query to check a keys backup against a database backup).
async fn recorded_fingerprints(database_url: &str) -> Vec<(String, String, String)> {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT kind, key_id, left(encode(fingerprint, 'hex'), 16) FROM key_fingerprints ORDER BY 1, 2, 3",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

/// The realm of these tests: the dev realm under a name of its own, so its Redis keys
/// (`portcullis:<realm>:`) are its own too.
struct Realm {
    name: String,
    work: tempfile::TempDir,
}

impl Realm {
    fn new() -> Self {
        // One TLS stack, rustls with ring; reqwest is built without a default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let name = format!("backup-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let work = tempfile::tempdir().unwrap();
        let config = format!(
            "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {{name: {name}}}
spec:
  issuer: http://localhost:8080
  database: {{secretRef: {{name: db}}}}
  passwordPolicy: {{bcryptCost: 10, breachCheck: {{mode: Disabled}}}}
  lockout: {{progressiveDelay: {{afterFailures: 0}}}}
  notifications: {{smtp: {{secretRef: {{name: smtp}}, from: no-reply@localhost.localdomain}}}}
  privacy:
    policyVersion: \"1\"
    purposes:
      - {{name: account, required: true, description: Create and secure your account.}}
"
        );
        std::fs::write(work.path().join("realm.yaml"), config).unwrap();
        std::fs::create_dir(work.path().join("mail")).unwrap();
        Self { name, work }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `serve` of this realm on `database_url` with the keys in `secrets`. `--dev` only so
    /// that mail goes to the mail dir: every key exists already, so it generates none.
    fn serve(&self, database_url: &str, secrets: &Path) -> Command {
        let mut command = Command::new(binary("portcullis-authserver").unwrap());
        command
            .args(["serve", "--dev", "--config"])
            .arg(self.path("realm.yaml"))
            .args([
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
            .arg(self.path("mail"))
            .arg("--termination-log")
            .arg(self.path("termination-log"))
            .env("DATABASE_URL", database_url)
            .env(
                "REDIS_URL",
                std::env::var("REDIS_URL").expect("REDIS_URL must be set (make test starts Redis)"),
            )
            .current_dir(repo_root());
        command
    }

    fn start(&self, database_url: &str, secrets: &Path) -> Server {
        let (child, public, _admin) = spawn_serving(self.serve(database_url, secrets));
        Server {
            child,
            public,
            http: reqwest::Client::new(),
            mail_dir: self.path("mail"),
        }
    }

    /// Deletes every Redis key of the realm, as a Redis lost with its data would.
    async fn lose_redis(&self) {
        let url = std::env::var("REDIS_URL").expect("REDIS_URL must be set");
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let pattern = format!("portcullis:{}:*", self.name);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await
                    .unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

/// A running server of the realm.
struct Server {
    child: Child,
    public: String,
    http: reqwest::Client,
    mail_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Registers `email` and verifies it with the mailed code.
    async fn account(&self, email: &str) {
        let registered = self
            .http
            .post(format!("{}/api/v1/register", self.public))
            .json(&json!({"email": email, "password": PASSWORD, "policy_version": "1", "consents": {"account": true}}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 202, "{:?}", registered.text().await);
        // The code of the mail to this address (an earlier account's mail is there too).
        let token = wait_for_mail(&self.mail_dir, email, |mail| {
            if !mail.contains(email) {
                return None;
            }
            let mut lines = mail.lines();
            lines.find(|l| l.trim() == "Verification code:")?;
            lines.next().map(|l| l.trim().to_owned())
        });
        let verified = self
            .http
            .post(format!("{}/api/v1/verify-email", self.public))
            .json(&json!({"token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(verified.status(), 200, "{:?}", verified.text().await);
    }

    /// `POST /api/v1/login`: (status, body, session cookie).
    async fn login(&self, email: &str, password: &str) -> (u16, Value, Option<String>) {
        self.post_login(
            "/api/v1/login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// A login with a second factor: the password step must answer `mfa_required`, then
    /// `POST /api/v1/login/mfa` with the token and `factor` (`{"code": ..}` or
    /// `{"recovery_code": ..}`): (status, body, session cookie) of that second step.
    async fn login_with_second_factor(
        &self,
        email: &str,
        password: &str,
        factor: Value,
    ) -> (u16, Value, Option<String>) {
        let (status, first, cookie) = self.login(email, password).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(
            first["mfa_required"], true,
            "the password alone is not enough: {first}"
        );
        assert!(
            first.get("access_token").is_none(),
            "no token before the second factor"
        );
        assert!(cookie.is_none(), "no session before the second factor");
        let mut body = factor;
        body["mfa_token"] = first["mfa_token"].clone();
        self.post_login("/api/v1/login/mfa", body).await
    }

    /// POSTs a JSON body to a login route: (status, body, session cookie).
    async fn post_login(&self, path: &str, body: Value) -> (u16, Value, Option<String>) {
        let response = self
            .http
            .post(format!("{}{path}", self.public))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body, cookie)
    }

    /// Enrols a TOTP authenticator with the account API (password re-check, then a code from
    /// the tests' own RFC 6238 authenticator): (its base32 secret, the recovery codes).
    async fn enrol_totp(&self, bearer: &str, password: &str) -> (String, Vec<String>) {
        let begun = self
            .http
            .post(format!("{}/api/v1/me/mfa/totp", self.public))
            .bearer_auth(bearer)
            .json(&json!({"password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(begun.status(), 200);
        let begun: Value = begun.json().await.unwrap();
        let secret = begun["secret"].as_str().unwrap().to_owned();
        assert_eq!(
            totp::secret_of_uri(begun["otpauth_uri"].as_str().unwrap()).as_deref(),
            Some(secret.as_str()),
            "the QR code's URI carries the secret shown"
        );
        let confirmed = self
            .http
            .post(format!("{}/api/v1/me/mfa/totp/confirm", self.public))
            .bearer_auth(bearer)
            .json(&json!({"code": totp::code_now(&secret)}))
            .send()
            .await
            .unwrap();
        assert_eq!(confirmed.status(), 200);
        let confirmed: Value = confirmed.json().await.unwrap();
        let codes = confirmed["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        (secret, codes)
    }

    /// `GET /api/v1/me` with a bearer token or a session cookie: (status, body).
    async fn me(&self, bearer: Option<&str>, cookie: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(format!("{}/api/v1/me", self.public));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /api/v1/me/password` with a bearer token: status.
    async fn change_password(&self, bearer: &str, current: &str, new: &str) -> u16 {
        self.http
            .post(format!("{}/api/v1/me/password", self.public))
            .bearer_auth(bearer)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The refresh grant of the realm's own API: (status, body).
    async fn refresh(&self, token: &str) -> (u16, Value) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", token)
            .finish();
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.public))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Stops the server (SIGKILL: what a lost node does; nothing here depends on a drain).
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The drill of docs/operations.md ("Verifying a backup"): an online backup of the database
/// and a copy of the keys; the database destroyed, and Redis lost with it; both restored into
/// a new empty database of the same name. The user of the backup logs in with the same
/// password and a code of the same TOTP authenticator; what happened after the backup is gone (an account registered since, a login
/// since, a password changed since); hosted-page sessions lived in Redis and are gone; a refresh token the backup holds
/// still refreshes.
#[tokio::test]
async fn a_user_of_the_backup_logs_in_with_the_same_password_after_the_database_is_destroyed_and_restored()
 {
    let admin = admin_pool().await;
    let tools = match pg_tools(&admin).await {
        Ok(tools) => tools,
        Err(reason) => {
            skipped("the backup and restore drill", &reason);
            return;
        }
    };
    let database = Database::create().await;
    let realm = Realm::new();
    let secrets = realm.path("secrets");
    generate_keys(&secrets);
    let server = realm.start(&database.url, &secrets);

    // Before the backup: an account with a TOTP authenticator (its secret, encrypted under the
    // Fernet key, is in the backup), signed in with its second factor. Each TOTP step is
    // accepted once, and enrolment used the current one: the logins before the restore use
    // recovery codes, the one after it a code of the authenticator.
    server.account("alice@example.com").await;
    let (status, enrolling, _) = server.login("alice@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{enrolling}");
    let (totp_secret, recovery_codes) = server
        .enrol_totp(enrolling["access_token"].as_str().unwrap(), PASSWORD)
        .await;
    let (status, before, alice_cookie) = server
        .login_with_second_factor(
            "alice@example.com",
            PASSWORD,
            json!({"recovery_code": recovery_codes[0]}),
        )
        .await;
    assert_eq!(status, 200, "{before}");
    let alice_cookie = alice_cookie.expect("the login sets the session cookie");
    let refresh_before = before["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(server.me(None, Some(&alice_cookie)).await.0, 200);

    // The backup, taken while the server serves: the database and a copy of the keys.
    let dump = realm.path("portcullis.dump");
    let started = Instant::now();
    back_up_database(&tools, &database.url, &dump);
    let took = started.elapsed();
    let keys_backup = realm.path("keys-backup");
    copy_dir(&secrets, &keys_backup);
    eprintln!(
        "backup: pg_dump --format=custom took {took:?}, {} bytes",
        std::fs::metadata(&dump).unwrap().len()
    );

    // After the backup: another account, a new password and a login with it, which the
    // backup does not hold.
    server.account("bob@example.com").await;
    let (status, changing, _) = server
        .login_with_second_factor(
            "alice@example.com",
            PASSWORD,
            json!({"recovery_code": recovery_codes[1]}),
        )
        .await;
    assert_eq!(status, 200, "{changing}");
    assert_eq!(
        server
            .change_password(
                changing["access_token"].as_str().unwrap(),
                PASSWORD,
                NEW_PASSWORD
            )
            .await,
        204
    );
    assert_eq!(server.login("alice@example.com", PASSWORD).await.0, 401);
    assert_eq!(
        server.refresh(&refresh_before).await.0,
        400,
        "the password change ended the grants of before"
    );
    let (status, after, _) = server
        .login_with_second_factor(
            "alice@example.com",
            NEW_PASSWORD,
            json!({"recovery_code": recovery_codes[2]}),
        )
        .await;
    assert_eq!(status, 200, "the new password is in force: {after}");
    let refresh_after = after["refresh_token"].as_str().unwrap().to_owned();

    // The disaster: the server stops, the database and the keys are destroyed, Redis is lost.
    server.stop();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {} WITH (FORCE)",
        database.name()
    )))
    .execute(&admin)
    .await
    .unwrap();
    assert!(
        sqlx::PgPool::connect(&database.url).await.is_err(),
        "the database is gone"
    );
    std::fs::remove_dir_all(&secrets).unwrap();
    realm.lose_redis().await;

    // The restore: an empty database, pg_restore, the keys back; then the server starts (its
    // migrations find nothing to do, the key fingerprint check passes).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {}",
        database.name()
    )))
    .execute(&admin)
    .await
    .unwrap();
    restore_database(&tools, &database.url, &dump);
    // The keys backup covers what the database backup recorded, checked before starting.
    assert_eq!(
        fingerprints_of(&keys_backup),
        recorded_fingerprints(&database.url).await,
        "the keys backup holds exactly the keys the database recorded"
    );
    copy_dir(&keys_backup, &secrets);
    let server = realm.start(&database.url, &secrets);

    // The user of the backup logs in with the same password and a code of the same
    // authenticator: the TOTP secret decrypts under the restored Fernet key ring. (The next
    // step's code: enrolment used the current one, and a step is accepted once.)
    let (status, restored, _) = server
        .login_with_second_factor(
            "alice@example.com",
            PASSWORD,
            json!({"code": totp::next_code(&totp_secret)}),
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["user_id"], before["user_id"], "the same account");
    let (status, me) = server.me(restored["access_token"].as_str(), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(
        server.login("alice@example.com", NEW_PASSWORD).await.0,
        401,
        "and only with that one: the password changed after the backup is gone with it"
    );

    // What happened after the backup is gone.
    assert_eq!(
        server.login("bob@example.com", PASSWORD).await.0,
        401,
        "an account registered after the backup does not exist"
    );
    assert_eq!(
        server.refresh(&refresh_after).await.0,
        400,
        "a refresh token issued after the backup is unknown"
    );
    // Sessions lived in Redis: the cookie of before signs nobody in. A refresh token the
    // backup holds (the realm's own API) refreshes again, though the password change after
    // the backup had ended it.
    assert_eq!(
        server.me(None, Some(&alice_cookie)).await.0,
        401,
        "the session is gone with Redis"
    );
    let (status, refreshed) = server.refresh(&refresh_before).await;
    assert_eq!(
        status, 200,
        "a refresh token of the backup still refreshes: {refreshed}"
    );
    // The optional step after restoring an older backup (logouts since it are undone): every
    // refresh-token family revoked, so every client signs in again.
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    sqlx::query("UPDATE refresh_families SET revoked_at = now() WHERE revoked_at IS NULL")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(
        server
            .refresh(refreshed["refresh_token"].as_str().unwrap())
            .await
            .0,
        400,
        "after the revocation step, no refresh token refreshes"
    );
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.0,
        200,
        "and logging in again works"
    );
    server.stop();
    database.drop_now().await;
}

/// A backup restored into another database beside keys that are not the backup's (a freshly
/// generated set): the server refuses to start, exits 1, names the pepper version and the
/// Fernet key it lacks on stderr and leaves `KeysMismatch` for the operator; it never serves
/// passwords it cannot verify.
#[tokio::test]
async fn a_restore_beside_freshly_generated_keys_is_refused_at_start_naming_each_key() {
    let admin = admin_pool().await;
    let tools = match pg_tools(&admin).await {
        Ok(tools) => tools,
        Err(reason) => {
            skipped("the restore with the wrong keys", &reason);
            return;
        }
    };
    let original = Database::create().await;
    let realm = Realm::new();
    let secrets = realm.path("secrets");
    generate_keys(&secrets);
    // The first start records the keys' fingerprints.
    realm.start(&original.url, &secrets).stop();
    let dump = realm.path("portcullis.dump");
    back_up_database(&tools, &original.url, &dump);

    let other = Database::create().await;
    restore_database(&tools, &other.url, &dump);
    let wrong = realm.path("wrong-keys");
    generate_keys(&wrong);
    let termination = realm.path("termination-log");
    // Kubernetes creates the file; the server only fills it.
    std::fs::write(&termination, "").unwrap();
    let output = realm
        .serve(&other.url, &wrong)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "refused, not serving");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let fernet_id = fingerprints_of(&secrets)
        .into_iter()
        .find(|(kind, _, _)| kind == "fernet")
        .expect("a Fernet key")
        .1;
    for named in [
        "the keys in the secrets dir do not match the data in the database",
        "pepper version v1 is another key than the one recorded",
        &format!("Fernet key {fernet_id} ("),
        "refusing to start",
    ] {
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
    let message: Value =
        serde_json::from_str(&std::fs::read_to_string(&termination).unwrap()).unwrap();
    assert_eq!(message["reason"], "KeysMismatch", "{message}");
    // Nothing was recorded for the wrong keys: with the right ones, the same restore serves.
    realm.start(&other.url, &secrets).stop();
    other.drop_now().await;
    original.drop_now().await;
}
