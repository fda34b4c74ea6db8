//! The crate's one error type.

use uuid::Uuid;

/// Why a privacy operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// PostgreSQL failed or refused a statement.
    #[error("privacy store: {0}")]
    Database(#[from] sqlx::Error),
    /// The audit trail failed (pseudonymisation, pruning, reading events).
    #[error("privacy: audit trail: {0}")]
    Audit(#[from] portcullis_audit::StoreError),
    /// The realm's policy has no purpose of this name.
    #[error("no consent purpose {purpose:?} in the privacy policy")]
    UnknownPurpose {
        /// The name given.
        purpose: String,
    },
    /// A required purpose was withdrawn or not granted. Using the account needs it; the way
    /// out is deleting the account.
    #[error(
        "consent to {purpose:?} is required to use the account; to withdraw it, delete the account"
    )]
    ConsentRequired {
        /// The required purpose.
        purpose: String,
    },
    /// The version the user saw is not the realm's current policy version.
    #[error("the current privacy policy is version {current:?}, not {given:?}")]
    PolicyVersionMismatch {
        /// The realm's version.
        current: String,
        /// The version the request named.
        given: String,
    },
    /// No account with this id.
    #[error("no user {0}")]
    UnknownUser(Uuid),
    /// No erasure request with this id.
    #[error("no erasure request {0}")]
    UnknownErasure(Uuid),
    /// Erasing the user's keys in the key-value store (Redis) failed; the erasure stays
    /// pending and resumes at its next run.
    #[error("erasing the user's session and counter keys failed: {0}")]
    KvErase(String),
    /// The caller's [`FinishHook`](crate::erasure::FinishHook) failed; the erasure's last step
    /// rolled back and the request stays pending.
    #[error("the erasure's finishing hook failed: {0}")]
    Hook(String),
    /// The operation met continuous contention and gave up for now; retrying later is safe.
    #[error("busy: {what}")]
    Busy {
        /// What kept it from finishing.
        what: &'static str,
    },
    /// An argument is out of range (a negative grace period, a time past the calendar).
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The argument.
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A stored value does not have the shape the schema promises.
    #[error("stored {what} is malformed")]
    Malformed {
        /// The column.
        what: &'static str,
    },
}

impl PrivacyError {
    /// A stable machine-readable reason (API error codes, metric labels, logs).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Database(_) => "database",
            Self::Audit(_) => "audit",
            Self::UnknownPurpose { .. } => "unknown_purpose",
            Self::ConsentRequired { .. } => "consent_required",
            Self::PolicyVersionMismatch { .. } => "policy_version_mismatch",
            Self::UnknownUser(_) => "unknown_user",
            Self::UnknownErasure(_) => "unknown_erasure",
            Self::KvErase(_) => "kv_erase",
            Self::Hook(_) => "hook",
            Self::Busy { .. } => "busy",
            Self::Invalid { .. } => "invalid",
            Self::Malformed { .. } => "malformed",
        }
    }
}

/// Whether `e` is a foreign-key violation (a row naming an account that does not exist).
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23503"))
}
