//! The `oauth_consents` table: which scopes a user allowed each OAuth client, so the consent
//! page is asked once per client (and again only for scopes not yet allowed).

use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::db::Db;
use super::{StoreError, locked};

/// What a user allowed one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthConsent {
    /// The client.
    pub client_id: String,
    /// Allowed scopes, sorted, each once.
    pub scopes: Vec<String>,
    /// First allowed.
    pub granted_at: OffsetDateTime,
    /// Last widened.
    pub updated_at: OffsetDateTime,
}

/// `scopes` sorted, each once.
fn normalized<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = scopes.into_iter().collect();
    set.into_iter().map(str::to_owned).collect()
}

impl Db {
    /// Records that `user` allows `client_id` the `scopes`, adding them to what was allowed
    /// before (a consent only widens here; [`Db::revoke_oauth_consent`] withdraws it whole).
    pub async fn grant_oauth_consent(
        &self,
        user: Uuid,
        client_id: &str,
        scopes: &[&str],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let scopes = normalized(scopes.iter().copied());
        match self {
            Db::Postgres(pg) => {
                sqlx::query(
                    "INSERT INTO oauth_consents (user_id, client_id, scopes, granted_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (user_id, client_id) DO UPDATE SET \
                     scopes = ARRAY(SELECT DISTINCT s FROM unnest(oauth_consents.scopes || $3) AS s ORDER BY s), \
                     updated_at = $4",
                )
                .bind(user)
                .bind(client_id)
                .bind(&scopes)
                .bind(now)
                .execute(&pg.pool)
                .await?;
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                let entry = tables
                    .oauth_consents
                    .entry((user, client_id.to_owned()))
                    .or_insert_with(|| OAuthConsent {
                        client_id: client_id.to_owned(),
                        scopes: Vec::new(),
                        granted_at: now,
                        updated_at: now,
                    });
                entry.scopes = normalized(
                    entry
                        .scopes
                        .iter()
                        .map(String::as_str)
                        .chain(scopes.iter().map(String::as_str)),
                );
                entry.updated_at = now;
            }
        }
        Ok(())
    }

    /// What `user` allowed `client_id`, if anything.
    pub async fn oauth_consent(
        &self,
        user: Uuid,
        client_id: &str,
    ) -> Result<Option<OAuthConsent>, StoreError> {
        Ok(self
            .oauth_consents(user)
            .await?
            .into_iter()
            .find(|c| c.client_id == client_id))
    }

    /// Every client `user` allowed something, by client id.
    pub async fn oauth_consents(&self, user: Uuid) -> Result<Vec<OAuthConsent>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let rows = sqlx::query(
                    "SELECT client_id, scopes, granted_at, updated_at FROM oauth_consents \
                     WHERE user_id = $1 ORDER BY client_id",
                )
                .bind(user)
                .fetch_all(&pg.pool)
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| OAuthConsent {
                        client_id: r.get("client_id"),
                        scopes: r.get("scopes"),
                        granted_at: r.get("granted_at"),
                        updated_at: r.get("updated_at"),
                    })
                    .collect())
            }
            Db::Memory(m) => Ok(locked(m)?
                .oauth_consents
                .range((user, String::new())..)
                .take_while(|((u, _), _)| *u == user)
                .map(|(_, c)| c.clone())
                .collect()),
        }
    }

    /// Withdraws everything `user` allowed `client_id`; returns whether there was a consent.
    pub async fn revoke_oauth_consent(
        &self,
        user: Uuid,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Db::Postgres(pg) => Ok(sqlx::query(
                "DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2",
            )
            .bind(user)
            .bind(client_id)
            .execute(&pg.pool)
            .await?
            .rows_affected()
                > 0),
            Db::Memory(m) => Ok(locked(m)?
                .oauth_consents
                .remove(&(user, client_id.to_owned()))
                .is_some()),
        }
    }
}
