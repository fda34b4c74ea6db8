//! File names of the auth server's secrets dir (`--secrets-dir`), shared by the operator,
//! which writes them as the keys of the realm's `<realm>-keys` Secret and of the projected
//! volume, and the auth server, which reads them. API.md lists them.

/// JWK set with private keys; the first is the active signing key.
pub const SIGNING_KEYS: &str = "signing-keys.json";
/// Fernet keys, one per line; the first encrypts, all decrypt.
pub const FERNET_KEYS: &str = "fernet-keys";
/// Password pepper, `VERSION:BASE64` per line; the first is current.
pub const PEPPER: &str = "pepper";
/// Key of the audit trail's hash chain (an HMAC-SHA256 key), `VERSION:BASE64` per line like
/// [`PEPPER`], at least 32 bytes each; the first writes, all verify. The operator generates it;
/// the auth server does not require it yet.
pub const AUDIT_KEY: &str = "audit-key";
/// Key for signed cookies and CSRF tokens.
pub const COOKIE_KEY: &str = "cookie-key";
/// Bearer token of the admin API.
pub const ADMIN_TOKEN: &str = "admin-token";
/// `smtp://` or `smtps://` URL with credentials (optional).
pub const SMTP_URL: &str = "smtp-url";
/// Notification webhook URL (optional).
pub const WEBHOOK_URL: &str = "webhook-url";
/// Signing key of notification webhooks (optional).
pub const WEBHOOK_SECRET: &str = "webhook-secret";
/// CA certificates (PEM) that the realm's social providers are verified against instead of
/// the platform's roots (optional: a provider behind a private CA).
pub const SOCIAL_CA: &str = "social-ca.crt";
/// Prefix of the file holding a confidential client's secret.
pub const CLIENT_SECRET_PREFIX: &str = "client-secret-";

/// The file holding the secret of the confidential OIDC client `client_id`.
pub fn client_secret(client_id: &str) -> String {
    format!("{CLIENT_SECRET_PREFIX}{client_id}")
}

/// The file holding the OAuth client secret of the social login provider `name`.
pub fn social_client_secret(name: &str) -> String {
    format!("social-{name}-client-secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_key_is_a_file_of_its_own() {
        assert_eq!(AUDIT_KEY, "audit-key");
        assert!(![SIGNING_KEYS, FERNET_KEYS, PEPPER, COOKIE_KEY, ADMIN_TOKEN].contains(&AUDIT_KEY));
    }

    #[test]
    fn per_client_and_per_provider_names() {
        assert_eq!(client_secret("shop-web"), "client-secret-shop-web");
        assert_eq!(
            social_client_secret("github"),
            "social-github-client-secret"
        );
    }
}
