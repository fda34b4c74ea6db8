//! Validate: the effective settings of the realm with its attached policies (pure).

use portcullis_crds::{AuthRealm, RealmSettings, SettingsErrors};

use super::fetch::Fetched;

/// Derives the settings. Only the oldest RetentionPolicy is attached; the RetentionPolicy
/// controller reports the others as not accepted, so they never block the realm.
pub fn validate(realm: &AuthRealm, fetched: &Fetched) -> Result<RealmSettings, SettingsErrors> {
    let retention = fetched
        .retention_policies
        .first()
        .map(std::slice::from_ref)
        .unwrap_or_default();
    RealmSettings::derive(
        realm,
        &fetched.rate_limit_policies,
        retention,
        &fetched.clients,
    )
}
