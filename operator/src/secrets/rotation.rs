//! Signing-key rotation as a pure function of the published keys, the time and the policy.
//!
//! A new key is published when the newest is `every` old; it starts signing one access-token
//! lifetime later, so every relying party has fetched it from the JWKS before it meets a
//! token signed with it. Older keys stay published for `keep` rotations, so tokens they signed
//! still verify; then they are retired.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// A published key and when it was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAge {
    /// Key id (`kid`).
    pub kid: String,
    /// Creation time.
    pub created: Timestamp,
}

/// The rotation settings of a realm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// `tokens.accessTokenTtl`: how long a published key waits before it signs.
    pub access_token_ttl: SignedDuration,
    /// `tokens.keyRotation.every`.
    pub every: SignedDuration,
    /// `tokens.keyRotation.keep`: previous keys kept published.
    pub keep: u32,
}

/// The outcome of one rotation step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Keys to publish, the active signing key first, then the others newest first.
    pub keys: Vec<KeyAge>,
    /// Kid of a key published in this step.
    pub published: Option<String>,
    /// Kids no longer published.
    pub retired: Vec<String>,
    /// When the next step has something to do (an activation or a rotation).
    pub next_event: Timestamp,
}

impl Rotation {
    /// The key that signs now.
    pub fn active(&self) -> Option<&KeyAge> {
        self.keys.first()
    }
}

/// One rotation step at `now`. `new_kid` names a key if one must be published.
pub fn rotate(
    existing: &[KeyAge],
    now: Timestamp,
    policy: RotationPolicy,
    new_kid: impl FnOnce() -> String,
) -> Rotation {
    let mut keys = existing.to_vec();
    // Newest first; ties broken by kid so the order never depends on the input order.
    keys.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.kid.cmp(&b.kid)));

    let due = keys
        .first()
        .is_none_or(|newest| now.duration_since(newest.created) >= policy.every);
    let published = due.then(|| {
        let kid = new_kid();
        keys.insert(
            0,
            KeyAge {
                kid: kid.clone(),
                created: now,
            },
        );
        kid
    });

    // The newest key published for at least one access-token lifetime signs; a realm's very
    // first key signs at once (no relying party can hold an older one).
    let matured = |k: &KeyAge| now.duration_since(k.created) >= policy.access_token_ttl;
    let active_index = keys
        .iter()
        .position(matured)
        .unwrap_or(keys.len().saturating_sub(1));

    let kept = (active_index + 1 + policy.keep as usize).min(keys.len());
    let retired: Vec<String> = keys.drain(kept..).map(|k| k.kid).collect();
    if active_index < keys.len() {
        let active = keys.remove(active_index);
        keys.insert(0, active);
    }

    let newest = keys.iter().map(|k| k.created).max().unwrap_or(now);
    let mut next_event = newest + policy.every;
    // Keys after the active one that have not matured yet wait to activate.
    for pending in keys.iter().skip(1).filter(|k| !matured(k)) {
        next_event = next_event.min(pending.created + policy.access_token_ttl);
    }

    Rotation {
        keys,
        published,
        retired,
        next_event,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MINUTE: i64 = 60;
    const DAY: i64 = 86_400;

    fn policy(keep: u32) -> RotationPolicy {
        RotationPolicy {
            access_token_ttl: SignedDuration::from_secs(10 * MINUTE),
            every: SignedDuration::from_secs(30 * DAY),
            keep,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn kids(rotation: &Rotation) -> Vec<&str> {
        rotation.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    #[test]
    fn the_first_key_signs_at_once() {
        let r = rotate(&[], at(0), policy(2), || "k1".into());
        assert_eq!(r.published.as_deref(), Some("k1"));
        assert_eq!(kids(&r), ["k1"]);
        assert_eq!(r.next_event, at(30 * DAY));
    }

    #[test]
    fn nothing_happens_before_the_rotation_is_due() {
        let keys = [KeyAge {
            kid: "k1".into(),
            created: at(0),
        }];
        let r = rotate(&keys, at(30 * DAY - 1), policy(2), || unreachable!());
        assert_eq!(r.published, None);
        assert_eq!(kids(&r), ["k1"]);
        assert!(r.retired.is_empty());
    }

    #[test]
    fn a_new_key_is_published_first_and_signs_one_token_lifetime_later() {
        let keys = [KeyAge {
            kid: "k1".into(),
            created: at(0),
        }];
        let r = rotate(&keys, at(30 * DAY), policy(2), || "k2".into());
        assert_eq!(r.published.as_deref(), Some("k2"));
        assert_eq!(kids(&r), ["k1", "k2"], "k1 still signs, k2 is published");
        assert_eq!(
            r.next_event,
            at(30 * DAY + 10 * MINUTE),
            "wake up to activate k2"
        );

        let r = rotate(
            &r.keys,
            at(30 * DAY + 10 * MINUTE - 1),
            policy(2),
            || unreachable!(),
        );
        assert_eq!(kids(&r), ["k1", "k2"]);
        let r = rotate(
            &r.keys,
            at(30 * DAY + 10 * MINUTE),
            policy(2),
            || unreachable!(),
        );
        assert_eq!(kids(&r), ["k2", "k1"], "k2 signs, k1 verifies old tokens");
        assert_eq!(r.next_event, at(60 * DAY));
    }

    #[test]
    fn old_keys_are_kept_for_keep_rotations_then_retired() {
        let mut keys = Vec::new();
        let mut retired = Vec::new();
        let mut n = 0;
        // Step hourly through 200 days, as a requeueing controller would.
        for hour in 0..(200 * 24) {
            let r = rotate(&keys, at(hour * 3_600), policy(2), || {
                n += 1;
                format!("k{n}")
            });
            retired.extend(r.retired.clone());
            keys = r.keys;
            assert!(keys.len() <= 4, "active + pending + keep: {keys:?}");
        }
        // Rotations at days 0, 30, ..., 180: k1..k7; k7 signs, k6 and k5 kept.
        assert_eq!(
            keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["k7", "k6", "k5"]
        );
        assert_eq!(retired, ["k1", "k2", "k3", "k4"]);
    }

    #[test]
    fn no_key_signs_before_it_was_published_for_one_token_lifetime() {
        let mut keys: Vec<KeyAge> = Vec::new();
        let mut n = 0;
        let mut first_seen = std::collections::HashMap::new();
        for minute in 0..(100 * 24 * 60 / 7) {
            let now = at(minute * 7 * MINUTE);
            let r = rotate(&keys, now, policy(1), || {
                n += 1;
                format!("k{n}")
            });
            for key in &r.keys {
                first_seen.entry(key.kid.clone()).or_insert(now);
            }
            let active = r.active().unwrap();
            if active.kid != "k1" {
                let published_at = first_seen[&active.kid];
                assert!(
                    now.duration_since(published_at) >= SignedDuration::from_secs(10 * MINUTE),
                    "{} signs {:?} after publication",
                    active.kid,
                    now.duration_since(published_at)
                );
            }
            keys = r.keys;
        }
        assert!(n >= 4, "rotated {n} times");
    }

    #[test]
    fn the_result_does_not_depend_on_the_input_order() {
        let a = KeyAge {
            kid: "a".into(),
            created: at(0),
        };
        let b = KeyAge {
            kid: "b".into(),
            created: at(DAY),
        };
        let forward = rotate(
            &[a.clone(), b.clone()],
            at(2 * DAY),
            policy(2),
            || unreachable!(),
        );
        let backward = rotate(&[b, a], at(2 * DAY), policy(2), || unreachable!());
        assert_eq!(forward, backward);
        assert_eq!(kids(&forward), ["b", "a"]);
    }
}
