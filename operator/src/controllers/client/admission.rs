//! Admission (pure): which AuthClients a realm serves. The realm and the AuthClient
//! controllers both decide with this one function, so they never disagree.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use portcullis_crds::settings::check_client;
use portcullis_crds::{AuthClient, AuthRealm, EffectiveClient};

/// What a realm makes of one AuthClient that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Served under its client id.
    Admitted,
    /// The realm it names does not exist.
    RealmNotFound,
    /// Its namespace does not match the realm's `clientNamespaces`.
    NamespaceNotAdmitted,
    /// An older client of the realm has the same client id.
    ClientIdTaken {
        /// `namespace/name` of the client that keeps the id.
        by: String,
    },
    /// The spec passes the schema but cannot work (a redirect URI OAuth forbids, ...).
    Invalid(String),
}

impl Verdict {
    /// Stable reason for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Admitted => "Admitted",
            Self::RealmNotFound => "RealmNotFound",
            Self::NamespaceNotAdmitted => "NamespaceNotAdmitted",
            Self::ClientIdTaken { .. } => "ClientIdTaken",
            Self::Invalid(_) => "Invalid",
        }
    }

    /// A sentence for the condition message.
    pub fn message(&self, client: &AuthClient) -> String {
        let realm = format!(
            "{}/{}",
            client.realm_namespace().unwrap_or_default(),
            client.spec.realm_ref.name
        );
        match self {
            Self::Admitted => format!("admitted by AuthRealm {realm} as {}", client.client_id()),
            Self::RealmNotFound => format!("AuthRealm {realm} does not exist"),
            Self::NamespaceNotAdmitted => format!(
                "AuthRealm {realm} does not admit clients from namespace {:?} (its spec.clientNamespaces)",
                client.namespace().unwrap_or_default()
            ),
            Self::ClientIdTaken { by } => format!(
                "client id {:?} is already used in AuthRealm {realm} by AuthClient {by}",
                client.client_id()
            ),
            Self::Invalid(message) => message.clone(),
        }
    }
}

/// The label selector of `clientNamespaces` as a list-call `labelSelector`: the namespaces
/// it matches are those the API server lists with it. An empty selector matches every
/// namespace (an empty string).
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default().join(",");
        let key = &expression.key;
        terms.push(match expression.operator.as_str() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.clone(),
            // DoesNotExist; the API server refused any other operator when the realm was
            // written.
            _ => format!("!{key}"),
        });
    }
    terms.join(",")
}

/// The client's place in the realm's order: the oldest first, then by namespace and name, so
/// of two clients claiming one id the older keeps it whatever order they are listed in.
fn age_order(client: &AuthClient) -> (Option<k8s_openapi::jiff::Timestamp>, String, String) {
    (
        client.metadata.creation_timestamp.as_ref().map(|t| t.0),
        client.namespace().unwrap_or_default(),
        client.name_any(),
    )
}

/// Decides for every client in `clients` that names `realm` (others are left out), oldest
/// first. `admitted_namespaces` are the namespaces `clientNamespaces` matches (without
/// `clientNamespaces`: the realm's own). A client being deleted is left out.
pub fn decide(
    realm: &AuthRealm,
    clients: &[AuthClient],
    admitted_namespaces: &BTreeSet<String>,
) -> Vec<(AuthClient, Verdict)> {
    let name = realm.name_any();
    let namespace = realm.namespace();
    let mut candidates: Vec<&AuthClient> = clients
        .iter()
        .filter(|c| c.targets(&name, namespace.as_deref()))
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .collect();
    candidates.sort_by_key(|c| age_order(c));
    let mut taken: Vec<(String, String)> = Vec::new();
    candidates
        .into_iter()
        .map(|client| {
            let client_namespace = client.namespace().unwrap_or_default();
            let verdict = if !admitted_namespaces.contains(&client_namespace) {
                Verdict::NamespaceNotAdmitted
            } else {
                let mut errors = Vec::new();
                check_client(&EffectiveClient::of(client), &mut errors);
                let id = client.client_id();
                if !errors.is_empty() {
                    Verdict::Invalid(
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                } else if let Some((_, by)) = taken.iter().find(|(taken, _)| *taken == id) {
                    Verdict::ClientIdTaken { by: by.clone() }
                } else {
                    taken.push((id, format!("{client_namespace}/{}", client.name_any())));
                    Verdict::Admitted
                }
            };
            (client.clone(), verdict)
        })
        .collect()
}

/// The admitted clients of [`decide`].
pub fn admitted(decisions: &[(AuthClient, Verdict)]) -> Vec<AuthClient> {
    decisions
        .iter()
        .filter(|(_, verdict)| *verdict == Verdict::Admitted)
        .map(|(client, _)| client.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn realm() -> AuthRealm {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthRealm",
            "metadata": {"name": "demo", "namespace": "auth"},
            "spec": {"issuer": "https://a.example.com", "database": {"secretRef": {"name": "db"}}}
        }))
        .unwrap()
    }

    fn client(namespace: &str, name: &str, created: i64, spec: serde_json::Value) -> AuthClient {
        let mut spec = spec;
        spec["realmRef"] = serde_json::json!({"name": "demo", "namespace": "auth"});
        spec["type"] = serde_json::json!("Public");
        spec.as_object_mut()
            .unwrap()
            .entry("redirectUris")
            .or_insert(serde_json::json!(["https://a.example.com/cb"]));
        serde_json::from_value(serde_json::json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthClient",
            "metadata": {"name": name, "namespace": namespace,
                "creationTimestamp": format!("2027-01-01T00:00:{created:02}Z")},
            "spec": spec
        }))
        .unwrap()
    }

    fn reasons(decisions: &[(AuthClient, Verdict)]) -> Vec<(String, &'static str)> {
        decisions
            .iter()
            .map(|(c, v)| (c.name_any(), v.reason()))
            .collect()
    }

    #[test]
    fn the_older_client_keeps_a_contested_id_whatever_the_list_order() {
        let young = client(
            "auth",
            "a-young",
            9,
            serde_json::json!({"clientId": "shop"}),
        );
        let old = client("auth", "z-old", 1, serde_json::json!({"clientId": "shop"}));
        let namespaces = BTreeSet::from(["auth".to_owned()]);
        for list in [
            vec![young.clone(), old.clone()],
            vec![old.clone(), young.clone()],
        ] {
            let decisions = decide(&realm(), &list, &namespaces);
            assert_eq!(
                reasons(&decisions),
                [
                    ("z-old".into(), "Admitted"),
                    ("a-young".into(), "ClientIdTaken")
                ]
            );
            assert_eq!(
                decisions[1].1,
                Verdict::ClientIdTaken {
                    by: "auth/z-old".into()
                }
            );
        }
    }

    #[test]
    fn namespaces_outside_the_selector_and_invalid_specs_are_refused() {
        let clients = [
            client("auth", "own", 1, serde_json::json!({})),
            client("shop", "shop", 2, serde_json::json!({})),
            client("evil", "evil", 3, serde_json::json!({})),
            client(
                "auth",
                "bad",
                4,
                serde_json::json!({"redirectUris": ["http://evil.example.com/cb"]}),
            ),
        ];
        let namespaces = BTreeSet::from(["auth".to_owned(), "shop".to_owned()]);
        assert_eq!(
            reasons(&decide(&realm(), &clients, &namespaces)),
            [
                ("own".into(), "Admitted"),
                ("shop".into(), "Admitted"),
                ("evil".into(), "NamespaceNotAdmitted"),
                ("bad".into(), "Invalid")
            ]
        );
        assert_eq!(
            admitted(&decide(&realm(), &clients, &namespaces)).len(),
            2,
            "only admitted clients reach the realm"
        );
    }

    #[test]
    fn an_invalid_client_does_not_take_an_id_from_a_valid_one() {
        let bad = client(
            "auth",
            "bad",
            1,
            serde_json::json!({"clientId": "x", "redirectUris": ["http://evil.example.com/cb"]}),
        );
        let good = client("auth", "good", 2, serde_json::json!({"clientId": "x"}));
        let namespaces = BTreeSet::from(["auth".to_owned()]);
        assert_eq!(
            reasons(&decide(&realm(), &[bad, good], &namespaces)),
            [("bad".into(), "Invalid"), ("good".into(), "Admitted")]
        );
    }

    #[test]
    fn clients_of_other_realms_are_left_out() {
        let mut other = client("auth", "other", 1, serde_json::json!({}));
        other.spec.realm_ref.name = "else".into();
        let namespaces = BTreeSet::from(["auth".to_owned()]);
        assert!(decide(&realm(), &[other], &namespaces).is_empty());
    }

    #[test]
    fn selectors_become_list_selectors() {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("team".into(), "shop".into())])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: Some(vec!["prod".into(), "staging".into()]),
                },
                LabelSelectorRequirement {
                    key: "legacy".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["test".into()]),
                },
                LabelSelectorRequirement {
                    key: "owner".into(),
                    operator: "Exists".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            selector_string(&selector),
            "team=shop,env in (prod,staging),!legacy,tier notin (test),owner"
        );
        assert_eq!(selector_string(&LabelSelector::default()), "");
    }
}
