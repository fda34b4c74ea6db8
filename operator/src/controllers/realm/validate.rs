//! Validate: the effective settings of the realm with the policies in force (pure). A policy
//! that is wrong in itself is left out (its own controller reports it `Accepted=False`), so
//! one bad policy never stops its realm, as in Gateway API policy attachment.

use portcullis_crds::{AuthRealm, RateLimitPolicy, RealmSettings, RetentionPolicy, SettingsErrors};

use super::fetch::Fetched;
use crate::controllers::{rate_limit, retention};

/// The RateLimitPolicies acceptable on their own.
pub fn rate_limits_in_force(realm: &AuthRealm, all: &[RateLimitPolicy]) -> Vec<RateLimitPolicy> {
    all.iter()
        .filter(|p| {
            rate_limit::validate::validate(p, Some(realm))
                .accepted
                .is_ok()
        })
        .cloned()
        .collect()
}

/// The RetentionPolicy in force, if any (see [`retention::validate::in_force`]).
pub fn retention_in_force(realm: &AuthRealm, all: &[RetentionPolicy]) -> Vec<RetentionPolicy> {
    retention::validate::in_force(realm, all)
        .cloned()
        .into_iter()
        .collect()
}

/// Derives the settings with the policies in force and the admitted clients.
pub fn validate(realm: &AuthRealm, fetched: &Fetched) -> Result<RealmSettings, SettingsErrors> {
    RealmSettings::derive(
        realm,
        &fetched.rate_limit_policies,
        &fetched.retention_policies,
        &fetched.clients,
    )
}

/// Reason of the Event warning about an Ingress the realm does not trust.
pub const PROXY_NOT_TRUSTED: &str = "IngressProxyNotTrusted";

/// Warnings about settings that work but weaken the realm, each one sentence for the `Ready`
/// message and an Event. An Ingress in front of a realm with no `trustedProxies`: the auth
/// server sees every client as the ingress controller, so every per-IP rate limit and lockout
/// becomes one bucket shared by everyone (and one attacker locks every user's IP out).
pub fn warnings(settings: &RealmSettings) -> Vec<String> {
    let mut warnings = Vec::new();
    if settings.spec.ingress.enabled && settings.trusted_proxies.is_empty() {
        warnings.push(
            "spec.ingress is enabled but spec.trustedProxies is empty: the auth server sees every client as the ingress controller and shares one per-IP rate limit among all of them; add the controller pods' CIDR to spec.trustedProxies"
                .to_owned(),
        );
    }
    warnings
}

/// The warnings not yet shown in the previous `Ready` message: the ones to announce with an
/// Event (a warning already on the realm is not announced again at every reconcile).
pub fn new_warnings<'a>(
    previous_ready_message: Option<&str>,
    warnings: &'a [String],
) -> Vec<&'a str> {
    warnings
        .iter()
        .filter(|w| !previous_ready_message.is_some_and(|m| m.contains(w.as_str())))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::resources::tests::REALM_MINIMAL;

    fn documents(yaml: &str) -> portcullis_crds::RealmManifests {
        portcullis_crds::parse_manifests(&format!("{REALM_MINIMAL}---\n{yaml}")).unwrap()
    }

    fn settings_with(spec_lines: &str) -> RealmSettings {
        let m = portcullis_crds::parse_manifests(&format!("{REALM_MINIMAL}{spec_lines}")).unwrap();
        RealmSettings::derive(&m.realms[0], &[], &[], &[]).unwrap()
    }

    /// (spec lines, warned?)
    #[test]
    fn an_ingress_without_trusted_proxies_is_warned_about() {
        let table = [
            ("  ingress: {enabled: true}\n", true),
            (
                "  ingress: {enabled: true}\n  trustedProxies: [10.0.0.0/8]\n",
                false,
            ),
            ("  ingress: {enabled: false}\n", false),
        ];
        for (lines, warned) in table {
            let w = warnings(&settings_with(lines));
            assert_eq!(w.len(), usize::from(warned), "{lines}: {w:?}");
            if warned {
                assert!(w[0].contains("spec.trustedProxies"), "{}", w[0]);
            }
        }
    }

    #[test]
    fn a_warning_is_announced_once_until_it_leaves_the_ready_message() {
        let w = warnings(&settings_with("  ingress: {enabled: true}\n"));
        assert_eq!(new_warnings(None, &w), [w[0].as_str()], "first reconcile");
        assert_eq!(
            new_warnings(Some("serving at https://x"), &w),
            [w[0].as_str()],
            "the warning is new"
        );
        let shown = format!("serving at https://x; warning: {}", w[0]);
        assert!(new_warnings(Some(&shown), &w).is_empty(), "already shown");
        assert!(new_warnings(Some(&shown), &[]).is_empty());
    }

    #[test]
    fn a_bad_policy_is_left_out_and_the_realm_runs_without_it() {
        let m = documents(
            "apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: redis-less, namespace: auth}
spec:
  targetRef: {name: demo}
  backend: Redis
  rules: [{name: login, routes: [Login], limits: [{key: Ip, requests: 5, period: 1m}]}]
---
apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: good, namespace: auth}
spec:
  targetRef: {name: demo}
  rules: [{name: login, routes: [Login], limits: [{key: Ip, requests: 5, period: 1m}]}]
",
        );
        let realm = &m.realms[0];
        let in_force = rate_limits_in_force(realm, &m.rate_limit_policies);
        let names: Vec<_> = in_force.iter().map(kube::ResourceExt::name_any).collect();
        assert_eq!(names, ["good"]);
        let settings = RealmSettings::derive(realm, &in_force, &[], &[]).unwrap();
        assert_eq!(settings.rate_limits.policies, ["good"]);
    }

    #[test]
    fn the_oldest_acceptable_retention_policy_is_in_force() {
        let m = documents(
            "apiVersion: portcullis.dev/v1alpha1
kind: RetentionPolicy
metadata: {name: old-broken, namespace: auth, creationTimestamp: '2027-01-01T00:00:00Z'}
spec:
  targetRef: {name: demo}
  schedule: '0 0 31 2 *'
---
apiVersion: portcullis.dev/v1alpha1
kind: RetentionPolicy
metadata: {name: young, namespace: auth, creationTimestamp: '2027-01-02T00:00:00Z'}
spec:
  targetRef: {name: demo}
---
apiVersion: portcullis.dev/v1alpha1
kind: RetentionPolicy
metadata: {name: youngest, namespace: auth, creationTimestamp: '2027-01-03T00:00:00Z'}
spec:
  targetRef: {name: demo}
",
        );
        let realm = &m.realms[0];
        let in_force = retention_in_force(realm, &m.retention_policies);
        assert_eq!(kube::ResourceExt::name_any(&in_force[0]), "young");
        let verdict = |name: &str| {
            let policy = m
                .retention_policies
                .iter()
                .find(|p| kube::ResourceExt::name_any(*p) == name)
                .unwrap();
            match retention::validate::validate(policy, Some(realm), &m.retention_policies) {
                retention::validate::Verdict::Accepted(_) => "Accepted",
                retention::validate::Verdict::Rejected { reason, .. } => reason,
            }
        };
        assert_eq!(verdict("old-broken"), "ScheduleNeverFires");
        assert_eq!(verdict("young"), "Accepted");
        assert_eq!(verdict("youngest"), "MultipleRetentionPolicies");
    }
}
