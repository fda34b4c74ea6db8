//! The `AuthClient` custom resource: an app team's OpenID Connect client, declared in the
//! app's own namespace. The operator admits it per the realm's `clientNamespaces`, writes its
//! credentials Secret next to it and carries it into the realm's configuration.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN};

/// An OIDC client id: what app teams configure in their OIDC library. It is also part of a
/// file name in the secrets dir (`client-secret-<clientId>`), so it is limited to characters
/// valid in a Secret key.
pub const CLIENT_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]*$";
/// A redirect URI as the schema accepts it; the settings layer checks the rest (RFC 6749 and
/// RFC 8252 rules).
const REDIRECT_URI_PATTERN: &str = "^[a-zA-Z][a-zA-Z0-9+.-]*:[^\\s#]+$";

/// An OpenID Connect client of a realm, in the namespace of the app that uses it.
///
/// The operator writes the client's credentials into a Secret next to it (owned by the
/// AuthClient), so no one can point the operator at somebody else's Secret.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "AuthClient",
    namespaced,
    derive = "PartialEq",
    status = "AuthClientStatus",
    shortname = "aclient",
    category = "portcullis",
    doc = "An app team's OpenID Connect client of an AuthRealm; its credentials Secret is written next to it.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.realmEndpoint"),
    printcolumn(name = "Client ID", type_ = "string", json_path = ".status.clientId", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 58").message("AuthClient names are at most 58 characters: the default Secret name <name>-oidc must stay a valid name")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type != 'Public' || !has(self.grantTypes) || !('client_credentials' in self.grantTypes)",
        "message": "a Public client cannot use the client_credentials grant"
    },
    {
        "rule": "(has(self.grantTypes) && !('authorization_code' in self.grantTypes)) || (has(self.redirectUris) && self.redirectUris.size() > 0)",
        "message": "the authorization_code grant needs at least one redirectUri",
        "fieldPath": ".redirectUris",
        "reason": "FieldValueRequired"
    }
]))]
pub struct AuthClientSpec {
    /// The realm this client belongs to. The realm admits it only when the client's namespace
    /// matches the realm's `clientNamespaces` (by default: the realm's own namespace only).
    pub realm_ref: RealmRef,
    /// The client id app teams configure in their OIDC library; unique per realm (the older
    /// client keeps an id that two claim). Defaults to `<namespace>-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = CLIENT_ID_PATTERN))]
    pub client_id: Option<String>,
    /// `Confidential` clients authenticate with a secret the operator generates; `Public` ones
    /// (SPAs, mobile apps) have none and must use PKCE.
    #[serde(rename = "type")]
    pub client_type: ClientType,
    /// Exact redirect URIs (no wildcards; compared byte for byte). `https`, `http` only on
    /// loopback hosts, or a reverse-domain private-use scheme for native apps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 20),
        inner(length(min = 1, max = 2048), regex(pattern = REDIRECT_URI_PATTERN))
    )]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 20),
        inner(length(min = 1, max = 2048), regex(pattern = REDIRECT_URI_PATTERN))
    )]
    pub post_logout_redirect_uris: Vec<String>,
    /// OAuth grants the client may use.
    #[serde(default = "default_grant_types")]
    #[schemars(length(min = 1, max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub grant_types: Vec<GrantType>,
    /// Scopes the client may request.
    #[serde(default = "default_scopes")]
    #[schemars(
        length(max = 50),
        inner(
            length(min = 1, max = 128),
            regex(pattern = "^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$")
        )
    )]
    pub scopes: Vec<String>,
    /// First-party clients skip the consent screen.
    #[serde(default)]
    pub first_party: bool,
    /// Name of the credentials Secret the operator writes in this namespace, owned by this
    /// AuthClient, with the keys `client_id`, `client_secret` (Confidential only), `issuer` and
    /// `discovery_url`. Defaults to `<name>-oidc`. The operator never adopts or overwrites a
    /// Secret it did not create for this client: a name already taken is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,
}

fn default_grant_types() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(String::from).to_vec()
}

/// The realm an AuthClient belongs to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RealmRef {
    /// Name of the AuthRealm.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// Namespace of the AuthRealm; defaults to the AuthClient's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
}

/// Client authentication type.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    /// Has a secret (server-side apps).
    Confidential,
    /// Has no secret (SPAs, native apps); PKCE S256 is required.
    Public,
}

/// OAuth 2.0 grant types.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// Authorization code with PKCE.
    AuthorizationCode,
    /// Refresh token rotation.
    RefreshToken,
    /// Machine-to-machine tokens for confidential clients.
    ClientCredentials,
}

/// Keys of the credentials Secret the operator writes for an AuthClient.
pub mod secret_keys {
    /// The client id.
    pub const CLIENT_ID: &str = "client_id";
    /// The client secret (Confidential clients only).
    pub const CLIENT_SECRET: &str = "client_secret";
    /// The realm's issuer URL.
    pub const ISSUER: &str = "issuer";
    /// The realm's OpenID Connect discovery document URL.
    pub const DISCOVERY_URL: &str = "discovery_url";
}

impl AuthClient {
    /// The effective client id: `spec.clientId`, or `<namespace>-<name>`.
    pub fn client_id(&self) -> String {
        self.spec.client_id.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                self.namespace().unwrap_or_default(),
                self.name_any()
            )
        })
    }

    /// The effective credentials Secret name: `spec.secretName`, or `<name>-oidc`.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret_name
            .clone()
            .unwrap_or_else(|| format!("{}-oidc", self.name_any()))
    }

    /// The namespace of the realm it names: `spec.realmRef.namespace`, or its own.
    pub fn realm_namespace(&self) -> Option<String> {
        self.spec
            .realm_ref
            .namespace
            .clone()
            .or_else(|| self.namespace())
    }

    /// Whether it names the realm `name` in `namespace`.
    pub fn targets(&self, name: &str, namespace: Option<&str>) -> bool {
        self.spec.realm_ref.name == name
            && match (self.realm_namespace(), namespace) {
                (Some(mine), Some(theirs)) => mine == theirs,
                // A standalone file without namespaces: the name decides.
                _ => true,
            }
    }
}

/// Observed state of an AuthClient.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthClientStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted (the realm exists and admits the client under its id) and Ready (the
    /// credentials Secret is written and the realm serves the client).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The effective client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The credentials Secret in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The realm's issuer URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_endpoint: Option<String>,
}

/// An admitted client as the auth server serves it: the AuthClient's spec with its effective
/// client id. Derived by [`crate::RealmSettings`] from the AuthClient documents of a realm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveClient {
    /// `metadata.name` of the AuthClient.
    pub name: String,
    /// `metadata.namespace` of the AuthClient, when set.
    pub namespace: Option<String>,
    /// The effective client id.
    pub client_id: String,
    /// Confidential or Public.
    pub client_type: ClientType,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Allowed grants.
    pub grant_types: Vec<GrantType>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// No consent screen.
    pub first_party: bool,
}

impl EffectiveClient {
    /// The effective client of an AuthClient.
    pub fn of(client: &AuthClient) -> EffectiveClient {
        let spec = &client.spec;
        EffectiveClient {
            name: client.name_any(),
            namespace: client.namespace(),
            client_id: client.client_id(),
            client_type: spec.client_type,
            redirect_uris: spec.redirect_uris.clone(),
            post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
            grant_types: spec.grant_types.clone(),
            scopes: spec.scopes.clone(),
            first_party: spec.first_party,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn client(yaml: &str) -> AuthClient {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn client_id_and_secret_name_default_from_the_metadata() {
        let c = client(
            "apiVersion: portcullis.dev/v1alpha1\nkind: AuthClient\nmetadata: {name: web, namespace: shop}\nspec: {realmRef: {name: demo, namespace: auth}, type: Confidential, redirectUris: [\"https://shop.example.com/cb\"]}\n",
        );
        assert_eq!(c.client_id(), "shop-web");
        assert_eq!(c.secret_name(), "web-oidc");
        assert!(c.targets("demo", Some("auth")));
        assert!(!c.targets("demo", Some("shop")));
        assert_eq!(c.spec.grant_types, default_grant_types());
    }

    #[test]
    fn the_realm_namespace_defaults_to_the_clients_own() {
        let c = client(
            "apiVersion: portcullis.dev/v1alpha1\nkind: AuthClient\nmetadata: {name: web, namespace: auth}\nspec: {realmRef: {name: demo}, clientId: shop-web, secretName: creds, type: Public, redirectUris: [\"https://a.example.com/cb\"]}\n",
        );
        assert_eq!(c.realm_namespace().as_deref(), Some("auth"));
        assert_eq!(
            (c.client_id().as_str(), c.secret_name().as_str()),
            ("shop-web", "creds")
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let result: Result<AuthClient, _> = serde_saphyr::from_str(
            "apiVersion: portcullis.dev/v1alpha1\nkind: AuthClient\nmetadata: {name: web}\nspec: {realmRef: {name: demo}, type: Public, secretTarget: {name: x}}\n",
        );
        assert!(result.is_err());
    }
}
