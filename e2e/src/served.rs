//! The built auth server as the black-box tests run it: a fresh database for each test, the
//! process started with its listeners on free loopback ports, and the mail it writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo_root;

/// A fresh database for one test, dropped at the end, so runs never see each other's rows.
pub struct Database {
    admin: sqlx::PgPool,
    name: String,
    /// Its URL, for the server's `DATABASE_URL`.
    pub url: String,
}

impl Database {
    /// Creates the database next to the one `DATABASE_URL` names (`make test` provides it).
    pub async fn create() -> Self {
        let base = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL must be set (make test starts PostgreSQL)");
        let name = format!("portcullis_e2e_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let (prefix, _) = base.rsplit_once('/').unwrap();
        let url = format!("{prefix}/{name}");
        Self { admin, name, url }
    }

    /// The database's name (to drop and create it again, as a restore does).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, ending the connections still open to it.
    pub async fn drop_now(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

/// Starts a server and waits until it prints its public and admin URLs: (process, public URL,
/// admin URL).
pub fn spawn_serving(mut command: Command) -> (Child, String, String) {
    let mut child = command
        .env("RUST_LOG", "warn")
        .current_dir(repo_root())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut public, mut admin) = (None, None);
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:") || w.starts_with("https://127.0.0.1:"))
            .map(str::to_owned);
        if line.contains("public API") {
            public = url;
        } else if line.contains("admin") {
            admin = url;
        }
        seen.push(line);
        if public.is_some() && admin.is_some() {
            break;
        }
    }
    // Keep draining stderr: a closed pipe would make the server's next message fail.
    std::thread::spawn(move || lines.for_each(drop));
    let (Some(public), Some(admin)) = (public, admin) else {
        let _ = child.kill();
        panic!("the server did not print its URLs:\n{}", seen.join("\n"));
    };
    (child, public, admin)
}

/// The mails in `dir`, newest first (the server names them so that they sort by time, writes
/// each under a hidden name and renames it to `.eml` when complete), their bodies decoded
/// when sent quoted-printable (long lines, such as links, are wrapped then).
pub fn mails(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .iter()
        .rev()
        .map(|f| decoded(&std::fs::read_to_string(f).unwrap()))
        .collect()
}

/// A message with its body decoded from quoted-printable (RFC 2045 §6.7) when its header
/// says so: soft line breaks joined, `=XX` turned back into bytes.
fn decoded(message: &str) -> String {
    let Some((head, body)) = message.split_once("\r\n\r\n") else {
        return message.to_owned();
    };
    if !head
        .to_ascii_lowercase()
        .contains("content-transfer-encoding: quoted-printable")
    {
        return message.to_owned();
    }
    let joined = body.replace("=\r\n", "").replace("=\n", "");
    let mut bytes = Vec::with_capacity(joined.len());
    let raw = joined.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'=', Some(byte)) => {
                bytes.push(byte);
                i += 3;
            }
            (other, _) => {
                bytes.push(other);
                i += 1;
            }
        }
    }
    format!("{head}\r\n\r\n{}", String::from_utf8_lossy(&bytes))
}

/// What `find` takes from the newest mail in `dir` it finds something in, waiting up to five
/// seconds (mail goes out in the background).
pub fn wait_for_mail<T>(dir: &Path, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(found) = mails(dir).iter().find_map(|m| find(m)) {
            return found;
        }
        assert!(Instant::now() < deadline, "no mail with {what} in {dir:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The code on the line after `label` in the newest mail that has one.
pub fn mailed_code(dir: &Path, label: &str) -> String {
    wait_for_mail(dir, label, |mail| {
        let mut lines = mail.lines();
        lines.find(|l| l.trim() == label)?;
        lines.next().map(|l| l.trim().to_owned())
    })
}

/// The first link starting with `prefix` in the newest mail that has one.
pub fn mailed_link(dir: &Path, prefix: &str) -> String {
    wait_for_mail(dir, prefix, |mail| {
        mail.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
    })
}
