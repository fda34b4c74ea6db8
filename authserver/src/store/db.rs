//! The account database: PostgreSQL, or its in-memory twin behind the same methods (one
//! replica in `--dev`, and unit tests of the domain). The table groups are in sibling modules.

use std::sync::{Arc, Mutex};

use portcullis_audit::{AuditKeys, AuditLog, MemoryAuditLog, PgAuditLog};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::StoreError;
use super::one_time_tokens::OneTimeRow;
use super::refresh_families::{FamilyRow, TokenRow};
use super::users::UserRecord;

/// The embedded migrations (`authserver/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The account database.
#[derive(Clone, Debug)]
pub enum Db {
    /// PostgreSQL.
    Postgres(Postgres),
    /// Process memory.
    Memory(Arc<Mutex<Tables>>),
}

/// A PostgreSQL pool with the auth server's schema.
#[derive(Clone, Debug)]
pub struct Postgres {
    pub(super) pool: PgPool,
}

/// The in-memory tables, keyed as their SQL twins.
#[derive(Debug, Default)]
pub struct Tables {
    pub(super) users: std::collections::HashMap<uuid::Uuid, UserRecord>,
    pub(super) one_time: std::collections::HashMap<Vec<u8>, OneTimeRow>,
    pub(super) families: std::collections::HashMap<uuid::Uuid, FamilyRow>,
    pub(super) refresh: std::collections::HashMap<Vec<u8>, TokenRow>,
    pub(super) consents: std::collections::BTreeMap<(uuid::Uuid, String), (bool, String)>,
    pub(super) oauth_consents:
        std::collections::BTreeMap<(uuid::Uuid, String), super::oauth_consents::OAuthConsent>,
    pub(super) key_fingerprints:
        std::collections::BTreeMap<(String, String), super::key_fingerprints::KeyFingerprintRow>,
    pub(super) known_devices:
        std::collections::HashMap<uuid::Uuid, Vec<super::known_devices::DeviceRow>>,
    pub(super) breach_noticed: std::collections::HashMap<uuid::Uuid, i64>,
}

impl Postgres {
    /// Connects with a bounded pool.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// The pool (the notification outbox shares it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Runs pending migrations under PostgreSQL's advisory lock (sqlx takes it), so replicas
    /// starting together apply each migration once.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }
}

impl From<Postgres> for Db {
    fn from(postgres: Postgres) -> Self {
        Db::Postgres(postgres)
    }
}

impl Db {
    /// The PostgreSQL database, when this is one (retention runs only there).
    pub fn postgres(&self) -> Option<&Postgres> {
        match self {
            Db::Postgres(pg) => Some(pg),
            Db::Memory(_) => None,
        }
    }

    /// An empty in-memory database.
    pub fn memory() -> Self {
        Db::Memory(Arc::default())
    }

    /// Wraps an existing PostgreSQL pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Db::Postgres(Postgres::from_pool(pool))
    }

    /// The audit log beside the accounts: its PostgreSQL tables (0006), or process memory
    /// for the in-memory database, so `--dev` and unit tests audit too.
    pub fn audit_log(&self, keys: Arc<AuditKeys>, realm: &str) -> AuditLog {
        match self {
            Db::Postgres(pg) => PgAuditLog::new(pg.pool.clone(), keys, realm).into(),
            Db::Memory(_) => MemoryAuditLog::new(keys, realm).into(),
        }
    }

    /// Whether every embedded migration is applied successfully (always, in memory).
    pub async fn migrations_applied(&self) -> Result<bool, StoreError> {
        let Db::Postgres(pg) = self else {
            return Ok(true);
        };
        let applied: Vec<(i64, bool)> =
            match sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
                .fetch_all(&pg.pool)
                .await
            {
                Ok(rows) => rows,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            };
        Ok(MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| applied.iter().any(|(v, ok)| *v == m.version && *ok)))
    }

    /// Answers when the database is reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        if let Db::Postgres(pg) = self {
            sqlx::query("SELECT 1").execute(&pg.pool).await?;
        }
        Ok(())
    }
}
