//! What the auth server refuses in a realm's settings before it starts: features this version
//! does not implement yet (a realm asking for them must not run without them) and proxy
//! settings that would trust every address.

use portcullis_crds::RealmSettings;

/// The features a realm asks for that this version does not have, each named by its field.
pub fn unimplemented_features(settings: &RealmSettings) -> Vec<String> {
    let spec = &settings.spec;
    let mut missing = Vec::new();
    if spec.tokens.signing_algorithm != portcullis_crds::realm::SigningAlgorithm::ES256 {
        missing.push(format!(
            "spec.tokens.signingAlgorithm {:?} (only ES256 is implemented)",
            spec.tokens.signing_algorithm
        ));
    }
    missing
}

/// Trusted proxy ranges that contain every address (`/0`): with them anyone could write the
/// client address into `X-Forwarded-For`.
pub fn trust_everyone(settings: &RealmSettings) -> Vec<String> {
    settings
        .trusted_proxies
        .iter()
        .filter(|cidr| cidr.prefix == 0)
        .map(ToString::to_string)
        .collect()
}

/// Everything wrong with `settings` for any command, as one message. (Client ids shaped like a
/// UUID are refused by the settings layer itself, `portcullis_crds::settings::check_client`.
/// Durations need no check
/// here: the settings layer caps each at what a realm needs, `portcullis_crds::duration::MAXIMA`,
/// far below what date arithmetic can hold.)
pub fn check(settings: &RealmSettings) -> Result<(), String> {
    let mut problems = Vec::new();
    let everyone = trust_everyone(settings);
    if !everyone.is_empty() {
        problems.push(format!(
            "trustedProxies {} would believe X-Forwarded-For from every address; list the proxies' own ranges",
            everyone.join(", ")
        ));
    }
    let issuer = &settings.spec.issuer;
    let has_path = issuer
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if !settings.clients.is_empty() && has_path {
        problems.push(format!(
            "issuer {issuer} has a path or a trailing slash; OpenID Connect clients find the provider at <issuer>/.well-known/openid-configuration, which this server serves at the root: use https://host[:port]"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_client(client_id: &str) -> RealmSettings {
        let yaml = format!(
            "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {{name: unit}}
spec:
  issuer: https://auth.example.com
  database: {{secretRef: {{name: db}}}}
  emailVerification: {{required: false}}
---
apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {{name: app}}
spec:
  realmRef: {{name: unit}}
  clientId: {client_id}
  type: Public
  redirectUris: [\"https://app.example.com/cb\"]
"
        );
        RealmSettings::from_manifests(&portcullis_crds::parse_manifests(&yaml).unwrap()).unwrap()
    }

    #[test]
    fn an_issuer_with_a_path_is_refused_once_the_realm_has_clients() {
        let mut settings = with_client("shop-web");
        for issuer in [
            "https://auth.example.com/",
            "https://auth.example.com/realm",
        ] {
            settings.spec.issuer = issuer.into();
            let error = check(&settings).unwrap_err();
            assert!(error.contains("has a path"), "{error}");
        }
        settings.clients.clear();
        assert!(check(&settings).is_ok(), "the realm's own API works there");
    }

    #[test]
    fn social_providers_are_implemented_and_rs256_is_not() {
        let mut settings = with_client("shop-web");
        settings.spec.social_providers.push(
            serde_json::from_value(serde_json::json!({
                "name": "github", "type": "GitHub", "clientId": "id",
                "clientSecretRef": {"name": "gh", "key": "secret"}
            }))
            .unwrap(),
        );
        assert!(unimplemented_features(&settings).is_empty());
        settings.spec.tokens.signing_algorithm = portcullis_crds::realm::SigningAlgorithm::RS256;
        let missing = unimplemented_features(&settings);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].contains("signingAlgorithm"), "{missing:?}");
    }

    #[test]
    fn no_client_is_an_unimplemented_feature_any_more() {
        let mut settings = with_client("shop-spa");
        assert!(unimplemented_features(&settings).is_empty());
        settings.clients[0].first_party = true;
        assert!(unimplemented_features(&settings).is_empty());
    }
}
