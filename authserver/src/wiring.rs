//! The one place that reads the wall clock and the operating system's randomness. Everything
//! else receives a [`Clock`] and a [`Random`], so decisions that depend on time or chance are
//! tested exactly; `authserver/clippy.toml` refuses these calls anywhere but here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use p256::elliptic_curve::rand_core::OsRng;

use crate::clock::Clock;
use crate::random::{Random, SigningRandom};

/// The system's wall clock.
pub fn system_clock() -> Clock {
    Clock::reading(time::OffsetDateTime::now_utc)
}

/// The operating system's cryptographically secure generator.
pub fn os_random() -> Random {
    Random::new(OsRng)
}

/// The operating system's generator as `ring` draws ECDSA nonces from it.
pub fn signing_random() -> SigningRandom {
    SigningRandom::new(ring::rand::SystemRandom::new())
}
