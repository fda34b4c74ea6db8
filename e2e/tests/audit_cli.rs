//! `portcullis-authserver audit verify` as an operator or a CronJob runs it: the built binary
//! against a real PostgreSQL holding the trail a running server wrote. Exit 0 when intact,
//! 1 with the findings printed, 2 when the chain could not be checked (with the reason).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::path::PathBuf;
use std::process::{Child, Command, Output};

use portcullis_e2e::binary;
use portcullis_e2e::served::{Database, spawn_serving};
use serde_json::{Value, json};

const PASSWORD: &str = "Tangerine-Orbit-42-Quiet";

/// A realm's files: its manifest and a complete fresh secrets dir.
struct Realm {
    work: tempfile::TempDir,
}

impl Realm {
    fn new() -> Self {
        // One TLS stack, rustls with ring; reqwest is built without a default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let work = tempfile::tempdir().unwrap();
        let name = format!("audit-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let config = format!(
            "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {{name: {name}}}
spec:
  issuer: http://localhost:8080
  database: {{secretRef: {{name: db}}}}
  passwordPolicy: {{bcryptCost: 10, breachCheck: {{mode: Disabled}}}}
  notifications: {{smtp: {{secretRef: {{name: smtp}}, from: no-reply@localhost.localdomain}}}}
  privacy:
    policyVersion: \"1\"
    purposes:
      - {{name: account, required: true, description: Create and secure your account.}}
"
        );
        std::fs::write(work.path().join("realm.yaml"), config).unwrap();
        std::fs::create_dir(work.path().join("mail")).unwrap();
        let output = Command::new(binary("portcullis-authserver").unwrap())
            .args(["keys", "generate", "--secrets-dir"])
            .arg(work.path().join("secrets"))
            .output()
            .unwrap();
        assert!(output.status.success(), "keys generate: {output:?}");
        Self { work }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// The server of this realm on `database_url`, until dropped.
    fn serve(&self, database_url: &str) -> (Child, String) {
        let mut command = Command::new(binary("portcullis-authserver").unwrap());
        command
            .args(["serve", "--dev", "--config"])
            .arg(self.path("realm.yaml"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0", "--secrets-dir"])
            .arg(self.path("secrets"))
            .arg("--mail-dir")
            .arg(self.path("mail"))
            .arg("--termination-log")
            .arg(self.path("termination-log"))
            .env("DATABASE_URL", database_url)
            .env(
                "REDIS_URL",
                std::env::var("REDIS_URL").expect("REDIS_URL must be set (make test starts Redis)"),
            );
        let (child, public, _admin) = spawn_serving(command);
        (child, public)
    }

    /// `audit verify` of this realm with `args` after the subcommand.
    fn verify(&self, database_url: &str, args: &[&str]) -> Output {
        Command::new(binary("portcullis-authserver").unwrap())
            .args(["audit", "verify", "--config"])
            .arg(self.path("realm.yaml"))
            .arg("--secrets-dir")
            .arg(self.path("secrets"))
            .args(args)
            .env("DATABASE_URL", database_url)
            .output()
            .unwrap()
    }
}

/// A realm whose server wrote two registrations into a fresh database, then stopped.
async fn realm_with_a_trail() -> (Realm, Database) {
    let realm = Realm::new();
    let db = Database::create().await;
    let (mut server, public) = realm.serve(&db.url);
    let http = reqwest::Client::new();
    for email in ["ada@example.com", "grace@example.com"] {
        let answer = http
            .post(format!("{public}/api/v1/register"))
            .json(
                &json!({"email": email, "password": PASSWORD, "policy_version": "1",
                "consents": {"account": true}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "{:?}", answer.text().await);
    }
    server.kill().unwrap();
    server.wait().unwrap();
    (realm, db)
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a JSON report ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// An UPDATE as the database owner does it past the append-only trigger.
async fn edit_as_owner(database_url: &str, sql: &'static str) {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL portcullis.audit_maintenance = 'on'")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn an_intact_trail_exits_0_and_its_head_checks_as_expected() {
    let (realm, db) = realm_with_a_trail().await;
    let output = realm.verify(&db.url, &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let intact = report(&output);
    assert_eq!(intact["ok"], true, "{intact}");
    let seq = intact["head"]["seq"].as_i64().unwrap();
    assert!(seq >= 2, "two registrations were audited: {intact}");
    let head = format!("{seq}:{}", intact["head"]["hash"].as_str().unwrap());

    let output = realm.verify(&db.url, &["--expect-head", &head]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(report(&output)["expected_head_checked"], true);
    db.drop_now().await;
}

#[tokio::test]
async fn a_row_edited_in_sql_exits_1_naming_it() {
    let (realm, db) = realm_with_a_trail().await;
    edit_as_owner(
        &db.url,
        "UPDATE audit_events SET outcome = 'failure' WHERE seq = 1",
    )
    .await;
    let output = realm.verify(&db.url, &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let broken = report(&output);
    assert_eq!(broken["ok"], false);
    let findings = broken["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "changed" && f["seq"] == 1),
        "{broken}"
    );
    db.drop_now().await;
}

#[tokio::test]
async fn a_rewritten_head_exits_1_against_the_head_recorded_elsewhere() {
    let (realm, db) = realm_with_a_trail().await;
    let intact = report(&realm.verify(&db.url, &[]));
    let seq = intact["head"]["seq"].as_i64().unwrap();
    // The head a SIEM recorded, with one hex digit changed.
    let hash = intact["head"]["hash"].as_str().unwrap();
    let flipped = if hash.starts_with('0') { "1" } else { "0" };
    let recorded = format!("{seq}:{flipped}{}", &hash[1..]);
    let output = realm.verify(&db.url, &["--expect-head", &recorded]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    db.drop_now().await;
}

#[tokio::test]
async fn an_unreachable_database_exits_2_saying_why() {
    let realm = Realm::new();
    let output = realm.verify("postgres://nobody@127.0.0.1:1/none", &[]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
}

#[tokio::test]
async fn a_malformed_expected_head_exits_2_saying_the_form() {
    let (realm, db) = realm_with_a_trail().await;
    let output = realm.verify(&db.url, &["--expect-head", "seven"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SEQ:HEX"), "{stderr}");
    db.drop_now().await;
}
