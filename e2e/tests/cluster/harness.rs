//! What every scenario needs: an admin client, server-side apply of YAML documents, the
//! CRDs, the operator chart's objects and a token of its ServiceAccount, the operator as a
//! subprocess behind a recording proxy, and polling with a deadline.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, ValidationDirective,
};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use portcullis_e2e::{binary, repo_root};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Field manager of everything the tests apply.
pub const MANAGER: &str = "portcullis-e2e";
/// Field manager of the operator (`operator/src/resources/meta.rs`).
pub const OPERATOR_MANAGER: &str = "portcullis-operator";
/// Namespace the operator chart is installed in.
pub const OPERATOR_NAMESPACE: &str = "portcullis-system";
/// The operator's leader-election Lease (the chart grants only this name).
pub const LEASE: &str = "portcullis-operator";

/// Polls `check` every half second until it returns `Ok`, and panics with its last error
/// when `timeout` has passed.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not reached within {timeout:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Every non-empty document of a multi-document YAML, as JSON.
pub fn documents(text: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).unwrap();
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// The documents of a file under the repository root.
pub fn read_documents(path: &str) -> Vec<Value> {
    documents(&std::fs::read_to_string(repo_root().join(path)).unwrap())
}

/// A chart rendered by Helm's engine (`scripts/render_chart.py`), for release `portcullis`.
pub fn render_chart(chart: &str, namespace: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .current_dir(repo_root())
        .args([
            "scripts/render_chart.py",
            &format!("charts/{chart}"),
            "--namespace",
            namespace,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render_chart.py {chart}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8_lossy(&out.stdout))
}

/// The API resource of `apiVersion` + `kind`.
pub fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// `status`, `reason` and `message` of condition `type_` in an object's status.
pub fn condition(object: &Value, type_: &str) -> Option<(String, String, String)> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (text("status"), text("reason"), text("message"))
        })
}

/// The admin connection to the cluster `KUBECONFIG` points at.
#[derive(Clone)]
pub struct Cluster {
    /// Admin client.
    pub client: Client,
    config: Config,
}

impl Cluster {
    /// Connects with the kubeconfig in `KUBECONFIG`.
    pub async fn connect() -> Cluster {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let path = std::env::var("KUBECONFIG").unwrap();
        let kubeconfig = Kubeconfig::read_from(&path).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        Cluster {
            client: Client::try_from(config.clone()).unwrap(),
            config,
        }
    }

    /// A client of the same API server without credentials: the proxy forwards the
    /// operator's own token.
    pub fn anonymous(&self) -> Client {
        let mut config = self.config.clone();
        config.auth_info = AuthInfo::default();
        config.read_timeout = None;
        Client::try_from(config).unwrap()
    }

    /// A client of the same API server authenticated with `token` (a ServiceAccount token
    /// from the TokenRequest API): what that account may do, and nothing more.
    pub fn client_with_token(&self, token: &str) -> Client {
        let mut config = self.config.clone();
        config.auth_info = AuthInfo {
            token: Some(token.to_owned().into()),
            ..AuthInfo::default()
        };
        Client::try_from(config).unwrap()
    }

    /// A token of the ServiceAccount `name` in `namespace`, from the TokenRequest API.
    pub async fn token(&self, namespace: &str, name: &str) -> String {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap()
            .status
            .unwrap()
            .token
    }

    /// The API of a manifest's kind, namespaced when the manifest names a namespace.
    pub fn api_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        let resource = resource(api_version, kind);
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    fn api_of(&self, manifest: &Value) -> Api<DynamicObject> {
        self.api_for(
            manifest["apiVersion"].as_str().unwrap(),
            manifest["kind"].as_str().unwrap(),
            manifest
                .pointer("/metadata/namespace")
                .and_then(Value::as_str),
        )
    }

    /// Server-side apply (strict field validation, forced) as `manager`.
    pub async fn apply_as(
        &self,
        manager: &str,
        manifest: &Value,
    ) -> Result<DynamicObject, kube::Error> {
        let name = manifest["metadata"]["name"].as_str().unwrap();
        let params = PatchParams {
            field_validation: Some(ValidationDirective::Strict),
            ..PatchParams::apply(manager).force()
        };
        self.api_of(manifest)
            .patch(name, &params, &Patch::Apply(manifest))
            .await
    }

    /// Server-side apply as the tests' field manager; panics when refused.
    pub async fn apply(&self, manifest: &Value) -> DynamicObject {
        self.apply_as(MANAGER, manifest).await.unwrap_or_else(|e| {
            panic!(
                "apply {} {}: {e}",
                manifest["kind"], manifest["metadata"]["name"]
            )
        })
    }

    /// The object, or `None` when it does not exist.
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.api_for(api_version, kind, namespace)
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// Objects of a kind in a namespace matching a label selector (`""`: all).
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        selector: &str,
    ) -> Vec<Value> {
        self.api_for(api_version, kind, Some(namespace))
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect()
    }

    /// Deletes an object (background propagation); one that is gone already is fine.
    pub async fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) {
        match self
            .api_for(api_version, kind, namespace)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("delete {kind} {name}: {e}"),
        }
    }

    /// Creates (or keeps) a namespace.
    pub async fn namespace(&self, name: &str) {
        self.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
            .await;
    }

    /// Deletes namespaces and waits until they are gone (the namespace controller empties
    /// them), so a scenario leaves nothing behind.
    pub async fn remove_namespaces(&self, names: &[&str]) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        for name in names {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => panic!("delete namespace {name}: {e}"),
            }
        }
        for name in names {
            eventually(
                &format!("namespace {name} deleted"),
                Duration::from_secs(120),
                || async {
                    match api.get_opt(name).await.map_err(|e| e.to_string())? {
                        None => Ok(()),
                        Some(ns) => Err(format!("{:?}", ns.status)),
                    }
                },
            )
            .await;
        }
    }

    /// Writes an Opaque Secret with string values.
    pub async fn secret(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let string_data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        self.apply(&json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "stringData": string_data}))
            .await;
    }

    /// Applies the generated CRDs (and the minimal third-party ones where asked) and waits
    /// until every one is Established.
    pub async fn install_crds(&self, third_party: bool) {
        let mut crds: Vec<Value> = Vec::new();
        for file in [
            "authrealm",
            "ratelimitpolicy",
            "retentionpolicy",
            "authclient",
        ] {
            crds.extend(read_documents(&format!("crds/yaml/{file}.yaml")));
        }
        if third_party {
            // A cluster that has the real CRDs (cert-manager, prometheus-operator) keeps them.
            for crd in documents(include_str!("third_party_crds.yaml")) {
                let name = crd["metadata"]["name"].as_str().unwrap();
                let existing = self
                    .get(
                        "apiextensions.k8s.io/v1",
                        "CustomResourceDefinition",
                        None,
                        name,
                    )
                    .await;
                if existing.is_none_or(|e| e["metadata"]["managedFields"][0]["manager"] == MANAGER)
                {
                    crds.push(crd);
                }
            }
        }
        for crd in &crds {
            self.apply(crd).await;
        }
        for crd in &crds {
            self.established(crd["metadata"]["name"].as_str().unwrap())
                .await;
        }
    }

    /// Waits until a CRD is Established.
    pub async fn established(&self, name: &str) {
        eventually(
            &format!("CRD {name} Established"),
            Duration::from_secs(60),
            || async {
                let crd = self
                    .get(
                        "apiextensions.k8s.io/v1",
                        "CustomResourceDefinition",
                        None,
                        name,
                    )
                    .await
                    .ok_or("missing")?;
                match condition(&crd, "Established") {
                    Some((s, _, _)) if s == "True" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }

    /// Installs the operator chart's objects (rendered by Helm's engine, default values) and
    /// returns a token of its ServiceAccount from the TokenRequest API.
    pub async fn install_operator_chart(&self) -> OperatorAccount {
        self.namespace(OPERATOR_NAMESPACE).await;
        let objects = render_chart("portcullis-operator", OPERATOR_NAMESPACE);
        for object in &objects {
            self.apply(object).await;
        }
        let service_account = objects
            .iter()
            .find(|o| o["kind"] == "ServiceAccount")
            .and_then(|o| o["metadata"]["name"].as_str())
            .unwrap()
            .to_owned();
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(3 * 3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = api
            .create_token_request(&service_account, &PostParams::default(), &request)
            .await
            .unwrap();
        let token = answer.status.unwrap().token;
        OperatorAccount {
            service_account,
            token,
        }
    }

    /// Creates a PostgreSQL database for a realm on the server `DATABASE_URL` points at and
    /// returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let admin = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL (scripts/test.sh starts a throwaway PostgreSQL)");
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&pool)
            .await
            .unwrap();
        let create = format!("CREATE DATABASE \"{name}\"");
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let (base, _) = admin.rsplit_once('/').unwrap();
        format!("{base}/{name}")
    }

    /// Names of the Events about an object (core and events.k8s.io both list them).
    pub async fn event_reasons(&self, namespace: &str, kind: &str, name: &str) -> Vec<String> {
        self.list("events.k8s.io/v1", "Event", namespace, "")
            .await
            .into_iter()
            .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The operator's ServiceAccount and a token of it.
#[derive(Clone, Debug)]
pub struct OperatorAccount {
    /// ServiceAccount name (in [`OPERATOR_NAMESPACE`]).
    pub service_account: String,
    /// A bearer token of it.
    pub token: String,
}

/// One request the proxy forwarded.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Status of the answer (0: none, the request was held).
    pub status: u16,
    /// When it arrived, since the proxy started.
    pub at: Duration,
}

impl Recorded {
    /// Whether the request changes something (everything but GET).
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }

    /// Whether it is leader election (the Lease), which renews on its own schedule.
    pub fn is_lease(&self) -> bool {
        self.path.contains("/leases")
    }
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}s {} {} -> {}",
            self.at.as_secs_f64(),
            self.method,
            self.path,
            self.status
        )
    }
}

struct Hold {
    method: String,
    path_suffix: String,
    reached: Arc<Notify>,
}

struct ProxyState {
    upstream: Client,
    started: Instant,
    log: Mutex<Vec<Recorded>>,
    hold: Mutex<Option<Hold>>,
}

/// A plain-HTTP proxy in front of the API server that records every request of the operator
/// (method, path, answer) and can hold one request forever, to stop the operator in the
/// middle of a reconcile. The operator's own bearer token is forwarded as is, so the API
/// server authenticates and authorises the operator's ServiceAccount.
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

const HOP_HEADERS: [&str; 5] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
];

async fn forward(
    State(state): State<Arc<ProxyState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let index = {
        let mut log = state.log.lock().unwrap();
        log.push(Recorded {
            method: parts.method.to_string(),
            path: path.clone(),
            query,
            status: 0,
            at: state.started.elapsed(),
        });
        log.len() - 1
    };
    let held = {
        let mut hold = state.hold.lock().unwrap();
        match hold.as_ref() {
            Some(h) if h.method == parts.method.as_str() && path.ends_with(&h.path_suffix) => {
                hold.take().map(|h| h.reached)
            }
            _ => None,
        }
    };
    if let Some(reached) = held {
        reached.notify_one();
        // Never answered, never forwarded: the operator is stopped while it waits.
        std::future::pending::<()>().await;
    }
    let mut builder = http::Request::builder()
        .method(parts.method)
        .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    for (name, value) in &parts.headers {
        if !HOP_HEADERS.contains(&name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    let request = builder
        .body(kube::client::Body::from(bytes.to_vec()))
        .unwrap();
    match state.upstream.send(request).await {
        Ok(response) => {
            state.log.lock().unwrap()[index].status = response.status().as_u16();
            response.map(axum::body::Body::new)
        }
        Err(error) => {
            state.log.lock().unwrap()[index].status = 502;
            axum::response::Response::builder()
                .status(502)
                .body(axum::body::Body::from(error.to_string()))
                .unwrap()
        }
    }
}

impl Proxy {
    /// Starts the proxy on a free loopback port.
    pub async fn start(upstream: Client) -> Proxy {
        let state = Arc::new(ProxyState {
            upstream,
            started: Instant::now(),
            log: Mutex::default(),
            hold: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { url, state, task }
    }

    /// Time since the proxy started (the clock of [`Recorded::at`]).
    pub fn elapsed(&self) -> Duration {
        self.state.started.elapsed()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().unwrap().clone()
    }

    /// Holds the next request with this method whose path ends with `path_suffix`; the
    /// returned Notify fires when it arrives.
    pub fn hold(&self, method: &str, path_suffix: &str) -> Arc<Notify> {
        let reached = Arc::new(Notify::new());
        *self.state.hold.lock().unwrap() = Some(Hold {
            method: method.to_owned(),
            path_suffix: path_suffix.to_owned(),
            reached: reached.clone(),
        });
        reached
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The operator binary running as the chart's ServiceAccount, behind its own proxy.
pub struct Operator {
    child: Option<std::process::Child>,
    /// The proxy its requests go through.
    pub proxy: Proxy,
    /// Its identity in the leader election.
    pub identity: String,
    dir: tempfile::TempDir,
}

impl Operator {
    /// Starts `portcullis-operator run` (every namespace, as the chart's default) with a
    /// kubeconfig holding the ServiceAccount's token and pointing at a fresh proxy.
    pub async fn start(cluster: &Cluster, account: &OperatorAccount, identity: &str) -> Operator {
        let proxy = Proxy::start(cluster.anonymous()).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let config = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": proxy.url}}],
            "users": [{"name": account.service_account, "user": {"token": account.token}}],
            "contexts": [{"name": "operator", "context": {"cluster": "test", "user": account.service_account}}],
            "current-context": "operator",
        });
        std::fs::write(&kubeconfig, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let listen = {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        };
        let log = std::fs::File::create(dir.path().join("operator.log")).unwrap();
        let child = Command::new(binary("portcullis-operator").unwrap())
            .args([
                "run",
                "--listen",
                &listen.to_string(),
                "--lease-namespace",
                OPERATOR_NAMESPACE,
                "--lease-name",
                LEASE,
                "--identity",
                identity,
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info")
            .env_remove("PORTCULLIS_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Operator {
            child: Some(child),
            proxy,
            identity: identity.to_owned(),
            dir,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().unwrap().is_some())
    }

    /// SIGTERM, then waits for the exit (what Kubernetes does to a pod).
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill -TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the operator did not stop within 30 s of SIGTERM:\n{}",
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- last lines of operator {} ---\n{}",
                self.identity,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// One child the operator builds: apiVersion, kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Child {
    /// apiVersion.
    pub api_version: String,
    /// kind.
    pub kind: String,
    /// Namespace (the realm's when the manifest names none).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// The objects the operator builds for these manifests, as `portcullis-operator render`
/// prints them (Secrets included).
pub fn rendered_children(files: &[PathBuf]) -> Vec<Child> {
    let mut command = Command::new(binary("portcullis-operator").unwrap());
    command.arg("render").arg("--include-secrets");
    for file in files {
        command.arg("-f").arg(file);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|o| Child {
            api_version: o["apiVersion"].as_str().unwrap().to_owned(),
            kind: o["kind"].as_str().unwrap().to_owned(),
            namespace: o
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: o["metadata"]["name"].as_str().unwrap().to_owned(),
        })
        .collect()
}

/// A sample manifest moved into another namespace (and renamed references kept).
pub fn in_namespace(mut manifest: Value, namespace: &str) -> Value {
    manifest["metadata"]["namespace"] = namespace.into();
    manifest
}

/// The minimal realm sample in `namespace`, with its Secrets (the database one pointing at
/// `database_url`).
pub async fn minimal_realm(cluster: &Cluster, namespace: &str, database_url: &str) -> Value {
    cluster.namespace(namespace).await;
    cluster
        .secret(namespace, "demo-postgres", &[("url", database_url)])
        .await;
    cluster
        .secret(
            namespace,
            "demo-smtp",
            &[("url", "smtp://mailer:secret@127.0.0.1:2525")],
        )
        .await;
    let realm = in_namespace(
        read_documents("config/samples/realm-minimal.yaml").remove(0),
        namespace,
    );
    cluster.apply(&realm).await;
    realm
}

/// Waits until the realm reports `Ready=True` for its current generation and returns it.
pub async fn ready_realm(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Value {
    eventually(
        &format!("realm {namespace}/{name} Ready"),
        timeout,
        || async {
            let realm = cluster
                .get(
                    "portcullis.dev/v1alpha1",
                    "AuthRealm",
                    Some(namespace),
                    name,
                )
                .await
                .ok_or("no realm")?;
            let generation = realm["metadata"]["generation"].clone();
            match condition(&realm, "Ready") {
                Some((s, _, _))
                    if s == "True" && realm["status"]["observedGeneration"] == generation =>
                {
                    Ok(realm)
                }
                other => Err(format!("Ready {other:?}, status {}", realm["status"])),
            }
        },
    )
    .await
}

/// What moves when the operator writes an object: the operation and time of each of its
/// managedFields entries; for the custom resources, whose status only the operator writes,
/// also the resourceVersion. (Other controllers update children's status, which moves their
/// resourceVersion but not the operator's entries.)
pub fn operator_marks(object: &Value) -> Vec<String> {
    let custom = object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("portcullis.dev/"));
    let mut marks: Vec<String> = object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| custom || m["manager"] == OPERATOR_MANAGER)
        .map(|m| {
            format!(
                "{}:{}:{}:{}",
                m["manager"], m["operation"], m["subresource"], m["time"]
            )
        })
        .collect();
    if custom {
        marks.push(format!(
            "resourceVersion {}",
            object["metadata"]["resourceVersion"]
        ));
    }
    marks
}

/// The repository path of a sample.
pub fn sample(name: &str) -> PathBuf {
    repo_root().join("config/samples").join(name)
}

/// The holder of the operator's Lease, if any.
pub async fn lease_holder(cluster: &Cluster) -> Option<String> {
    cluster
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some(OPERATOR_NAMESPACE),
            LEASE,
        )
        .await
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .filter(|h| !h.is_empty())
}

/// Installs what every operator scenario needs (the CRDs, with the third-party ones the
/// operator writes, and the chart's objects) and removes a Lease an earlier scenario's
/// stopped operator may still hold, so the next one leads at once. Returns the
/// ServiceAccount token.
pub async fn operator_setup(cluster: &Cluster) -> OperatorAccount {
    cluster.install_crds(true).await;
    let account = cluster.install_operator_chart().await;
    cluster
        .delete(
            "coordination.k8s.io/v1",
            "Lease",
            Some(OPERATOR_NAMESPACE),
            LEASE,
        )
        .await;
    account
}

/// Starts one operator and waits until it leads.
pub async fn leading_operator(
    cluster: &Cluster,
    account: &OperatorAccount,
    identity: &str,
) -> Operator {
    let operator = Operator::start(cluster, account, identity).await;
    eventually(
        &format!("operator {identity} leads"),
        Duration::from_secs(60),
        || async {
            match lease_holder(cluster).await {
                Some(h) if h == identity => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
    operator
}

/// Requests the API server refused for lack of rights.
pub fn forbidden(proxy: &Proxy) -> Vec<String> {
    proxy
        .requests()
        .iter()
        .filter(|r| r.status == 401 || r.status == 403)
        .map(ToString::to_string)
        .collect()
}
