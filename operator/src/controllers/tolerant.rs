//! Watches that survive malformed objects: objects are listed and watched as dynamic objects
//! and parsed one by one, so one object that no longer matches the types (an old CRD
//! version, a hand-edited field) is logged and skipped instead of failing the whole list and
//! stopping the controller for every other object.

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// Converts one event of dynamic objects into typed ones; `None` drops an object that does
/// not parse.
pub fn typed_event<K>(event: Event<DynamicObject>) -> Option<Event<K>>
where
    K: Resource + DeserializeOwned,
{
    let parse = |object: DynamicObject| {
        let (namespace, name) = (object.namespace(), object.name_any());
        match object.try_parse::<K>() {
            Ok(typed) => Some(typed),
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
    watch(api, watcher::Config::default()).filter_map(|event| async move {
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
    fn a_malformed_object_is_skipped_not_fatal() {
        let bad = dynamic(json!({"issuer": 42}));
        assert!(typed_event::<AuthRealm>(Event::InitApply(bad)).is_none());
        assert!(matches!(
            typed_event::<AuthRealm>(Event::InitDone),
            Some(Event::InitDone)
        ));
    }
}
