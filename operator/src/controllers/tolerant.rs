//! Watches that survive malformed objects: objects are listed and watched as dynamic objects
//! and parsed one by one, so one object that no longer matches the types (an old CRD
//! version, a hand-edited field) is logged and skipped instead of failing the whole list and
//! stopping the controller for every other object.

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::ReconcileError;

/// Converts one event of dynamic objects into typed ones; `None` drops an object that does
/// not parse.
///
/// Version skew is tolerated: an object carrying fields this version's types do not know (a
/// newer CRD that adds a defaulted field, a status written by a newer operator) is read
/// without them, with a warning naming them, rather than skipped; only a known field with a
/// wrong value makes an object unreadable.
pub fn typed_event<K>(event: Event<DynamicObject>) -> Option<Event<K>>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let parse = |object: DynamicObject| {
        let (namespace, name) = (object.namespace(), object.name_any());
        match read_tolerantly::<K>(&object) {
            Ok((typed, ignored)) => {
                if !ignored.is_empty() {
                    tracing::warn!(
                        ?namespace, %name, ?ignored,
                        "fields this operator version does not know were left out (a newer CRD or operator wrote them)"
                    );
                }
                Some(typed)
            }
            Err(error) => {
                tracing::warn!(?namespace, %name, %error, "skipping an object that does not parse");
                None
            }
        }
    };
    Some(match event {
        Event::Apply(object) => Event::Apply(parse(object)?),
        Event::InitApply(object) => Event::InitApply(parse(object)?),
        Event::Delete(object) => Event::Delete(parse(object)?),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    })
}

/// Reads `object` as a `K`; when that fails, again without the fields this version does not
/// know (returned by path, as `spec.newField`).
pub fn read_tolerantly<K>(object: &DynamicObject) -> Result<(K, Vec<String>), serde_json::Error>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let mut value = serde_json::to_value(object)?;
    if let Ok(typed) = K::deserialize(&value) {
        return Ok((typed, Vec::new()));
    }
    let ignored =
        portcullis_crds::prune_unknown_fields(&K::kind(&()), &mut value).unwrap_or_default();
    Ok((K::deserialize(&value)?, ignored))
}

/// The API of `K`'s resource as dynamic objects: what the operator reads of its own kinds goes
/// through [`read_tolerantly`], and what it writes answers with an object it does not parse.
pub fn dynamic_api<K>(client: &Client, namespace: Option<&str>) -> Api<DynamicObject>
where
    K: Resource<DynamicType = ()>,
{
    let resource = ApiResource::erase::<K>(&());
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// `K` named `name` in `namespace`, read tolerantly; `None` when there is none.
pub async fn get_opt<K>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, ReconcileError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let action = || format!("get {} {namespace}/{name}", K::kind(&()));
    let Some(object) = dynamic_api::<K>(client, Some(namespace))
        .get_opt(name)
        .await
        .map_err(ReconcileError::api(action()))?
    else {
        return Ok(None);
    };
    let (typed, ignored) = read_tolerantly::<K>(&object)
        .map_err(|e| ReconcileError::api(action())(kube::Error::SerdeError(e)))?;
    if !ignored.is_empty() {
        tracing::debug!(%name, ?ignored, "fields this operator version does not know were left out");
    }
    Ok(Some(typed))
}

/// Every `K` (in `namespace`, or everywhere), read tolerantly; one that cannot be read is
/// left out with a warning, as the watches do.
pub async fn list<K>(client: &Client, namespace: Option<&str>) -> Result<Vec<K>, ReconcileError>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let objects = dynamic_api::<K>(client, namespace)
        .list(&ListParams::default())
        .await
        .map_err(ReconcileError::api(format!("list {}", K::kind(&()))))?;
    Ok(objects
        .items
        .iter()
        .filter_map(|object| match read_tolerantly::<K>(object) {
            Ok((typed, _)) => Some(typed),
            Err(error) => {
                tracing::warn!(namespace = ?object.namespace(), name = %object.name_any(), %error, "skipping an object that does not parse");
                None
            }
        })
        .collect())
}

fn events<K>(
    client: &Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Send + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    watch(api, watcher::Config::default())
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                Ok(event) => typed_event::<K>(event).map(Ok),
                Err(error) => Some(Err(error)),
            }
        })
}

/// A cache of `K` and the stream of changed objects that feeds it (a controller's primary).
pub fn cached<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, events::<K>(client, namespace)).applied_objects();
    (reader, stream)
}

/// The stream of changed and deleted objects of `K` (a controller's secondary trigger: a
/// deleted policy or client changes its realm as much as a new one).
pub fn objects<K>(
    client: &Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static,
{
    events::<K>(client, namespace).touched_objects()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use portcullis_crds::AuthRealm;
    use serde_json::json;

    use super::*;

    fn dynamic(spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthRealm",
            "metadata": {"name": "demo", "namespace": "auth"}, "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn a_well_formed_object_passes_typed() {
        let good = dynamic(
            json!({"issuer": "https://a.example.com", "database": {"secretRef": {"name": "db"}}}),
        );
        let Some(Event::Apply(realm)) = typed_event::<AuthRealm>(Event::Apply(good)) else {
            panic!("expected the realm");
        };
        assert_eq!(realm.spec.issuer, "https://a.example.com");
    }

    #[test]
    fn an_object_with_fields_of_a_newer_version_is_read_without_them() {
        let mut newer = dynamic(json!({
            "issuer": "https://a.example.com",
            "database": {"secretRef": {"name": "db"}},
            "futureSetting": "on",
            "lockout": {"window": "10m", "futureLimit": 3}
        }));
        newer.data["status"] = json!({"endpoint": "https://a.example.com", "futureStatus": {}});
        let (realm, ignored) = read_tolerantly::<AuthRealm>(&newer).unwrap();
        assert_eq!(realm.spec.lockout.window.as_str(), "10m");
        assert_eq!(
            realm.status.unwrap().endpoint.as_deref(),
            Some("https://a.example.com")
        );
        assert_eq!(
            ignored,
            [
                "spec.futureSetting",
                "spec.lockout.futureLimit",
                "status.futureStatus"
            ]
        );
        assert!(matches!(
            typed_event::<AuthRealm>(Event::Apply(newer)),
            Some(Event::Apply(_))
        ));
    }

    #[test]
    fn a_field_a_newer_crd_adds_to_the_spec_is_left_out() {
        let newer = dynamic(json!({
            "issuer": "https://a.example.com",
            "database": {"secretRef": {"name": "db"}},
            "futureSetting": "on"
        }));
        let (_, ignored) = read_tolerantly::<AuthRealm>(&newer).unwrap();
        assert_eq!(ignored, ["spec.futureSetting"]);
    }

    #[test]
    fn a_malformed_object_is_skipped_not_fatal() {
        let bad = dynamic(json!({"issuer": 42}));
        assert!(typed_event::<AuthRealm>(Event::InitApply(bad)).is_none());
        assert!(matches!(
            typed_event::<AuthRealm>(Event::InitDone),
            Some(Event::InitDone)
        ));
    }
}
