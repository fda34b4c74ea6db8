//! The AuthRealm controller: fetch -> validate -> build -> apply -> status.

pub mod apply;
pub mod build;
pub mod fetch;
pub mod pods;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use portcullis_crds::AuthRealm;
use portcullis_crds::realm::AttachedPolicies;

use super::skeleton::{announce, apply_status, observed, remove_finalizer};
use super::{Context, ReconcileError};
use crate::resources::meta::Owner;
use portcullis_crds::conditions::types;
use status::{Applied, CertState, MonitoringState, Outcome};

/// The finalizer earlier versions put on AuthRealms (to delete client Secrets in other
/// namespaces). AuthClients own their Secrets now, so a realm needs no finalizer; one left on
/// a realm is removed, so that the realm can be deleted.
pub const LEGACY_FINALIZER: &str = "portcullis.dev/realm-cleanup";
/// Kind label of metrics.
pub const KIND: &str = "AuthRealm";
/// Requeue when nothing is scheduled sooner: a periodic drift check.
pub const RESYNC: Duration = Duration::from_secs(600);

/// Reconciles one AuthRealm, recording metrics.
pub async fn reconcile(realm: Arc<AuthRealm>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    observed(
        KIND,
        realm.as_ref(),
        &ctx,
        reconcile_inner(realm.clone(), &ctx),
    )
    .await
}

async fn reconcile_inner(
    realm: Arc<AuthRealm>,
    ctx: &Context,
) -> Result<(Action, &'static str), ReconcileError> {
    remove_finalizer(ctx, realm.as_ref(), LEGACY_FINALIZER).await?;
    if realm.metadata.deletion_timestamp.is_some() {
        // Children go with the realm (owner references); the keys Secret stays under Retain.
        return Ok((Action::await_change(), "Deleting"));
    }
    apply_realm(&realm, ctx).await
}

/// Applies the status (server-side, only when it changed) and publishes an Event when Ready,
/// Degraded or Paused changed.
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
    apply_status(ctx, realm, previous, &next).await?;
    let before = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    announce(
        ctx,
        realm,
        before,
        &next.conditions,
        &status::ANNOUNCED,
        &[types::DEGRADED, types::PAUSED],
    )
    .await;
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
    let fetched = fetch::fetch(&ctx.client, ctx.namespace.as_deref(), realm).await?;
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
    let report =
        match apply::apply_children(&ctx.client, &owner, &manifests, fetched.capabilities).await {
            Ok(report) => report,
            Err(error) => {
                // Say why on the realm (a 403, a name taken), then retry with backoff.
                let outcome = Outcome::Failed {
                    reason: error.reason(),
                    message: error.to_string(),
                };
                if let Err(status_error) = write_status(realm, ctx, &outcome, now).await {
                    tracing::warn!(%status_error, "cannot report the failed apply on the realm");
                }
                return Err(error);
            }
        };

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
    let pods = pods::server_pods(
        &ctx.client,
        &owner.namespace.clone().unwrap_or_default(),
        &settings.name,
    )
    .await?;
    let keys_mismatch = pods::find_report(&pods, pods::KEYS_MISMATCH)
        .map(|(pod, report)| format!("pod {pod}: {}", report.message));
    let warnings = validate::warnings(&settings);
    let previous_ready = status::condition(realm.status.as_ref(), types::READY);
    for warning in validate::new_warnings(
        previous_ready.as_ref().map(|(_, _, m)| m.as_str()),
        &warnings,
    ) {
        ctx.event(
            &reference,
            true,
            validate::PROXY_NOT_TRUSTED,
            warning.to_owned(),
        )
        .await;
    }
    let applied = Applied {
        warnings,
        keys_mismatch,
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

#[cfg(test)]
pub(crate) mod tests;
