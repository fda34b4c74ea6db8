//! Privacy: data retention (consent, export and erasure come in later versions).

pub mod retention;
