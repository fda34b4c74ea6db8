//! Privacy: the retention run (`retention run`, `POST /admin/v1/retention/run`). Consent,
//! export and erasure are the domain's (`crate::auth::privacy`, over `portcullis-privacy`).

pub mod retention;
