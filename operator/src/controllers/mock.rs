//! A mocked API server (tower-test) that records every call a reconcile makes and answers
//! from a small in-memory fixture, so tests assert the exact call sequence.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The Content-Type header (empty when none).
    pub content_type: String,
    /// JSON body (Null when none).
    pub body: Value,
}

impl Call {
    /// `METHOD path`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What the fake API server holds.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Secrets by `namespace/name`.
    pub secrets: BTreeMap<String, Value>,
    /// Installed CRD names.
    pub crds: BTreeSet<String>,
    /// Objects returned by list calls, by plural resource name.
    pub lists: BTreeMap<String, Vec<Value>>,
    /// Objects the label-selector lists return (stale children), by plural resource name.
    pub labelled: BTreeMap<String, Vec<String>>,
    /// Objects returned by GET on a named object, by path.
    pub objects: BTreeMap<String, Value>,
    /// readyReplicas the Deployment reports on apply.
    pub ready_replicas: i64,
}

fn not_found() -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

fn answer(world: &World, call: &Call) -> (u16, Value) {
    let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let last = segments.last().copied().unwrap_or_default();
    match call.method.as_str() {
        "GET" if call.path.contains("/customresourcedefinitions/") => {
            if world.crds.contains(last) {
                (
                    200,
                    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                    "metadata": {"name": last},
                    "spec": {"group": "x", "names": {"kind": "X", "plural": "xs"}, "scope": "Namespaced", "versions": []}}),
                )
            } else {
                not_found()
            }
        }
        "GET" if world.lists.contains_key(last) => (
            200,
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": world.lists[last]}),
        ),
        "GET" if call.query.contains("labelSelector") => {
            let items: Vec<Value> = world
                .labelled
                .get(last)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|name| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": name}}))
                .collect();
            (
                200,
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        "GET" if segments.len() >= 2 && segments[segments.len() - 2] == "secrets" => {
            let namespace = segments[segments.len() - 3];
            world
                .secrets
                .get(&format!("{namespace}/{last}"))
                .cloned()
                .map_or_else(not_found, |s| (200, s))
        }
        "GET" => world
            .objects
            .get(&call.path)
            .cloned()
            .map_or_else(not_found, |o| (200, o)),
        "PATCH" if last == "status" => {
            let mut object = world
                .objects
                .get(call.path.trim_end_matches("/status"))
                .cloned()
                .unwrap_or(json!({}));
            object["status"] = call.body["status"].clone();
            (200, object)
        }
        "PATCH" if call.body.is_array() => {
            // A JSON patch (finalizer): answer with the object, patched.
            let mut object = world.objects.get(&call.path).cloned().unwrap_or(json!({}));
            let patch: json_patch_lite::Patch = call.body.clone();
            json_patch_lite::apply(&mut object, &patch);
            (200, object)
        }
        "PATCH" if !call.query.contains("force=true") && world.objects.contains_key(&call.path) => {
            // A merge patch of metadata: answer with the stored object.
            let mut object = world.objects[&call.path].clone();
            if let Some(annotations) = call.body.pointer("/metadata/annotations") {
                object["metadata"]["annotations"] = annotations.clone();
            }
            (200, object)
        }
        "PATCH" => {
            let mut body = call.body.clone();
            if body["kind"] == "Deployment" {
                body["status"] = json!({"readyReplicas": world.ready_replicas});
            }
            (200, body)
        }
        "POST" => (201, call.body.clone()),
        "PUT" => (200, call.body.clone()),
        "DELETE" => (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        ),
        _ => not_found(),
    }
}

/// The few JSON patch operations the finalizer helper sends.
mod json_patch_lite {
    use serde_json::Value;

    pub type Patch = Value;

    pub fn apply(object: &mut Value, patch: &Patch) {
        for op in patch.as_array().into_iter().flatten() {
            let path = op["path"].as_str().unwrap_or_default();
            match op["op"].as_str() {
                Some("add") => {
                    if let Some(parent) = path.strip_suffix("/-") {
                        if let Some(list) = object.pointer_mut(parent).and_then(Value::as_array_mut)
                        {
                            list.push(op["value"].clone());
                        }
                    } else if path == "/metadata/finalizers" {
                        object["metadata"]["finalizers"] = op["value"].clone();
                    }
                }
                Some("remove") => {
                    if let Some((parent, index)) = path.rsplit_once('/')
                        && let (Some(list), Ok(i)) = (
                            object.pointer_mut(parent).and_then(Value::as_array_mut),
                            index.parse::<usize>(),
                        )
                        && i < list.len()
                    {
                        list.remove(i);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A client talking to the fake world, and the log of calls it made.
pub struct Mock {
    /// The client.
    pub client: Client,
    /// Every call, in order.
    pub calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    /// Starts the fake API server.
    pub fn start(world: World) -> Mock {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let log = calls.clone();
        let task = tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().path().to_owned();
                let query = request.uri().query().unwrap_or_default().to_owned();
                let content_type = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let call = Call {
                    method,
                    path,
                    query,
                    content_type,
                    body,
                };
                let (status, answer) = answer(&world, &call);
                log.lock().unwrap().push(call);
                send.send_response(
                    Response::builder()
                        .status(status)
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        Mock {
            client: Client::new(service, "default"),
            calls,
            task,
        }
    }

    /// The calls as `METHOD path` lines.
    pub fn lines(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(Call::line).collect()
    }

    /// The recorded calls.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}
