//! Portcullis social login, the relying-party side: the auth server sends a browser to a
//! GitHub, Google or any OpenID Connect provider and gets back who signed in.
//!
//! - [`ProviderSettings::from_crd`]: a realm's `socialProviders` entry with its client secret
//!   ([`read_client_secret`] reads it from the secrets dir).
//! - [`Provider::discover`]: the endpoints resolved once (OpenID Connect discovery and JWKS;
//!   GitHub's are fixed, [`GitHubEndpoints`] moves them for tests or GitHub Enterprise), every
//!   one HTTPS, all requests over the crate's own [`HttpClient`] (no redirects followed, no
//!   ambient proxy, timeouts).
//! - [`Provider::start`]: the authorization URL with `state`, a PKCE S256 challenge, the
//!   scopes and (OpenID Connect) `nonce`, and the [`Pending`] record the server keeps, bound
//!   to the browser; the randomness ([`Random`]) and the time are passed in.
//! - [`Provider::finish`]: the callback checked against the pending record ([`check_callback`]:
//!   provider, age, `state` in constant time, an upstream `error`, RFC 9207 `iss`), the code
//!   exchanged with the verifier (the `oauth2` crate over our client, [`http`]), and the
//!   identity read: for OpenID Connect from the ID token verified by `openidconnect`
//!   (signature by the JWKS, `iss`, `aud`, `exp`, `nonce`) and by us (`azp`, `iat`, `nbf`;
//!   Google's `hd`), for GitHub from `/user` and `/user/emails`. The identity names its
//!   issuer: links are keyed by (issuer, subject). The provider's tokens only from
//!   [`Provider::finish_with_tokens`].
//! - [`link_decision`]: what that identity may do (sign in, create an account, link to the
//!   account with its email, after that account's MFA) or why not; pure. Only a verified,
//!   plain ASCII email ([`UpstreamIdentity::link_email`]) links or creates.
//! - [`pg::PgLinkStore`]: the links in PostgreSQL, keyed by (issuer, subject), never moved
//!   between users; unlinking decided by [`may_unlink`] (another working way in must remain)
//!   under a row lock; the provider's tokens sealed at rest for the link's row.
//!
//! What the server must do around it: keep [`Pending`] bound to the browser and take it with
//! an atomic get-and-delete before [`Provider::finish`]; key links by (realm, issuer,
//! subject); look accounts up by [`UpstreamIdentity::link_email`] exactly; show a generic
//! message for upstream faults, never their text; never log a [`Callback`]'s raw query.
//!
//! Every failure is a [`SocialError`] with a stable [`SocialError::code`].

mod callback;
mod error;
mod github;
pub mod http;
mod identity;
mod link;
mod linked;
mod oidc;
mod pending;
pub mod pg;
mod provider;
mod settings;

pub use callback::{Callback, PENDING_CLOCK_SKEW, check_callback};
pub use error::{MAX_UPSTREAM_TEXT, SocialError, upstream_text};
pub use http::HttpClient;
pub use identity::{UpstreamIdentity, UpstreamTokens};
pub use link::{AccountWithEmail, LinkDecision, link_decision};
pub use linked::{Link, SignInMethods, may_unlink};
pub use pending::{PENDING_TTL, Pending, Random};
pub use provider::{Provider, Started};
pub use settings::{
    ClientSecret, GITHUB_DEFAULT_SCOPES, GOOGLE_ISSUER, GitHubEndpoints, OIDC_DEFAULT_SCOPES,
    Protocol, ProviderSettings, read_client_secret,
};
