//! Randomness, passed in like the clock: session ids, tokens, user and family ids and keys all
//! come from the `Random` a caller was given. The OS generator is wired in one place
//! (`crate::wiring`); tests may pass a seeded one.

use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::rand_core::{CryptoRng, CryptoRngCore, RngCore};
use uuid::Uuid;

/// The generator ECDSA signatures draw their nonces from: `ring`'s system generator (its
/// `SecureRandom` is sealed, so it cannot be seeded). Made only in `crate::wiring`.
#[derive(Clone, Debug)]
pub struct SigningRandom(ring::rand::SystemRandom);

impl SigningRandom {
    /// Wraps the system generator (see `crate::wiring::signing_random`).
    pub(crate) fn new(system: ring::rand::SystemRandom) -> Self {
        Self(system)
    }

    /// The generator, as `ring` takes it.
    pub(crate) fn system(&self) -> &ring::rand::SystemRandom {
        &self.0
    }
}

/// A cryptographically secure random generator, shared.
#[derive(Clone)]
pub struct Random(Arc<Mutex<Box<dyn CryptoRngCore + Send>>>);

impl std::fmt::Debug for Random {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Random")
    }
}

/// The generator, lent to a caller; `Sized`, so it suits APIs taking
/// `&mut impl CryptoRngCore` (key generation).
pub struct RngHandle<'a>(&'a mut (dyn CryptoRngCore + Send));

impl RngCore for RngHandle<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), p256::elliptic_curve::rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl CryptoRng for RngHandle<'_> {}

impl Random {
    /// Randomness from `rng`.
    pub fn new(rng: impl CryptoRngCore + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(rng))))
    }

    /// Runs `f` with the generator.
    pub fn with<T>(&self, f: impl FnOnce(&mut RngHandle<'_>) -> T) -> T {
        // A panic while filling bytes leaves nothing half-done worth refusing for.
        let mut rng = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut RngHandle(rng.as_mut()))
    }

    /// `n` random bytes.
    pub fn bytes(&self, n: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; n];
        self.with(|rng| rng.fill_bytes(&mut bytes));
        bytes
    }

    /// A token of `n` random bytes, base64url without padding.
    pub fn token(&self, n: usize) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes(n))
    }

    /// A random (version 4) UUID.
    pub fn uuid(&self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.with(|rng| rng.fill_bytes(&mut bytes));
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn the_same_seed_gives_the_same_values() {
        let a = Random::new(ChaCha20Rng::seed_from_u64(7));
        let b = Random::new(ChaCha20Rng::seed_from_u64(7));
        assert_eq!(a.token(32), b.token(32));
        assert_eq!(a.uuid(), b.uuid());
        assert_ne!(a.token(32), a.token(32));
    }

    #[test]
    fn tokens_are_base64url_of_their_byte_count_and_uuids_version_4() {
        let random = Random::new(ChaCha20Rng::seed_from_u64(1));
        let token = random.token(32);
        assert_eq!(token.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_eq!(random.uuid().get_version_num(), 4);
    }
}
