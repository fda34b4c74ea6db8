//! Rate limiting for Portcullis: GCRA decisions over up to eight buckets at once, all or
//! nothing, in one atomic step against Redis (shared by every replica) or a map in this process.
//!
//! - [`gcra`]: the algorithm, pure, time passed in as µs;
//! - [`keys`]: bucket keys (IP /64 and its /56, /48 hierarchy, identifier and mail-address
//!   digests, the Redis layout);
//! - [`headers`]: `RateLimit-Policy` and `RateLimit` field values;
//! - [`store`]: the Redis and in-memory backends behind one async [`Store::decide`].
//!
//! The caller owns the clock, the timeout around each decision and the failure mode.

pub mod gcra;
pub mod headers;
pub mod keys;
pub mod store;

pub use gcra::{Bucket, MAX_BUCKETS, Outcome};
pub use store::{Check, Error, Store};
