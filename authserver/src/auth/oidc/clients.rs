//! The realm's OAuth clients (its admitted AuthClients) and client authentication at the token,
//! revocation and introspection endpoints (RFC 6749 §2.3). Secrets are 256-bit values the
//! operator generates, so only their SHA-256 is kept in memory and a presented secret is
//! compared by digest in constant time (bcrypt would cap client-credentials grants at a few per
//! second and adds nothing against a 256-bit secret). An unknown client costs the same digest
//! and comparison as a known one.

use std::collections::BTreeMap;

use portcullis_crds::client::{ClientType, EffectiveClient, GrantType};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::AuthError;

/// How a request presented its client (decoded by the HTTP layer).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `client_secret_basic` or `client_secret_post`: an id and a secret.
    Secret {
        /// The client id.
        client_id: String,
        /// The secret as presented.
        secret: String,
    },
    /// `none`: a public client names itself (RFC 6749 §3.2.1).
    Public {
        /// The client id.
        client_id: String,
    },
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredentials::Secret { client_id, .. } => {
                write!(f, "Secret({client_id}, <redacted>)")
            }
            ClientCredentials::Public { client_id } => write!(f, "Public({client_id})"),
        }
    }
}

/// A registered client.
#[derive(Clone)]
pub struct Client {
    /// What its AuthClient declares.
    pub spec: EffectiveClient,
    secret_sha256: Option<[u8; 32]>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.spec.client_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The client id.
    pub fn id(&self) -> &str {
        &self.spec.client_id
    }

    /// Whether it is a confidential client (it has a secret).
    pub fn is_confidential(&self) -> bool {
        self.spec.client_type == ClientType::Confidential
    }

    /// Whether it may use `grant`.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.spec.grant_types.contains(&grant)
    }

    /// Whether `uri` is one of its redirect URIs, byte for byte (no wildcards, no
    /// normalisation).
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.spec.redirect_uris.iter().any(|r| r == uri)
    }
}

/// The realm's clients by id.
#[derive(Clone, Debug, Default)]
pub struct ClientRegistry {
    clients: BTreeMap<String, Client>,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compared against when the client is unknown or has no secret, so those cost the same.
const NO_SECRET: [u8; 32] = [0; 32];

impl ClientRegistry {
    /// The registry of `clients`, with the secrets of the confidential ones by client id; a
    /// confidential client without a secret is refused (the caller names the missing file).
    pub fn new(
        clients: &[EffectiveClient],
        secrets: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let mut registry = BTreeMap::new();
        for spec in clients {
            let secret_sha256 = match spec.client_type {
                ClientType::Confidential => {
                    Some(digest(secrets.get(&spec.client_id).ok_or_else(|| {
                        format!("client {} has no secret", spec.client_id)
                    })?))
                }
                ClientType::Public => None,
            };
            registry.insert(
                spec.client_id.clone(),
                Client {
                    spec: spec.clone(),
                    secret_sha256,
                },
            );
        }
        Ok(Self { clients: registry })
    }

    /// A client by id.
    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.clients.get(client_id)
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Authenticates a client: a confidential client by its secret (SHA-256 digests compared
    /// in constant time), a public one by naming itself. A public client presenting a secret,
    /// a confidential one presenting none, an unknown client and a wrong secret are all
    /// `invalid_client`.
    pub fn authenticate(&self, credentials: &ClientCredentials) -> Result<&Client, AuthError> {
        match credentials {
            ClientCredentials::Secret { client_id, secret } => {
                let client = self.clients.get(client_id);
                let expected = client
                    .and_then(|c| c.secret_sha256.as_ref())
                    .unwrap_or(&NO_SECRET);
                let matches: bool = digest(secret).ct_eq(expected).into();
                match client {
                    Some(client) if matches && client.secret_sha256.is_some() => Ok(client),
                    _ => Err(AuthError::InvalidClient(
                        "client authentication failed (unknown client or wrong secret)",
                    )),
                }
            }
            ClientCredentials::Public { client_id } => match self.clients.get(client_id) {
                Some(client) if !client.is_confidential() => Ok(client),
                Some(_) => Err(AuthError::InvalidClient(
                    "a confidential client must authenticate with its secret",
                )),
                None => Err(AuthError::InvalidClient("unknown client")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, client_type: ClientType) -> EffectiveClient {
        EffectiveClient {
            name: id.into(),
            namespace: None,
            client_id: id.into(),
            client_type,
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_redirect_uris: Vec::new(),
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["openid".into()],
            first_party: false,
        }
    }

    fn registry() -> ClientRegistry {
        let secrets = [("web".to_owned(), "s3cret".to_owned())].into();
        ClientRegistry::new(
            &[
                spec("web", ClientType::Confidential),
                spec("spa", ClientType::Public),
            ],
            &secrets,
        )
        .unwrap()
    }

    fn secret(id: &str, secret: &str) -> ClientCredentials {
        ClientCredentials::Secret {
            client_id: id.into(),
            secret: secret.into(),
        }
    }

    fn public(id: &str) -> ClientCredentials {
        ClientCredentials::Public {
            client_id: id.into(),
        }
    }

    #[test]
    fn a_confidential_client_authenticates_with_its_secret_only() {
        let r = registry();
        assert_eq!(
            r.authenticate(&secret("web", "s3cret")).unwrap().id(),
            "web"
        );
        for wrong in [
            secret("web", "s3cret "),
            secret("web", ""),
            public("web"),
            secret("nobody", "s3cret"),
        ] {
            assert!(
                matches!(r.authenticate(&wrong), Err(AuthError::InvalidClient(_))),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn a_public_client_names_itself_and_cannot_pretend_to_have_a_secret() {
        let r = registry();
        assert_eq!(r.authenticate(&public("spa")).unwrap().id(), "spa");
        assert!(r.authenticate(&public("nobody")).is_err());
        assert!(
            r.authenticate(&secret("spa", "")).is_err(),
            "no secret digest to match"
        );
        assert!(r.authenticate(&secret("spa", "anything")).is_err());
    }

    #[test]
    fn a_confidential_client_without_a_secret_is_refused_naming_it() {
        let error = ClientRegistry::new(&[spec("web", ClientType::Confidential)], &BTreeMap::new())
            .unwrap_err();
        assert_eq!(error, "client web has no secret");
    }

    #[test]
    fn redirect_uris_match_byte_for_byte() {
        let r = registry();
        let web = r.get("web").unwrap();
        assert!(web.has_redirect_uri("https://app.example.com/cb"));
        for near in [
            "https://app.example.com/cb/",
            "https://APP.example.com/cb",
            "https://app.example.com/cb?x=1",
            "http://app.example.com/cb",
            "https://app.example.com/c",
        ] {
            assert!(!web.has_redirect_uri(near), "{near}");
        }
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let printed = format!("{:?} {:?}", secret("web", "s3cret"), registry());
        assert!(!printed.contains("s3cret"), "{printed}");
    }
}
