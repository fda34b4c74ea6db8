//! The AuthRealm controller: fetch -> validate -> build -> apply -> status.

pub mod apply;
pub mod build;
pub mod fetch;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Resource, ResourceExt};
use portcullis_crds::AuthRealm;
use portcullis_crds::realm::AttachedPolicies;

use super::{Context, ReconcileError, is_not_found};
use crate::resources::meta::Owner;
use status::{Applied, CertState, MonitoringState, Outcome};

/// Finalizer of AuthRealms: removes client Secrets in other namespaces.
pub const FINALIZER: &str = "portcullis.dev/realm-cleanup";
/// Kind label of metrics.
pub const KIND: &str = "AuthRealm";
/// Requeue when nothing is scheduled sooner: a periodic drift check.
pub const RESYNC: Duration = Duration::from_secs(600);

/// Reconciles one AuthRealm, recording metrics.
pub async fn reconcile(realm: Arc<AuthRealm>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let key = super::failure_key(realm.as_ref());
    let result = reconcile_inner(realm, &ctx).await;
    let (reason, failed) = match &result {
        Ok((_, reason)) => (*reason, false),
        Err(error) => (error.reason(), true),
    };
    ctx.metrics.observe(KIND, reason, started.elapsed(), failed);
    if !failed {
        ctx.succeeded(&key);
    }
    result.map(|(action, _)| action)
}

async fn reconcile_inner(
    realm: Arc<AuthRealm>,
    ctx: &Context,
) -> Result<(Action, &'static str), ReconcileError> {
    let namespace = realm.namespace().ok_or(ReconcileError::NoNamespace)?;
    let api: Api<AuthRealm> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut reason = "Reconciled";
    let action = finalizer::finalizer(&api, FINALIZER, realm, |event| async {
        match event {
            FinalizerEvent::Apply(realm) => {
                let (action, r) = apply_realm(&realm, ctx).await?;
                reason = r;
                Ok(action)
            }
            FinalizerEvent::Cleanup(realm) => cleanup(&realm, ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(other.to_string()),
    })?;
    Ok((action, reason))
}

/// Patches the status when it changed, and publishes an Event when Ready or Paused changed.
async fn write_status(
    realm: &AuthRealm,
    ctx: &Context,
    outcome: &Outcome,
    now: Timestamp,
) -> Result<(), ReconcileError> {
    let previous = realm.status.as_ref();
    let next = status::next_status(
        previous,
        &realm.spec.issuer,
        realm.metadata.generation,
        outcome,
        now,
    );
    if previous != Some(&next) {
        let api: Api<AuthRealm> =
            Api::namespaced(ctx.client.clone(), &realm.namespace().unwrap_or_default());
        let patch = serde_json::json!({ "status": next });
        api.patch_status(
            &realm.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(ReconcileError::api("patch AuthRealm status"))?;
    }
    for type_ in status::ANNOUNCED {
        let before = status::condition(previous, type_).map(|(s, r, _)| (s, r));
        let after = status::condition(Some(&next), type_);
        if let Some((state, reason, message)) = after
            && before != Some((state.clone(), reason.clone()))
            && !(before.is_none()
                && type_ == portcullis_crds::conditions::types::PAUSED
                && state == "False")
        {
            let warning = (type_ == portcullis_crds::conditions::types::READY) != (state == "True");
            ctx.event(&realm.object_ref(&()), warning, &reason, message)
                .await;
        }
    }
    Ok(())
}

async fn apply_realm(
    realm: &AuthRealm,
    ctx: &Context,
) -> Result<(Action, &'static str), ReconcileError> {
    let now = (ctx.clock)();
    if realm.spec.paused {
        write_status(realm, ctx, &Outcome::Paused, now).await?;
        return Ok((Action::await_change(), "Paused"));
    }
    let fetched = fetch::fetch(&ctx.client, realm).await?;
    let settings = match validate::validate(realm, &fetched) {
        Ok(settings) => settings,
        Err(errors) => {
            let outcome = Outcome::Invalid {
                reason: errors.reason(),
                message: errors.to_string(),
            };
            write_status(realm, ctx, &outcome, now).await?;
            return Ok((Action::await_change(), errors.reason()));
        }
    };
    if !fetched.missing.is_empty() {
        let message = fetched
            .missing
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        write_status(realm, ctx, &Outcome::SecretsMissing { message }, now).await?;
        // Referenced Secrets are watched; the requeue is a safety net.
        return Ok((Action::requeue(Duration::from_secs(120)), "SecretMissing"));
    }
    let result = {
        let mut rng = rand::rng();
        build::build(realm, &settings, &fetched, now, &mut rng)
    };
    let built = match result {
        Ok(built) => built,
        Err(error) => {
            let outcome = Outcome::Failed {
                reason: error.reason(),
                message: error.to_string(),
            };
            write_status(realm, ctx, &outcome, now).await?;
            return Ok((Action::requeue(RESYNC), error.reason()));
        }
    };
    let owner = Owner {
        realm: settings.name.clone(),
        namespace: settings.namespace.clone(),
        reference: crate::resources::meta::controller_reference(realm),
    };
    let manifests = built
        .children
        .manifests(true)
        .map_err(|e| ReconcileError::Manifest(e.to_string()))?;
    let mut report =
        apply::apply_children(&ctx.client, &owner, &manifests, fetched.capabilities).await?;
    let wanted = crate::resources::secrets::client_secret_targets(&settings);
    let namespace = settings.namespace.clone().unwrap_or_default();
    for stale in crate::resources::secrets::recorded_client_secret_targets(&fetched.keys) {
        // Secrets in the realm namespace are pruned by label with the other children.
        let Some((target_namespace, name)) = stale.split_once('/') else {
            continue;
        };
        if wanted.contains(&stale) || target_namespace == namespace {
            continue;
        }
        delete_secret(ctx, target_namespace, name).await?;
        report.pruned.push(format!("Secret/{stale}"));
    }

    let reference = realm.object_ref(&());
    if !built.ensured.generated.is_empty() {
        ctx.event(
            &reference,
            false,
            "SecretsGenerated",
            format!("generated {}", built.ensured.generated.join(", ")),
        )
        .await;
    }
    if built.tls_generated {
        ctx.event(
            &reference,
            false,
            "CertificateGenerated",
            "self-signed serving certificate".to_owned(),
        )
        .await;
    }
    if !report.pruned.is_empty() {
        ctx.event(
            &reference,
            false,
            "Pruned",
            format!("deleted {}", report.pruned.join(", ")),
        )
        .await;
    }

    let spec = &settings.spec;
    let tls = spec.tls.as_ref();
    let cert = match tls {
        None => CertState::NotRequired,
        Some(t) if t.secret_name.is_some() => CertState::Provided,
        Some(t) if t.self_signed.is_some() => CertState::SelfSigned,
        Some(_) if fetched.capabilities.cert_manager => CertState::Requested,
        Some(_) => CertState::CertManagerMissing,
    };
    let wants_monitoring = spec.monitoring.service_monitor || spec.monitoring.prometheus_rule;
    let monitoring = match (wants_monitoring, fetched.capabilities.prometheus_operator) {
        (false, _) => MonitoringState::Disabled,
        (true, true) => MonitoringState::Configured,
        (true, false) => MonitoringState::PrometheusOperatorMissing,
    };
    let rotation = &built.ensured.rotation;
    let applied = Applied {
        replicas: spec.replicas,
        ready_replicas: report.ready_replicas,
        cert,
        monitoring,
        key_ids: rotation.keys.iter().map(|k| k.kid.clone()).collect(),
        last_rotation: rotation.keys.iter().map(|k| k.created).max(),
        cert_not_after: built.tls.as_ref().map(|t| t.not_after),
        attached: AttachedPolicies {
            rate_limit: settings.rate_limits.policies.clone(),
            retention: settings.retention.as_ref().map(|r| r.policy.clone()),
        },
    };
    if let Some(tls) = &built.tls {
        ctx.metrics.certificate_expiry(
            &realm.namespace().unwrap_or_default(),
            &realm.name_any(),
            tls.not_after.as_second(),
        );
    }
    write_status(realm, ctx, &Outcome::Applied(applied), now).await?;

    // Wake up for the next key activation/rotation or certificate renewal, at the latest
    // after the resync period.
    let mut wake = now + k8s_openapi::jiff::SignedDuration::try_from(RESYNC).unwrap_or_default();
    wake = wake.min(rotation.next_event);
    if let Some(tls) = &built.tls {
        wake = wake.min(tls.not_after - crate::resources::tls::SELF_SIGNED_RENEW_BEFORE);
    }
    let after = Duration::try_from(wake.duration_since(now)).unwrap_or(Duration::from_secs(1));
    Ok((
        Action::requeue(after.max(Duration::from_secs(1))),
        "Reconciled",
    ))
}

/// Deletion: owner references remove the children in the realm namespace; client Secrets
/// may live elsewhere, so they are deleted here.
async fn cleanup(realm: &AuthRealm, ctx: &Context) -> Result<Action, ReconcileError> {
    let namespace = realm.namespace().unwrap_or_default();
    for client in &realm.spec.clients {
        let Some(target) = &client.secret_target else {
            continue;
        };
        let target_namespace = target
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.clone());
        delete_secret(ctx, &target_namespace, &target.name).await?;
    }
    Ok(Action::await_change())
}

/// Deletes a client Secret; one that is already gone is fine.
async fn delete_secret(ctx: &Context, namespace: &str, name: &str) -> Result<(), ReconcileError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(ReconcileError::api(format!(
            "delete Secret {namespace}/{name}"
        ))(error)),
    }
}

#[cfg(test)]
pub(crate) mod tests;
