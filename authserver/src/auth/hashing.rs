//! Password hashing: bcrypt (cost from the realm) over `base64(HMAC-SHA256(pepper, password))`
//! — bcrypt ignores input past 72 bytes, the HMAC makes every password count — on a bounded
//! blocking pool so hashing never stalls the async executor, with a bounded queue in front of
//! it: past the bound a caller is told to come back (`AuthError::Busy`) instead of waiting
//! without limit. Unknown accounts are verified against a dummy hash of the same cost so they
//! take the same time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::AuthError;
use super::keys::Pepper;
use crate::metrics::HashingLoad;
use crate::random::Random;

/// A stored password hash and the pepper version it was made with. `Debug` shows the version
/// only.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredHash {
    /// The bcrypt string (`$2b$12$...`).
    pub hash: String,
    /// Pepper version.
    pub pepper_version: String,
}

impl std::fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredHash")
            .field("pepper_version", &self.pepper_version)
            .finish_non_exhaustive()
    }
}

/// The result of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The password matched.
    pub ok: bool,
    /// The hash should be remade (lower cost or older pepper than the realm's current).
    pub needs_upgrade: bool,
}

/// How many bcrypt runs go at once, and how many more may wait for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSize {
    /// Concurrent runs (the core count).
    pub permits: usize,
    /// Callers that may wait beyond those.
    pub queue: usize,
}

impl PoolSize {
    /// `permits` runs at once, and eight waiting per run: at the default cost a queued caller
    /// waits about two seconds at most.
    pub fn with_permits(permits: usize) -> Self {
        let permits = permits.max(1);
        Self {
            permits,
            queue: permits.saturating_mul(8),
        }
    }
}

/// A place in the hashing pool (running or queued), taken by [`PasswordHasher::reserve`]
/// before anything else happens, and given back when dropped.
#[derive(Debug)]
pub struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Hashes and verifies passwords on a bounded pool of bcrypt runs.
#[derive(Debug)]
pub struct PasswordHasher {
    peppers: Vec<Pepper>,
    cost: u32,
    random: Random,
    pool: Semaphore,
    in_flight: AtomicUsize,
    permits: usize,
    capacity: usize,
    refused: AtomicU64,
    dummy: StoredHash,
    verifications: AtomicU64,
    work: AtomicU64,
}

fn pepper(key: &[u8], password: &str) -> String {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(password.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A bcrypt salt from `random`.
fn salt(random: &Random) -> [u8; 16] {
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&random.bytes(16));
    salt
}

/// How many verifications of a hash of `stored_cost` take as long as one at `current_cost`:
/// each cost step doubles the work. At least one; hashes at or above the current cost run once.
fn runs_to_match(stored_cost: u32, current_cost: u32) -> u64 {
    1u64 << current_cost.saturating_sub(stored_cost).min(20)
}

/// The cost a bcrypt string was made with.
pub fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

impl PasswordHasher {
    /// A hasher with the realm's cost and salts from `random`; computes the dummy hash (one
    /// bcrypt run) at start.
    pub fn new(
        peppers: Vec<Pepper>,
        cost: u32,
        size: PoolSize,
        random: Random,
    ) -> Result<Arc<Self>, AuthError> {
        let current = peppers
            .first()
            .ok_or_else(|| AuthError::Internal("no pepper".into()))?;
        let dummy_input = pepper(
            &current.key,
            "portcullis dummy password for unknown accounts",
        );
        let dummy = bcrypt::hash_with_salt(dummy_input, cost, salt(&random))
            .map_err(|e| AuthError::Internal(e.to_string()))?
            .to_string();
        Ok(Arc::new(Self {
            random,
            dummy: StoredHash {
                hash: dummy,
                pepper_version: current.version.clone(),
            },
            peppers,
            cost,
            pool: Semaphore::new(size.permits.max(1)),
            in_flight: AtomicUsize::new(0),
            permits: size.permits.max(1),
            capacity: size.permits.max(1).saturating_add(size.queue),
            refused: AtomicU64::new(0),
            verifications: AtomicU64::new(0),
            work: AtomicU64::new(0),
        }))
    }

    /// Takes a place in the pool, or refuses with `Busy` when every run and queue place is
    /// taken. Callers reserve before changing any state (a lockout counter), so a refusal
    /// leaves nothing behind.
    pub fn reserve(&self) -> Result<Slot<'_>, AuthError> {
        let before = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(&self.in_flight);
        if before >= self.capacity {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(AuthError::Busy);
        }
        Ok(slot)
    }

    /// How many callers hold a place and how many of those wait, against the queue's bound.
    /// A refused caller holds a place for an instant, so the count is capped at the capacity.
    pub fn load(&self) -> HashingLoad {
        let in_flight = self.in_flight.load(Ordering::SeqCst).min(self.capacity);
        HashingLoad {
            in_flight,
            queue_depth: in_flight.saturating_sub(self.permits),
            queue_capacity: self.capacity.saturating_sub(self.permits),
        }
    }

    /// The pepper version new hashes are made with.
    pub fn current_pepper_version(&self) -> &str {
        &self.dummy.pepper_version
    }

    /// Callers refused because the pool and its queue were full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// bcrypt verifications run so far (known and unknown accounts alike).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// bcrypt work done by verifications so far, in rounds (`2^cost` per run).
    pub fn work(&self) -> u64 {
        self.work.load(Ordering::Relaxed)
    }

    /// Runs `work` on the blocking pool once a permit is free.
    async fn on_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self
            .pool
            .acquire()
            .await
            .map_err(|_| AuthError::Internal("hashing pool closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// Hashes a (normalised) password with the current pepper, in the place `_slot` holds.
    pub async fn hash(&self, _slot: Slot<'_>, password: &str) -> Result<StoredHash, AuthError> {
        let current = self
            .peppers
            .first()
            .ok_or_else(|| AuthError::Internal("no pepper".into()))?;
        let input = pepper(&current.key, password);
        let cost = self.cost;
        let salt = salt(&self.random);
        let hash = self
            .on_pool(move || bcrypt::hash_with_salt(input, cost, salt).map(|h| h.to_string()))
            .await?
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(StoredHash {
            hash,
            pepper_version: current.version.clone(),
        })
    }

    /// Verifies a password against `stored`, or against the dummy hash when there is no
    /// account, so both take one bcrypt run at the realm's cost; in the place `_slot` holds.
    pub async fn verify(
        &self,
        _slot: Slot<'_>,
        password: &str,
        stored: Option<&StoredHash>,
    ) -> Result<Verified, AuthError> {
        let target = stored.unwrap_or(&self.dummy);
        let key = self
            .peppers
            .iter()
            .find(|p| p.version == target.pepper_version);
        let Some(key) = key else {
            tracing::error!(pepper_version = %target.pepper_version, "password hash made with a pepper that is no longer configured");
            // Still spend the time, so the answer does not tell this case apart.
            let (input, hash) = (
                pepper(&self.dummy_key()?, password),
                self.dummy.hash.clone(),
            );
            self.verifications.fetch_add(1, Ordering::Relaxed);
            self.work
                .fetch_add(1u64 << self.cost.min(31), Ordering::Relaxed);
            let _ = self.on_pool(move || bcrypt::verify(input, &hash)).await?;
            return Ok(Verified {
                ok: false,
                needs_upgrade: false,
            });
        };
        let input = pepper(&key.key, password);
        let hash = target.hash.clone();
        let stored_cost = bcrypt_cost(&hash).unwrap_or(self.cost);
        let runs = runs_to_match(stored_cost, self.cost);
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.work
            .fetch_add(runs << stored_cost.min(31), Ordering::Relaxed);
        // A hash made before a cost raise verifies faster; repeating it makes the answer take
        // as long as for an unknown account (the dummy is at the current cost).
        let ok = self
            .on_pool(move || {
                let mut ok = false;
                for _ in 0..runs {
                    ok = bcrypt::verify(&input, &hash).unwrap_or(false);
                }
                ok
            })
            .await?;
        let current_version = self.peppers.first().map(|p| p.version.as_str());
        let needs_upgrade = ok
            && stored.is_some()
            && (bcrypt_cost(&target.hash).is_none_or(|c| c < self.cost)
                || current_version != Some(target.pepper_version.as_str()));
        Ok(Verified {
            ok: ok && stored.is_some(),
            needs_upgrade,
        })
    }

    fn dummy_key(&self) -> Result<Vec<u8>, AuthError> {
        self.peppers
            .first()
            .map(|p| p.key.clone())
            .ok_or_else(|| AuthError::Internal("no pepper".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(versions: &[&str], cost: u32) -> Arc<PasswordHasher> {
        use rand_chacha::rand_core::SeedableRng;
        let random = Random::new(rand_chacha::ChaCha20Rng::seed_from_u64(9));
        PasswordHasher::new(peppers(versions), cost, PoolSize::with_permits(2), random).unwrap()
    }

    fn peppers(versions: &[&str]) -> Vec<Pepper> {
        versions
            .iter()
            .map(|v| Pepper {
                version: (*v).into(),
                key: vec![7; 32],
            })
            .collect()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = hasher(&["v1"], 4);
        let stored = hasher
            .hash(hasher.reserve().unwrap(), "correct horse")
            .await
            .unwrap();
        assert!(stored.hash.starts_with("$2b$04$"));
        assert_eq!(
            hasher
                .verify(hasher.reserve().unwrap(), "correct horse", Some(&stored))
                .await
                .unwrap(),
            Verified {
                ok: true,
                needs_upgrade: false
            }
        );
        assert!(
            !hasher
                .verify(hasher.reserve().unwrap(), "correct horsf", Some(&stored))
                .await
                .unwrap()
                .ok
        );
    }

    #[tokio::test]
    async fn passwords_longer_than_72_bytes_still_differ() {
        let hasher = hasher(&["v1"], 4);
        let long = "x".repeat(100);
        let stored = hasher
            .hash(hasher.reserve().unwrap(), &format!("{long}A"))
            .await
            .unwrap();
        assert!(
            !hasher
                .verify(
                    hasher.reserve().unwrap(),
                    &format!("{long}B"),
                    Some(&stored)
                )
                .await
                .unwrap()
                .ok
        );
    }

    #[tokio::test]
    async fn unknown_accounts_cost_one_verification_and_never_match() {
        let hasher = hasher(&["v1"], 4);
        let before = hasher.verifications();
        let v = hasher
            .verify(
                hasher.reserve().unwrap(),
                "portcullis dummy password for unknown accounts",
                None,
            )
            .await
            .unwrap();
        assert!(!v.ok, "the dummy password must not log anyone in");
        assert_eq!(hasher.verifications(), before + 1);
    }

    #[tokio::test]
    async fn a_lower_cost_or_old_pepper_asks_for_an_upgrade() {
        let old = hasher(&["v1"], 4);
        let stored = old.hash(old.reserve().unwrap(), "pw").await.unwrap();
        let stronger = hasher(&["v1"], 5);
        assert!(
            stronger
                .verify(stronger.reserve().unwrap(), "pw", Some(&stored))
                .await
                .unwrap()
                .needs_upgrade
        );
        let rotated = hasher(&["v2", "v1"], 4);
        let v = rotated
            .verify(rotated.reserve().unwrap(), "pw", Some(&stored))
            .await
            .unwrap();
        assert!(v.ok && v.needs_upgrade);
    }

    #[tokio::test]
    async fn a_hash_made_at_a_lower_cost_costs_as_much_as_one_at_the_current_cost() {
        let old = hasher(&["v1"], 4);
        let stored = old.hash(old.reserve().unwrap(), "pw").await.unwrap();
        let raised = hasher(&["v1"], 6);
        let before = raised.work();
        assert!(
            !raised
                .verify(raised.reserve().unwrap(), "wrong", Some(&stored))
                .await
                .unwrap()
                .ok
        );
        assert_eq!(
            raised.work() - before,
            1 << 6,
            "as much work as one run at cost 6"
        );
        let before = raised.work();
        raised
            .verify(raised.reserve().unwrap(), "wrong", None)
            .await
            .unwrap();
        assert_eq!(
            raised.work() - before,
            1 << 6,
            "the dummy for unknown accounts"
        );
    }

    #[tokio::test]
    async fn past_the_queue_a_caller_is_refused_and_its_place_comes_back() {
        use rand_chacha::rand_core::SeedableRng;
        let random = Random::new(rand_chacha::ChaCha20Rng::seed_from_u64(9));
        let size = PoolSize {
            permits: 1,
            queue: 1,
        };
        let hasher = PasswordHasher::new(peppers(&["v1"]), 4, size, random).unwrap();
        let running = hasher.reserve().unwrap();
        let queued = hasher.reserve().unwrap();
        assert!(matches!(hasher.reserve(), Err(AuthError::Busy)));
        assert_eq!(hasher.refused(), 1);
        drop(queued);
        let again = hasher.reserve().unwrap();
        drop((running, again));
        assert!(
            hasher
                .verify(hasher.reserve().unwrap(), "pw", None)
                .await
                .is_ok()
        );
    }

    #[test]
    fn the_load_counts_places_beyond_the_runs_as_queued_and_ignores_refusals() {
        use rand_chacha::rand_core::SeedableRng;
        let random = Random::new(rand_chacha::ChaCha20Rng::seed_from_u64(9));
        let size = PoolSize {
            permits: 2,
            queue: 3,
        };
        let hasher = PasswordHasher::new(peppers(&["v1"]), 4, size, random).unwrap();
        let idle = hasher.load();
        assert_eq!(
            (idle.in_flight, idle.queue_depth, idle.queue_capacity),
            (0, 0, 3)
        );
        let held: Vec<_> = (0..5).map(|_| hasher.reserve().unwrap()).collect();
        assert!(hasher.reserve().is_err());
        let full = hasher.load();
        assert_eq!(
            (full.in_flight, full.queue_depth, full.queue_capacity),
            (5, 3, 3)
        );
        drop(held);
        assert_eq!(hasher.load().in_flight, 0);
    }

    #[tokio::test]
    async fn debug_never_prints_a_hash_or_a_pepper() {
        let hasher = hasher(&["v1"], 4);
        let stored = hasher.hash(hasher.reserve().unwrap(), "pw").await.unwrap();
        let printed = format!("{stored:?} {hasher:?}");
        assert!(!printed.contains("$2b$"), "{printed}");
        assert!(!printed.contains("[7, 7"), "{printed}");
    }

    #[test]
    fn the_cost_is_read_from_the_hash() {
        assert_eq!(bcrypt_cost("$2b$12$abcdefghijklmnopqrstuu"), Some(12));
        assert_eq!(bcrypt_cost("garbage"), None);
    }
}
