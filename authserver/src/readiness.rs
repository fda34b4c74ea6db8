//! Readiness: the dependencies a request needs answer, and the schema is current.

use serde::Serialize;

use crate::store::Db;
use crate::store::kv::Kv;

/// The stores readiness checks.
#[derive(Clone, Debug)]
pub struct Readiness {
    db: Db,
    kv: Kv,
}

/// The result of the checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checks {
    /// `ok`, `migrations pending` or `unreachable`.
    pub database: &'static str,
    /// `ok` or `unreachable`.
    pub session_store: &'static str,
}

impl Checks {
    /// Whether every check passed.
    pub fn ready(&self) -> bool {
        self.database == "ok" && self.session_store == "ok"
    }
}

impl Readiness {
    /// Checks over these stores.
    pub fn new(db: Db, kv: Kv) -> Self {
        Self { db, kv }
    }

    /// Runs the checks.
    pub async fn check(&self) -> Checks {
        let database = match self.db.migrations_applied().await {
            Ok(true) => "ok",
            Ok(false) => "migrations pending",
            Err(_) => "unreachable",
        };
        let session_store = match self.kv.ping().await {
            Ok(()) => "ok",
            Err(_) => "unreachable",
        };
        Checks {
            database,
            session_store,
        }
    }
}
