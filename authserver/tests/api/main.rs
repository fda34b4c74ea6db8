//! Black-box tests of the auth server's HTTP API against real PostgreSQL and Redis. One test
//! binary (link time); each test gets a fresh database and its own Redis key prefix.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// test code: a panic is a failed assertion
// Black-box tests time the server from outside and name throwaway accounts: the real clock
// and OS randomness are the point here (the server itself gets them injected).
#![allow(clippy::disallowed_methods)]

mod admin;
mod audit;
mod breach;
mod http;
mod keys;
mod listeners;
mod login;
mod metrics;
mod mfa;
mod mfa_at_rest;
mod mfa_bypass;
mod mfa_pages;
mod migrations;
mod notifications;
mod oidc;
mod oidc_kv;
mod oidc_rp;
mod oidc_store;
mod pages;
mod pages_account;
mod pages_accounts;
mod privacy;
mod rate_limits;
mod registration;
mod retention;
mod schemathesis;
mod sessions;
mod social;
mod startup;
mod support;
mod tls;
mod tokens;
