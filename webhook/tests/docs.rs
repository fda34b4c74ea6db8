//! docs/webhooks.md cannot drift from the crate: its bodies, worked signatures, retry table and
//! receiver code are checked here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod common;

use std::time::Duration;

use common::{blocks_after, repo_path, signature_examples, webhooks_md};
use portcullis_webhook::*;
use time::macros::datetime;
use uuid::Uuid;

const EVENT_ID: &str = "0b7e4d52-3c1f-4a8e-9d2b-6f5a4c3b2a10";
const USER_ID: &str = "7d3c1e2a-5b4f-4c6d-8e9f-0a1b2c3d4e5f";

fn doc_envelope(event: Event) -> Envelope {
    Envelope::new(
        Uuid::parse_str(EVENT_ID).unwrap(),
        datetime!(2026-01-01 00:00:00 UTC),
        RealmName::new("acme").unwrap(),
        event,
    )
}

fn doc_events() -> Vec<Event> {
    let user_id = Uuid::parse_str(USER_ID).unwrap();
    vec![
        Event::AccountLocked(AccountLocked {
            user_id,
            minutes: 15,
        }),
        Event::NewDeviceLogin(NewDeviceLogin {
            user_id,
            device: DeviceKind::Cookie,
        }),
        Event::PasswordBreached(PasswordBreached { user_id }),
        Event::PasswordChanged(PasswordChanged {
            user_id,
            method: PasswordChangeMethod::Reset,
        }),
        Event::MfaAdded(MfaChanged {
            user_id,
            method: MfaMethod::Totp,
        }),
        Event::MfaRemoved(MfaChanged {
            user_id,
            method: MfaMethod::RecoveryCodes,
        }),
        Event::IdentityLinked(IdentityLinked {
            user_id,
            provider: ProviderName::new("github").unwrap(),
        }),
        Event::AccountErased(AccountErased { user_id }),
    ]
}

fn body_string(event: Event) -> String {
    String::from_utf8(doc_envelope(event).to_body().unwrap()).unwrap()
}

#[test]
fn the_doc_shows_the_body_the_crate_builds_for_every_event_type() {
    let doc = webhooks_md();
    let blocks = blocks_after(&doc, "<!-- checked: every line is a body");
    assert_eq!(blocks.len(), 1);
    let doc_bodies: Vec<&str> = blocks[0].lines().collect();
    let built: Vec<String> = doc_events().into_iter().map(body_string).collect();
    assert_eq!(doc_bodies, built);
    for t in Event::TYPES {
        assert!(
            doc.contains(&format!("| `{t}` |")),
            "{t} missing from the events table"
        );
    }
}

#[test]
fn the_worked_examples_are_what_the_crate_signs_and_verifies() {
    for ex in signature_examples() {
        assert_eq!(
            ex.body,
            body_string(doc_events().remove(0)),
            "the example body drifted"
        );
        assert_eq!(ex.signed, format!("{}.{}", ex.t, ex.body));
        assert_eq!(
            sign(&ex.secrets, ex.t, ex.body.as_bytes()).unwrap(),
            ex.header
        );
        assert_eq!(
            verify(
                &ex.secrets,
                &ex.header,
                ex.body.as_bytes(),
                ex.t,
                DEFAULT_WINDOW
            ),
            Ok(())
        );
        // Each line alone verifies too: the receiver may hold either during a rotation.
        for line in ex.secrets.lines() {
            assert_eq!(
                verify(line, &ex.header, ex.body.as_bytes(), ex.t, DEFAULT_WINDOW),
                Ok(())
            );
        }
    }
}

#[test]
fn the_example_headers_in_the_doc_are_the_first_worked_example() {
    let doc = webhooks_md();
    let first = &signature_examples()[0];
    // Once in the headers section, once in the worked example.
    assert_eq!(
        doc.matches(&format!("Portcullis-Signature: {}\n```", first.header))
            .count(),
        2
    );
    assert!(doc.contains(&format!("{}: {EVENT_ID}", EVENT_ID_HEADER)));
    assert!(doc.contains(&format!("{SIGNATURE_HEADER}: t=")));
}

fn parse_duration(s: &str) -> Duration {
    let (n, unit) = s.trim().split_once(' ').unwrap();
    let n: f64 = n.parse().unwrap();
    let secs = match unit {
        "s" => n,
        "min" => n * 60.0,
        "h" => n * 3600.0,
        other => panic!("unit {other}"),
    };
    Duration::from_secs_f64(secs)
}

#[test]
fn the_retry_table_is_next_attempt_and_is_dead() {
    let doc = webhooks_md();
    let start = doc.find("<!-- checked-backoff").unwrap();
    let rows: Vec<Vec<&str>> = doc[start..]
        .lines()
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), MAX_ATTEMPTS as usize);
    for (i, row) in rows.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap();
        assert_eq!(row[0], n.to_string());
        if n == MAX_ATTEMPTS {
            assert_eq!(row[1], "dead");
            assert!(is_dead(n, Some(500)) && is_dead(n, None));
            continue;
        }
        assert!(!is_dead(n, Some(500)));
        assert_eq!(parse_duration(row[1]), next_attempt(n, 0.5), "row {n}");
        let (lo, hi) = row[2].split_once('–').unwrap();
        let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_secs(1);
        assert!(
            close(parse_duration(lo), next_attempt(n, 0.0)),
            "row {n} low"
        );
        assert!(
            close(parse_duration(hi), next_attempt(n, 0.999_999_9)),
            "row {n} high"
        );
    }
}

#[test]
fn the_receivers_in_the_doc_are_the_example_files_verbatim() {
    let doc = webhooks_md();
    let blocks = blocks_after(&doc, "<!-- checked: webhook/tests/docs.rs finds this block");
    assert_eq!(blocks.len(), 2);
    let python = std::fs::read_to_string(repo_path("docs/examples/webhook_receiver.py")).unwrap();
    let rust = std::fs::read_to_string(repo_path("docs/examples/webhook_receiver.rs")).unwrap();
    assert!(
        blocks[0].contains("def verify("),
        "the first block is the Python receiver"
    );
    assert!(
        python.contains(&blocks[0]),
        "the Python block differs from the example file"
    );
    assert!(
        blocks[1].contains("pub fn handle<"),
        "the second block is the Rust receiver"
    );
    assert!(
        rust.contains(&blocks[1]),
        "the Rust block differs from the example file"
    );
}
