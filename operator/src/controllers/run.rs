//! `portcullis-operator run`: the four controllers behind leader election, plus the HTTP
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
use super::shutdown::{DRAIN_DEADLINE, Shutdown, until};
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
/// replica can stand by; the Deployment restarts it). A stop signal at any moment ends it
/// promptly: before leading at once, while leading after the reconciles in flight finish (at
/// most [`DRAIN_DEADLINE`]) and the Lease is given up.
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    // First of all, so that a signal at any later moment is seen (a handler installed late
    // misses it, and one installed by a single controller leaves the others running).
    let shutdown = Shutdown::on_signals()?;
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

    let Some(version) = shutdown.unless(client.apiserver_version()).await else {
        tracing::info!("stopped before reaching the API server");
        return Ok(());
    };
    version?;
    health.ready.store(true, Ordering::Relaxed);

    let (leading_tx, mut leading) = watch::channel(false);
    let election = tokio::spawn(leader::elect(
        client.clone(),
        options.lease_namespace.clone(),
        options.lease_name.clone(),
        options.identity.clone(),
        leading_tx,
    ));
    let leases = Api::namespaced(client.clone(), &options.lease_namespace);
    let release =
        |election| give_up_lease(election, &leases, &options.lease_name, &options.identity);

    tracing::info!(identity = %options.identity, "waiting for leadership");
    let Some(led) = shutdown.unless(leading.wait_for(|leads| *leads)).await else {
        // A replica that never led holds no Lease; release checks the holder anyway, as the
        // election may have just taken it.
        release(election).await;
        return Ok(());
    };
    led?;
    tracing::info!("leading: starting controllers");

    let ctx = Arc::new(Context::new(client.clone(), metrics).within(options.namespace.clone()));
    let Some(capabilities) = shutdown.unless(installed_capabilities(&client)).await else {
        release(election).await;
        return Ok(());
    };
    let capabilities = capabilities?;
    tracing::info!(
        cert_manager = capabilities.cert_manager,
        prometheus_operator = capabilities.prometheus_operator,
        "third-party kinds watched"
    );
    let controllers = controllers(
        &client,
        ctx,
        options.namespace.as_deref(),
        capabilities,
        shutdown.clone(),
    );

    let lost = async move {
        let _ = leading.wait_for(|leads| !*leads).await;
    };
    tokio::select! {
        // They end only when a stop was requested, once the reconciles in flight finished.
        () = controllers => {}
        () = shutdown.drain_over() => {
            tracing::warn!(
                deadline = ?DRAIN_DEADLINE,
                "reconciles still running at the drain deadline; stopping them"
            );
        }
        () = lost => anyhow::bail!("leadership lost; exiting so that only the leader writes"),
    }
    release(election).await;
    Ok(())
}

/// Stops the election and gives the Lease up (a standby then leads at once), bounded: a stop
/// must not wait on an API server that does not answer; the Lease then expires on its own.
async fn give_up_lease(
    election: tokio::task::JoinHandle<()>,
    leases: &Api<k8s_openapi::api::coordination::v1::Lease>,
    name: &str,
    identity: &str,
) {
    election.abort();
    match tokio::time::timeout(RELEASE_TIMEOUT, leader::release(leases, name, identity)).await {
        Ok(Ok(())) => tracing::info!("controllers stopped, Lease released"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "controllers stopped; cannot release the Lease, it expires on its own")
        }
        Err(_) => tracing::warn!(
            "controllers stopped; the Lease release got no answer, it expires on its own"
        ),
    }
}

/// How long giving the Lease up may take at a stop.
const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A controller's trigger stream: ends (and is dropped) when a stop is requested, and its
/// watch errors are logged here and not passed on. Passed on, an error makes the controller
/// pause polling its triggers for a backoff that grows to minutes, during which it would not
/// see a stop request either; the watches back off on their own.
fn trigger<T, S>(
    shutdown: &Shutdown,
    controller: &'static str,
    stream: S,
) -> impl futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static
where
    S: futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    T: Send + 'static,
{
    until(
        shutdown,
        stream.filter(move |item| {
            if let Err(error) = item {
                tracing::warn!(controller, %error, "watch failed; retrying with backoff");
            }
            std::future::ready(item.is_ok())
        }),
    )
}

/// Logs what a controller's stream yields besides successful reconciles: a failed watch or
/// list (forbidden, a kind gone, the API server away) would otherwise pass silently while
/// the controller stops seeing changes. Failed reconciles are logged by [`error_policy`].
fn report<K, E>(
    kind: &str,
    result: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E, watcher::Error>>,
) where
    K: Resource,
    E: std::error::Error + 'static,
{
    match result {
        Ok(_) | Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
        // A change of something that names an object not (or no longer) there: no news.
        Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
            tracing::debug!(controller = kind, %object, "change for an object not in the cache")
        }
        // Stopped before its first list completed: its cache will never be ready.
        Err(kube::runtime::controller::Error::RunnerError(
            kube::runtime::controller::RunnerError::Readiness(_),
        )) => tracing::info!(controller = kind, "stopped before its cache was filled"),
        Err(error) => {
            tracing::warn!(controller = kind, %error, "watch failed; retrying with backoff")
        }
    }
}

/// The policies in `store` that target the realm `name` in `namespace`.
fn policies_of<K>(
    store: &kube::runtime::reflector::Store<K>,
    name: &str,
    namespace: Option<String>,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + PolicyTarget + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|p| p.target() == name && p.namespace() == namespace)
        .map(|p| ObjectRef::from_obj(&*p))
        .collect()
}

/// The realm a policy names.
trait PolicyTarget {
    fn target(&self) -> &str;
}

impl PolicyTarget for RateLimitPolicy {
    fn target(&self) -> &str {
        &self.spec.target_ref.name
    }
}

impl PolicyTarget for RetentionPolicy {
    fn target(&self) -> &str {
        &self.spec.target_ref.name
    }
}

/// The realm a child belongs to, from its `app.kubernetes.io/instance` label (children of
/// a RetentionPolicy, like its CronJob, carry the realm's labels too).
fn realm_of<K: Resource>(child: &K) -> Option<ObjectRef<AuthRealm>> {
    let meta = child.meta();
    let realm = meta.labels.as_ref()?.get(labels::INSTANCE)?;
    Some(ObjectRef::new(realm).within(meta.namespace.as_deref()?))
}

/// The four controllers (and every watch they need) as one future that ends when they all
/// stop: once `shutdown` is requested every trigger stream ends and is dropped ([`until`]),
/// and each controller finishes its reconciles in flight, whether or not its cache was ever
/// filled. Every kind the realm controller prunes is watched (metadata only, by
/// the operator's label), so a child deleted or changed by someone else is put back at once
/// rather than at the next resync; third-party kinds only when their CRDs are installed
/// (`capabilities`). Separate from [`run`] so the unit tests can list the API calls the
/// watches make against a mocked API server.
pub fn controllers(
    client: &Client,
    ctx: Arc<Context>,
    namespace: Option<&str>,
    capabilities: Capabilities,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let ns = namespace;
    let owned_selector = format!("{}={MANAGED_BY}", labels::MANAGED_BY);

    let (realm_cache, realm_changes) = tolerant::cached::<AuthRealm>(client, ns);
    let mut realms =
        Controller::for_stream(trigger(&shutdown, "AuthRealm", realm_changes), realm_cache);
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
            trigger(&shutdown, "AuthRealm", changes),
            |child: PartialObjectMeta<DynamicObject>| realm_of(&child),
            resource,
        );
    }
    // A server pod that stops says why in its termination message (KeysMismatch).
    realms = realms.watches_stream(
        trigger(
            &shutdown,
            "AuthRealm",
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
        ),
        |pod: PartialObjectMeta<Pod>| realm_of(&pod),
    );
    let realm_controller = realms
        .watches_stream(
            trigger(
                &shutdown,
                "AuthRealm",
                tolerant::objects::<RateLimitPolicy>(client, ns),
            ),
            |p| target(&p, &p.spec.target_ref.name),
        )
        .watches_stream(
            trigger(
                &shutdown,
                "AuthRealm",
                tolerant::objects::<RetentionPolicy>(client, ns),
            ),
            |p| target(&p, &p.spec.target_ref.name),
        )
        .watches_stream(
            trigger(
                &shutdown,
                "AuthRealm",
                tolerant::objects::<AuthClient>(client, ns),
            ),
            |c| Some(ObjectRef::new(&c.spec.realm_ref.name).within(&c.realm_namespace()?)),
        )
        .watches_stream(
            trigger(
                &shutdown,
                "AuthRealm",
                watcher::watcher(
                    api::<PartialObjectMeta<Secret>>(client, ns),
                    watcher::Config::default(),
                )
                .default_backoff()
                .touched_objects(),
            ),
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
        .run(realm::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move { report("AuthRealm", result) });

    // Policies follow their realm: one applied before its realm attaches when the realm
    // comes; a RetentionPolicy also follows the other policies of its realm (the one in force
    // is deleted or becomes invalid: the next takes over).
    let (cache, changes) = tolerant::cached::<RateLimitPolicy>(client, ns);
    let rate_limits = Controller::for_stream(trigger(&shutdown, "RateLimitPolicy", changes), cache);
    let rate_limit_store = rate_limits.store();
    let rate_limit_controller = rate_limits
        .watches_stream(
            trigger(
                &shutdown,
                "RateLimitPolicy",
                tolerant::objects::<AuthRealm>(client, ns),
            ),
            move |realm| policies_of(&rate_limit_store, &realm.name_any(), realm.namespace()),
        )
        .run(rate_limit::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move { report("RateLimitPolicy", result) });

    let (cache, changes) = tolerant::cached::<RetentionPolicy>(client, ns);
    let retention = Controller::for_stream(trigger(&shutdown, "RetentionPolicy", changes), cache);
    let policies = retention.store();
    let (by_realm, by_policy) = (policies.clone(), policies.clone());
    let retention = retention
        .watches_stream(
            trigger(
                &shutdown,
                "RetentionPolicy",
                tolerant::objects::<AuthRealm>(client, ns),
            ),
            move |realm| policies_of(&by_realm, &realm.name_any(), realm.namespace()),
        )
        .watches_stream(
            trigger(
                &shutdown,
                "RetentionPolicy",
                tolerant::objects::<RetentionPolicy>(client, ns),
            ),
            move |p| policies_of(&by_policy, &p.spec.target_ref.name, p.namespace()),
        );
    // A retention Job that starts or ends reports a run: reconcile the realm's policies at
    // once (the Jobs of scheduled runs belong to the CronJob, so the realm label maps them).
    let retention_jobs = format!(
        "{}={MANAGED_BY},{}={RETENTION}",
        labels::MANAGED_BY,
        labels::COMPONENT
    );
    let retention_controller = retention
        .watches_stream(
            trigger(
                &shutdown,
                "RetentionPolicy",
                watcher::watcher(
                    api::<PartialObjectMeta<Job>>(client, ns),
                    watcher::Config::default().labels(&retention_jobs),
                )
                .default_backoff()
                .touched_objects(),
            ),
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
        .run(retention::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move { report("RetentionPolicy", result) });

    // AuthClients: a change of their realm, of another client of the same realm (an id
    // handed over), of the realm's keys Secret (a client secret generated) or of their own
    // credentials Secret reconciles them.
    let (cache, changes) = tolerant::cached::<AuthClient>(client, ns);
    let clients = Controller::for_stream(trigger(&shutdown, "AuthClient", changes), cache);
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
        .watches_stream(
            trigger(
                &shutdown,
                "AuthClient",
                tolerant::objects::<AuthRealm>(client, ns),
            ),
            move |r| by_realm(&r.name_any(), r.namespace()),
        )
        .watches_stream(
            trigger(
                &shutdown,
                "AuthClient",
                tolerant::objects::<AuthClient>(client, ns),
            ),
            move |c| by_client(&c.spec.realm_ref.name, c.realm_namespace()),
        )
        .watches_stream(
            trigger(
                &shutdown,
                "AuthClient",
                watcher::watcher(
                    api::<PartialObjectMeta<Secret>>(client, ns),
                    watcher::Config::default().labels(&owned_selector),
                )
                .default_backoff()
                .touched_objects(),
            ),
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
        .run(auth_client::reconcile, error_policy, ctx)
        .for_each(|result| async move { report("AuthClient", result) });

    async move {
        tokio::join!(
            realm_controller,
            rate_limit_controller,
            retention_controller,
            client_controller
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::controllers::metrics::Metrics;
    use crate::controllers::mock::{Mock, World};
    use crate::controllers::realm::tests::now;
    use crate::controllers::shutdown;

    fn context(mock: &Mock) -> Arc<Context> {
        Arc::new(Context::with_clock(
            mock.client.clone(),
            Arc::new(Metrics::default()),
            Arc::new(now),
        ))
    }

    /// Runs the controllers against `world`, asks them to stop after `running`, and returns
    /// how long they took to stop (`None`: not within 5 s).
    async fn stop_after(world: World, running: Duration) -> Option<Duration> {
        let mock = Mock::start(world);
        let (trigger, shutdown) = shutdown::channel();
        let all = tokio::spawn(controllers(
            &mock.client,
            context(&mock),
            None,
            Capabilities::ALL,
            shutdown,
        ));
        tokio::time::sleep(running).await;
        assert!(!all.is_finished(), "the controllers stopped on their own");
        trigger.fire();
        let asked = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .ok()
            .map(|joined| {
                joined.unwrap();
                asked.elapsed()
            })
    }

    #[tokio::test]
    async fn controllers_whose_first_list_never_succeeds_stop_when_asked() {
        // Nothing can be listed (every list fails), so no cache ever becomes ready: the
        // situation of a replica stopped right after taking the lead, or one that may not
        // list a kind.
        let took = stop_after(World::default(), Duration::from_millis(300)).await;
        assert!(took.is_some(), "the controllers did not stop within 5 s");
    }

    #[tokio::test]
    async fn controllers_whose_watches_keep_failing_stop_at_once() {
        // After a few failed lists, a watch error passed on to kube-runtime would make the
        // controller sleep through a growing backoff without noticing the stop.
        let took = stop_after(World::default(), Duration::from_secs(4)).await;
        let took = took.expect("the controllers did not stop within 5 s");
        assert!(took < Duration::from_secs(1), "stopping took {took:?}");
    }

    #[tokio::test]
    async fn controllers_with_ready_caches_stop_when_asked() {
        let mut world = World::default();
        for plural in [
            "authrealms",
            "ratelimitpolicies",
            "retentionpolicies",
            "authclients",
        ] {
            world.lists.insert(plural.into(), vec![]);
        }
        let took = stop_after(world, Duration::from_millis(300)).await;
        assert!(took.is_some(), "the controllers did not stop within 5 s");
    }
}
