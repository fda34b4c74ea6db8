//! The `consents` table: what each user agreed to, under which policy version.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::Db;
use super::{StoreError, locked};

impl Db {
    /// Records consents (given at registration), replacing earlier answers per purpose.
    pub async fn upsert_consents(
        &self,
        user: Uuid,
        consents: &[(String, bool)],
        policy_version: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
                for (purpose, granted) in consents {
                    sqlx::query(
                        "INSERT INTO consents (user_id, purpose, granted, policy_version, updated_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (user_id, purpose) DO UPDATE SET granted = $3, policy_version = $4, updated_at = $5",
                    )
                    .bind(user)
                    .bind(purpose)
                    .bind(granted)
                    .bind(policy_version)
                    .bind(now)
                    .execute(&pg.pool)
                    .await?;
                }
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                for (purpose, granted) in consents {
                    tables.consents.insert(
                        (user, purpose.clone()),
                        (*granted, policy_version.to_owned()),
                    );
                }
            }
        }
        Ok(())
    }
}
