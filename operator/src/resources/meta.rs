//! Names, labels and owner references shared by every child of a realm.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "portcullis-operator";
/// `app.kubernetes.io/name` of every child.
pub const APP_NAME: &str = "portcullis";
/// `app.kubernetes.io/part-of` of every child.
pub const PART_OF: &str = "portcullis";
/// `app.kubernetes.io/managed-by` of every child; pruning selects on it.
pub const MANAGED_BY: &str = "portcullis-operator";

/// Label keys.
pub mod labels {
    /// `app.kubernetes.io/name`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/instance`: the realm name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/component`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// `app.kubernetes.io/managed-by`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// `app.kubernetes.io/part-of`.
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
}

/// Annotation keys written or read by the operator.
pub mod annotations {
    /// Checksum of the realm configuration on the pod template: a change rolls the pods.
    pub const CONFIG_CHECKSUM: &str = "portcullis.dev/config-checksum";
    /// Checksum of the generated and referenced secrets on the pod template.
    pub const SECRETS_CHECKSUM: &str = "portcullis.dev/secrets-checksum";
    /// On the keys Secret: creation time of each signing key, JSON `{kid: RFC 3339}`.
    pub const SIGNING_KEYS_CREATED: &str = "portcullis.dev/signing-keys-created";
    /// On the keys Secret: creation time of each Fernet key, JSON `{key id: RFC 3339}`.
    pub const FERNET_KEYS_CREATED: &str = "portcullis.dev/fernet-keys-created";
    /// On a generated TLS Secret: the serving certificate's notAfter (RFC 3339).
    pub const CERT_NOT_AFTER: &str = "portcullis.dev/not-after";
    /// On a RetentionPolicy: any new value starts a one-off Job.
    pub const RUN_NOW: &str = "portcullis.dev/run-now";
}

/// The controller owner reference children of `owner` carry: `controller` and
/// `blockOwnerDeletion` set, as Kubernetes' own controllers set them, so that a foreground
/// deletion of the owner waits until the garbage collector has removed its children. Where
/// the API server enforces OwnerReferencesPermissionEnforcement, setting `blockOwnerDeletion`
/// needs `update` on the owner's `finalizers` subresource (the chart grants it).
pub fn controller_reference<K>(owner: &K) -> Option<OwnerReference>
where
    K: kube::Resource<DynamicType = ()>,
{
    Some(OwnerReference {
        block_owner_deletion: Some(true),
        ..owner.controller_owner_ref(&())?
    })
}

/// The object a child belongs to: its name, namespace and (when it exists in a cluster) the
/// controller owner reference to put on children.
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    /// Realm name: `app.kubernetes.io/instance` and the prefix of every child name.
    pub realm: String,
    /// Namespace of the realm and its children.
    pub namespace: Option<String>,
    /// Controller reference; `None` when rendering files offline (no uid yet).
    pub reference: Option<OwnerReference>,
}

impl Owner {
    /// Labels of a child with the given component.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(labels::COMPONENT.to_owned(), component.to_owned());
        labels.insert(labels::MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
        labels.insert(labels::PART_OF.to_owned(), PART_OF.to_owned());
        labels
    }

    /// Labels that select every pod and child of this realm (stable: used in selectors).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::NAME.to_owned(), APP_NAME.to_owned()),
            (labels::INSTANCE.to_owned(), self.realm.clone()),
        ])
    }

    /// Selector labels narrowed to one component.
    pub fn component_selector(&self, component: &str) -> LabelSelector {
        let mut match_labels = self.selector_labels();
        match_labels.insert(labels::COMPONENT.to_owned(), component.to_owned());
        LabelSelector {
            match_labels: Some(match_labels),
            ..Default::default()
        }
    }

    /// Metadata of a child in the realm's namespace: name, labels and owner reference.
    pub fn meta(&self, name: impl Into<String>, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: self.namespace.clone(),
            labels: Some(self.labels(component)),
            owner_references: self.reference.clone().map(|r| vec![r]),
            ..Default::default()
        }
    }

    /// Metadata of a child in another namespace: owner references cannot cross namespaces,
    /// so the labels alone tie it to the realm.
    pub fn foreign_meta(
        &self,
        name: impl Into<String>,
        namespace: Option<String>,
        component: &str,
    ) -> ObjectMeta {
        let namespace = namespace.or_else(|| self.namespace.clone());
        let same_namespace = namespace == self.namespace;
        ObjectMeta {
            name: Some(name.into()),
            namespace,
            labels: Some(self.labels(component)),
            owner_references: self
                .reference
                .clone()
                .filter(|_| same_namespace)
                .map(|r| vec![r]),
            ..Default::default()
        }
    }

    /// Label selector of every child the operator created for this realm (for pruning).
    pub fn prune_selector(&self) -> String {
        format!(
            "{}={},{}={},{}={}",
            labels::NAME,
            APP_NAME,
            labels::INSTANCE,
            self.realm,
            labels::MANAGED_BY,
            MANAGED_BY
        )
    }
}

/// Child names, derived from the realm name.
pub mod names {
    /// Deployment, Service, ServiceAccount and PodDisruptionBudget.
    pub fn server(realm: &str) -> String {
        realm.to_owned()
    }
    /// The realm configuration ConfigMap.
    pub fn config(realm: &str) -> String {
        format!("{realm}-config")
    }
    /// The generated key material Secret.
    pub fn keys(realm: &str) -> String {
        format!("{realm}-keys")
    }
    /// The TLS Secret written by cert-manager or the operator.
    pub fn tls(realm: &str) -> String {
        format!("{realm}-tls")
    }
    /// The Grafana dashboard ConfigMap.
    pub fn dashboard(realm: &str) -> String {
        format!("{realm}-dashboard")
    }
}
