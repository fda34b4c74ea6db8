//! `portcullis-operator run`: the three controllers behind leader election, plus the HTTP
//! endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use portcullis_crds::{AuthClient, AuthRealm, RateLimitPolicy, RetentionPolicy};
use tokio::sync::watch;

use super::http::{Health, serve};
use super::metrics::Metrics;
use super::realm::apply::prunable_kinds;
use super::realm::fetch::{installed_capabilities, referenced_secrets};
use super::{
    Context, ReconcileError, client as auth_client, failure_key, leader, rate_limit, realm,
    retention, tolerant,
};
use crate::resources::Capabilities;
use crate::resources::meta::{MANAGED_BY, labels};
use crate::resources::retention::RETENTION;

/// Options of `run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Watch one namespace; all when `None`.
    pub namespace: Option<String>,
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub listen: SocketAddr,
    /// Lease name.
    pub lease_name: String,
    /// Lease namespace.
    pub lease_namespace: String,
    /// This replica's identity.
    pub identity: String,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let key = failure_key(object.as_ref());
    tracing::warn!(%error, reason = error.reason(), object = %key, "reconcile failed; retrying");
    ctx.failed(key)
}

fn target<K: ResourceExt>(policy: &K, name: &str) -> Option<ObjectRef<AuthRealm>> {
    Some(ObjectRef::new(name).within(&policy.namespace()?))
}

/// Runs until a signal, or until leadership is lost (the process then exits so a fresh
/// replica can stand by; the Deployment restarts it).
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let mut config = kube::Config::infer().await?;
    // The API server names the field manager of a write without one (status and finalizer
    // patches, Events, the Lease) after the User-Agent: the operator's own name, as for its
    // server-side applies, instead of "unknown".
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("portcullis-operator/", env!("CARGO_PKG_VERSION"))),
    ));
    let client = Client::try_from(config)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health {
        ready: Default::default(),
        metrics: metrics.clone(),
    });
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    tokio::spawn(serve(listener, health.clone()));

    client.apiserver_version().await?;
    health.ready.store(true, Ordering::Relaxed);

    let (leading_tx, mut leading) = watch::channel(false);
    let election = tokio::spawn(leader::elect(
        client.clone(),
        options.lease_namespace.clone(),
        options.lease_name.clone(),
        options.identity.clone(),
        leading_tx,
    ));
    tracing::info!(identity = %options.identity, "waiting for leadership");
    leading.wait_for(|leads| *leads).await?;
    tracing::info!("leading: starting controllers");

    let ctx = Arc::new(Context::new(client.clone(), metrics).within(options.namespace.clone()));
    let capabilities = installed_capabilities(&client).await?;
    tracing::info!(
        cert_manager = capabilities.cert_manager,
        prometheus_operator = capabilities.prometheus_operator,
        "third-party kinds watched"
    );
    let controllers = controllers(&client, ctx, options.namespace.as_deref(), capabilities);

    let lost = async move {
        let _ = leading.wait_for(|leads| !*leads).await;
    };
    tokio::select! {
        () = controllers => {
            // A graceful stop (SIGTERM): give the Lease up so a standby leads at once.
            election.abort();
            let leases = Api::namespaced(client.clone(), &options.lease_namespace);
            if let Err(error) = leader::release(&leases, &options.lease_name, &options.identity).await {
                tracing::warn!(%error, "cannot release the Lease; it expires on its own");
            }
            tracing::info!("controllers stopped, Lease released");
            Ok(())
        }
        () = lost => anyhow::bail!("leadership lost; exiting so that only the leader writes"),
    }
}

/// The realm a child belongs to, from its `app.kubernetes.io/instance` label (children of
/// a RetentionPolicy, like its CronJob, carry the realm's labels too).
fn realm_of<K: Resource>(child: &K) -> Option<ObjectRef<AuthRealm>> {
    let meta = child.meta();
    let realm = meta.labels.as_ref()?.get(labels::INSTANCE)?;
    Some(ObjectRef::new(realm).within(meta.namespace.as_deref()?))
}

/// The three controllers (and every watch they need) as one future that ends when they all
/// stop (on a signal). Every kind the realm controller prunes is watched (metadata only, by
/// the operator's label), so a child deleted or changed by someone else is put back at once
/// rather than at the next resync; third-party kinds only when their CRDs are installed
/// (`capabilities`). Separate from [`run`] so the unit tests can list the API calls the
/// watches make against a mocked API server.
pub fn controllers(
    client: &Client,
    ctx: Arc<Context>,
    namespace: Option<&str>,
    capabilities: Capabilities,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let ns = namespace;
    let owned_selector = format!("{}={MANAGED_BY}", labels::MANAGED_BY);

    let (realm_cache, realm_changes) = tolerant::cached::<AuthRealm>(client, ns);
    let mut realms = Controller::for_stream(realm_changes, realm_cache);
    let store = realms.store();
    // Children and Secrets are watched as metadata only: the operator never caches their
    // contents (a Secret's data stays in the API server), it only learns that they changed.
    for resource in prunable_kinds(capabilities) {
        if resource.kind == "Secret" {
            continue; // every Secret is watched below
        }
        let api: Api<PartialObjectMeta<DynamicObject>> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let changes = watcher::watcher(api, watcher::Config::default().labels(&owned_selector))
            .default_backoff()
            .touched_objects();
        realms = realms.watches_stream_with(
            changes,
            |child: PartialObjectMeta<DynamicObject>| realm_of(&child),
            resource,
        );
    }
    // A server pod that stops says why in its termination message (KeysMismatch).
    realms = realms.watches_stream(
        watcher::watcher(
            api::<PartialObjectMeta<Pod>>(client, ns),
            watcher::Config::default().labels(&format!(
                "{owned_selector},{}={}",
                labels::COMPONENT,
                crate::resources::workload::SERVER
            )),
        )
        .default_backoff()
        .touched_objects(),
        |pod: PartialObjectMeta<Pod>| realm_of(&pod),
    );
    let realm_controller = realms
        .watches_stream(tolerant::objects::<RateLimitPolicy>(client, ns), |p| {
            target(&p, &p.spec.target_ref.name)
        })
        .watches_stream(tolerant::objects::<RetentionPolicy>(client, ns), |p| {
            target(&p, &p.spec.target_ref.name)
        })
        .watches_stream(tolerant::objects::<AuthClient>(client, ns), |c| {
            Some(ObjectRef::new(&c.spec.realm_ref.name).within(&c.realm_namespace()?))
        })
        .watches_stream(
            watcher::watcher(
                api::<PartialObjectMeta<Secret>>(client, ns),
                watcher::Config::default(),
            )
            .default_backoff()
            .touched_objects(),
            move |secret: PartialObjectMeta<Secret>| {
                // A referenced Secret, or one the operator wrote for a realm, changed:
                // reconcile the realms it belongs to.
                let namespace = secret.namespace();
                let name = secret.name_any();
                let owned = secret
                    .labels()
                    .get(labels::MANAGED_BY)
                    .is_some_and(|m| m == MANAGED_BY);
                let mut realms: Vec<ObjectRef<AuthRealm>> = store
                    .state()
                    .into_iter()
                    .filter(|r| r.namespace() == namespace)
                    .filter(|r| referenced_secrets(r).iter().any(|(s, _)| *s == name))
                    .map(|r| ObjectRef::from_obj(&*r))
                    .collect();
                if owned {
                    realms.extend(realm_of(&secret));
                }
                realms
            },
        )
        .shutdown_on_signal()
        .run(realm::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    let (cache, changes) = tolerant::cached::<RateLimitPolicy>(client, ns);
    let rate_limit_controller = Controller::for_stream(changes, cache)
        .shutdown_on_signal()
        .run(rate_limit::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    let (cache, changes) = tolerant::cached::<RetentionPolicy>(client, ns);
    let retention = Controller::for_stream(changes, cache);
    let policies = retention.store();
    // A retention Job that starts or ends reports a run: reconcile the realm's policies at
    // once (the Jobs of scheduled runs belong to the CronJob, so the realm label maps them).
    let retention_jobs = format!(
        "{}={MANAGED_BY},{}={RETENTION}",
        labels::MANAGED_BY,
        labels::COMPONENT
    );
    let retention_controller = retention
        .watches_stream(
            watcher::watcher(
                api::<PartialObjectMeta<Job>>(client, ns),
                watcher::Config::default().labels(&retention_jobs),
            )
            .default_backoff()
            .touched_objects(),
            move |job: PartialObjectMeta<Job>| {
                let realm = realm_of(&job);
                policies
                    .state()
                    .into_iter()
                    .filter(|p| {
                        realm.as_ref().is_some_and(|r| {
                            r.name == p.spec.target_ref.name && r.namespace == p.namespace()
                        })
                    })
                    .map(|p| ObjectRef::from_obj(&*p))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(retention::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});

    // AuthClients: a change of their realm, of another client of the same realm (an id
    // handed over), of the realm's keys Secret (a client secret generated) or of their own
    // credentials Secret reconciles them.
    let (cache, changes) = tolerant::cached::<AuthClient>(client, ns);
    let clients = Controller::for_stream(changes, cache);
    let of_realm = {
        let store = clients.store();
        move |name: &str, namespace: Option<String>| {
            store
                .state()
                .into_iter()
                .filter(|c| c.targets(name, namespace.as_deref()))
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        }
    };
    let (by_realm, by_client, by_secret) = (of_realm.clone(), of_realm.clone(), of_realm);
    let client_controller = clients
        .watches_stream(tolerant::objects::<AuthRealm>(client, ns), move |r| {
            by_realm(&r.name_any(), r.namespace())
        })
        .watches_stream(tolerant::objects::<AuthClient>(client, ns), move |c| {
            by_client(&c.spec.realm_ref.name, c.realm_namespace())
        })
        .watches_stream(
            watcher::watcher(
                api::<PartialObjectMeta<Secret>>(client, ns),
                watcher::Config::default().labels(&owned_selector),
            )
            .default_backoff()
            .touched_objects(),
            move |secret: PartialObjectMeta<Secret>| {
                let labels = secret.labels();
                let instance = labels.get(labels::INSTANCE).cloned().unwrap_or_default();
                let namespace = secret.namespace();
                match labels.get(labels::NAME).map(String::as_str) {
                    Some(auth_client::build::APP_NAME) => {
                        vec![ObjectRef::new(&instance).within(&namespace.unwrap_or_default())]
                    }
                    _ if labels.get(labels::COMPONENT).map(String::as_str) == Some("keys") => {
                        by_secret(&instance, namespace)
                    }
                    _ => Vec::new(),
                }
            },
        )
        .shutdown_on_signal()
        .run(auth_client::reconcile, error_policy, ctx)
        .for_each(|_| async {});

    async move {
        tokio::join!(
            realm_controller,
            rate_limit_controller,
            retention_controller,
            client_controller
        );
    }
}
