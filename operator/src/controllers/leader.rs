//! Leader election with a coordination.k8s.io Lease, so two operator replicas never both
//! write. The decision is a pure function of the Lease, the identity, and when this replica
//! last saw the Lease change, by its own clock: the holder's `renewTime` is written with the
//! holder's clock, so comparing it with ours would let a replica whose clock runs ahead take
//! a Lease that is renewed on time (client-go's rule). A round that fails keeps the
//! leadership until the Lease could have expired, not one round more.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use super::{ReconcileError, is_not_found};

/// How long a lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews and others retry.
pub const RETRY_PERIOD: Duration = Duration::from_secs(5);
/// How long a leader keeps leading while its renewals fail (shorter than the Lease, so it
/// stops before another replica may take over).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// What to do with the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Take it: free, expired or never held.
    Acquire,
    /// Already ours: renew it.
    Renew,
    /// Someone else holds a valid lease.
    Follow,
}

/// The Lease record as this replica last saw it, and when (by this replica's clock) it first
/// saw that record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The record: holder, renew time and resourceVersion; any change is a renewal.
    pub record: String,
    /// When this replica first saw the record.
    pub at: Timestamp,
}

impl Observation {
    /// The observation after reading `lease` at `now`: unchanged records keep their time.
    pub fn next(
        previous: Option<&Observation>,
        lease: Option<&Lease>,
        now: Timestamp,
    ) -> Observation {
        let record = lease.map_or_else(String::new, |l| {
            let spec = l.spec.clone().unwrap_or_default();
            format!(
                "{}|{:?}|{}",
                spec.holder_identity.unwrap_or_default(),
                spec.renew_time.map(|t| t.0),
                l.metadata.resource_version.clone().unwrap_or_default()
            )
        });
        match previous {
            Some(seen) if seen.record == record => seen.clone(),
            _ => Observation { record, at: now },
        }
    }
}

/// Decides from the current Lease spec (none when the Lease does not exist) and when this
/// replica last saw it change: another holder's Lease has expired when it has not changed for
/// its duration by this replica's clock.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, seen: &Observation, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    if seen.at + duration > now {
        Decision::Follow
    } else {
        Decision::Acquire
    }
}

/// The Lease spec after taking or renewing it.
pub fn next_spec(previous: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseSpec {
    let previous = previous.cloned().unwrap_or_default();
    let ours = previous.holder_identity.as_deref() == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: if ours {
            previous.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(previous.lease_transitions.unwrap_or(0) + if ours { 0 } else { 1 }),
        ..Default::default()
    }
}

/// One election round: reads the Lease, updates what this replica has seen of it, and takes
/// or renews it when allowed. Returns whether this replica leads. A write conflict means
/// another replica won the race.
pub async fn round(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    seen: &mut Option<Observation>,
    now: Timestamp,
) -> Result<bool, ReconcileError> {
    let current = match api.get(name).await {
        Ok(lease) => Some(lease),
        Err(error) if is_not_found(&error) => None,
        Err(error) => return Err(ReconcileError::api("get Lease")(error)),
    };
    let observation = Observation::next(seen.as_ref(), current.as_ref(), now);
    *seen = Some(observation.clone());
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    if decide(spec, me, &observation, now) == Decision::Follow {
        return Ok(false);
    }
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            resource_version: current
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        },
        spec: Some(next_spec(spec, me, now)),
    };
    let written = match current {
        Some(_) => api.replace(name, &PostParams::default(), &lease).await,
        None => api.create(&PostParams::default(), &lease).await,
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(ReconcileError::api("write Lease")(error)),
    }
}

/// Whether this replica still leads after a round: a failed round keeps a leader leading
/// until [`RENEW_DEADLINE`] after its last successful renewal.
pub fn still_leads(
    result: &Result<bool, ReconcileError>,
    last_renewed: Option<Timestamp>,
    now: Timestamp,
) -> bool {
    match result {
        Ok(leads) => *leads,
        Err(_) => last_renewed.is_some_and(|at| {
            at + SignedDuration::try_from(RENEW_DEADLINE).unwrap_or_default() > now
        }),
    }
}

/// Gives the Lease up when this replica holds it (at a graceful stop), so a standby takes
/// over at its next round instead of waiting for the Lease to expire. A write conflict means
/// someone else already holds it.
pub async fn release(api: &Api<Lease>, name: &str, me: &str) -> Result<(), ReconcileError> {
    let lease = match api.get(name).await {
        Ok(lease) => lease,
        Err(error) if is_not_found(&error) => return Ok(()),
        Err(error) => return Err(ReconcileError::api("get Lease")(error)),
    };
    let Some(spec) = lease.spec.as_ref() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(me) {
        return Ok(());
    }
    let released = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            resource_version: lease.metadata.resource_version.clone(),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: None,
            ..spec.clone()
        }),
    };
    match api.replace(name, &PostParams::default(), &released).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(ReconcileError::api("release Lease")(error)),
    }
}

/// Runs the election forever, publishing whether this replica leads.
pub async fn elect(
    client: Client,
    namespace: String,
    name: String,
    me: String,
    leading: watch::Sender<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut seen = None;
    let mut last_renewed = None;
    loop {
        let led = *leading.borrow();
        let now = Timestamp::now();
        let result = round(&api, &name, &me, &mut seen, now).await;
        match &result {
            Ok(true) => last_renewed = Some(now),
            Ok(false) => last_renewed = None,
            Err(error) => tracing::warn!(%error, "leader election round failed"),
        }
        let leads = still_leads(&result, last_renewed, now);
        if leads != led {
            tracing::info!(leads, identity = %me, "leadership changed");
            let _ = leading.send(leads);
        }
        tokio::time::sleep(RETRY_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn held_by(who: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..Default::default()
        }
    }

    fn seen(secs: i64) -> Observation {
        Observation {
            record: "b|x|1".into(),
            at: at(secs),
        }
    }

    #[test]
    fn a_missing_lease_is_acquired() {
        assert_eq!(decide(None, "a", &seen(0), at(0)), Decision::Acquire);
    }

    #[test]
    fn the_holder_renews_its_own_lease() {
        assert_eq!(
            decide(Some(&held_by("a", 0)), "a", &seen(0), at(100)),
            Decision::Renew
        );
    }

    #[test]
    fn a_valid_lease_of_another_replica_is_respected() {
        assert_eq!(
            decide(Some(&held_by("b", 0)), "a", &seen(0), at(14)),
            Decision::Follow
        );
    }

    #[test]
    fn a_lease_unchanged_for_its_duration_by_our_clock_is_taken_over() {
        assert_eq!(
            decide(Some(&held_by("b", 0)), "a", &seen(0), at(15)),
            Decision::Acquire
        );
    }

    #[test]
    fn a_holder_whose_clock_lags_is_followed_while_it_renews() {
        // The holder's renewTime is an hour behind our clock, but the record keeps changing:
        // each change is seen now, so the Lease is alive.
        let mut lease = Lease {
            metadata: ObjectMeta {
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(held_by("b", -3_600)),
        };
        let first = Observation::next(None, Some(&lease), at(0));
        assert_eq!(
            decide(lease.spec.as_ref(), "a", &first, at(10)),
            Decision::Follow
        );
        lease.metadata.resource_version = Some("2".into());
        lease.spec = Some(held_by("b", -3_590));
        let renewed = Observation::next(Some(&first), Some(&lease), at(12));
        assert_eq!(renewed.at, at(12), "a change is a renewal, seen now");
        assert_eq!(
            decide(lease.spec.as_ref(), "a", &renewed, at(26)),
            Decision::Follow
        );
        let unchanged = Observation::next(Some(&renewed), Some(&lease), at(27));
        assert_eq!(unchanged.at, at(12));
        assert_eq!(
            decide(lease.spec.as_ref(), "a", &unchanged, at(27)),
            Decision::Acquire,
            "no change for 15 s by our clock"
        );
    }

    #[test]
    fn a_failed_round_keeps_the_lead_until_the_renew_deadline() {
        let failed: Result<bool, ReconcileError> = Err(ReconcileError::NoNamespace);
        assert!(still_leads(&failed, Some(at(0)), at(5)), "one failed round");
        assert!(
            !still_leads(&failed, Some(at(0)), at(10)),
            "past the deadline"
        );
        assert!(!still_leads(&failed, None, at(1)), "a follower stays one");
        assert!(!still_leads(&Ok(false), Some(at(0)), at(1)));
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let taken = next_spec(Some(&held_by("b", 0)), "a", at(20));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        let renewed = next_spec(Some(&taken), "a", at(25));
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(25))));
    }

    #[tokio::test]
    async fn a_stopping_holder_releases_the_lease_and_another_replica_takes_it_at_once() {
        use crate::controllers::mock::{Mock, World};
        let path = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/op";
        let mut world = World::default();
        world.objects.insert(
            path.into(),
            serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "op", "resourceVersion": "7"},
                "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2027-01-15T07:59:59.000000Z"}}),
        );
        let mock = Mock::start(world);
        let api: Api<Lease> = Api::namespaced(mock.client.clone(), "ops");
        release(&api, "op", "a").await.unwrap();
        assert_eq!(mock.lines(), [format!("GET {path}"), format!("PUT {path}")]);
        let put = &mock.calls()[1].body;
        assert_eq!(put["metadata"]["resourceVersion"], "7");
        assert!(put["spec"].get("holderIdentity").is_none(), "{put}");
        // A released Lease is free for anyone, although its renewal is recent.
        let spec: LeaseSpec = serde_json::from_value(put["spec"].clone()).unwrap();
        assert_eq!(decide(Some(&spec), "b", &seen(0), at(0)), Decision::Acquire);
        // Another replica's Lease is left alone.
        release(&api, "op", "b").await.unwrap();
        assert_eq!(mock.lines().len(), 3, "only read");
    }

    #[tokio::test]
    async fn a_lost_write_race_does_not_lead() {
        use crate::controllers::mock::{Mock, World};
        let mut world = World::default();
        world.objects.insert(
            "/apis/coordination.k8s.io/v1/namespaces/ops/leases/op".into(),
            serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "op", "resourceVersion": "5"},
                "spec": {"holderIdentity": "b", "leaseDurationSeconds": 15, "renewTime": "2027-01-15T07:59:59.000000Z"}}),
        );
        let mock = Mock::start(world);
        let api: Api<Lease> = Api::namespaced(mock.client.clone(), "ops");
        // a sees b's Lease for the first time: it follows and writes nothing.
        let mut seen = None;
        assert!(!round(&api, "op", "a", &mut seen, at(0)).await.unwrap());
        assert_eq!(
            mock.lines(),
            ["GET /apis/coordination.k8s.io/v1/namespaces/ops/leases/op"]
        );
        // Thirty seconds later, by a's clock, the Lease has not changed: a replaces it.
        assert!(round(&api, "op", "a", &mut seen, at(30)).await.unwrap());
        assert_eq!(
            mock.lines()[2],
            "PUT /apis/coordination.k8s.io/v1/namespaces/ops/leases/op"
        );
        assert_eq!(mock.calls()[2].body["metadata"]["resourceVersion"], "5");
    }
}
