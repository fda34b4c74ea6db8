//! An independent implementation agrees with the crate: the Python receiver of
//! docs/examples/webhook_receiver.py (standard library only) accepts what `sign` writes and
//! refuses a wrong secret, a changed body, an old or future timestamp, a replay and garbage.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{repo_path, signature_examples};
use portcullis_webhook::*;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

const NOW: i64 = 1_767_225_600;
/// Secret file, `Portcullis-Signature`, body, receiver clock.
type Delivery = (String, String, String, i64);

const SECRET: &str = "q9Vt2xKp7Lm4Rz8Nw3Hc6Jf1Yb5Ds0Ge2Ua7Wi9Ox4E";

/// True (skip) when python3 is missing, unless the check is required: in CI
/// (`CI` set) or with `PORTCULLIS_REQUIRE_INTEROP=1`, a missing Python fails the test.
fn skip_without_python() -> bool {
    if python_available() {
        return false;
    }
    let msg = "SKIPPED: python3 not found; the Python receiver was not checked";
    let required = std::env::var_os("CI").is_some()
        || std::env::var("PORTCULLIS_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{msg} (required: CI or PORTCULLIS_REQUIRE_INTEROP=1 is set)"
    );
    println!("{msg}");
    eprintln!("{msg}");
    true
}

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Feeds the deliveries to one `--check` run (one replay guard) and returns its answers.
fn run_python(deliveries: &[Delivery]) -> Vec<String> {
    let lines: Vec<_> = deliveries
        .iter()
        .map(|(secrets, header, body, now)| {
            json!({"secrets": secrets, "header": header, "body": body, "now": now})
        })
        .collect();
    run_python_lines(&lines)
}

/// Feeds `--check` input lines as given (e.g. with `fail_hand_off`) and returns its answers.
fn run_python_lines(lines: &[serde_json::Value]) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg(repo_path("docs/examples/webhook_receiver.py"))
        .arg("--check")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Python receiver failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn body(minutes: u32, id: u128) -> String {
    let event = Event::AccountLocked(AccountLocked {
        user_id: Uuid::from_u128(7),
        minutes,
    });
    let env = Envelope::new(
        Uuid::from_u128(id),
        OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
        RealmName::new("acme").unwrap(),
        event,
    );
    String::from_utf8(env.to_body().unwrap()).unwrap()
}

fn signed(secrets: &str, t: i64, body: &str) -> String {
    sign(secrets, t, body.as_bytes()).unwrap()
}

#[test]
fn the_python_receiver_accepts_the_crates_signatures_and_refuses_forgeries_and_replays() {
    if skip_without_python() {
        return;
    }
    let b1 = body(15, 1);
    let tampered = b1.replace(r#""minutes":15"#, r#""minutes":1500"#);
    let b2 = body(15, 2);
    let b3 = body(15, 3);
    let b4 = body(15, 4);
    let cases: Vec<(&str, Delivery, &str)> = vec![
        (
            "good",
            (SECRET.into(), signed(SECRET, NOW, &b1), b1.clone(), NOW),
            "204 accepted",
        ),
        (
            "wrong secret",
            (
                SECRET.into(),
                signed("not-the-secret", NOW, &b2),
                b2.clone(),
                NOW,
            ),
            "401 signature",
        ),
        (
            "a base64 secret is its text, not its decoding",
            (
                "c2VjcmV0".into(), // base64 of "secret"
                signed("secret", NOW, &b2),
                b2.clone(),
                NOW,
            ),
            "401 signature",
        ),
        (
            "tampered body",
            (SECRET.into(), signed(SECRET, NOW, &b2), tampered, NOW),
            "401 signature",
        ),
        (
            "old timestamp",
            (
                SECRET.into(),
                signed(SECRET, NOW - 301, &b2),
                b2.clone(),
                NOW,
            ),
            "401 window",
        ),
        (
            "future timestamp",
            (
                SECRET.into(),
                signed(SECRET, NOW + 301, &b2),
                b2.clone(),
                NOW,
            ),
            "401 window",
        ),
        (
            "edge of the window",
            (
                SECRET.into(),
                signed(SECRET, NOW - 300, &b2),
                b2.clone(),
                NOW,
            ),
            "204 accepted",
        ),
        (
            "exact replay",
            (
                SECRET.into(),
                signed(SECRET, NOW, &b1),
                b1.clone(),
                NOW + 100,
            ),
            "204 duplicate",
        ),
        (
            "re-signed replay of the same id",
            (
                SECRET.into(),
                signed(SECRET, NOW + 200, &b1),
                b1.clone(),
                NOW + 200,
            ),
            "204 duplicate",
        ),
        (
            "sender rotating: two lines, receiver has the new one",
            (
                "new-secret".into(),
                signed("old-secret\nnew-secret\n", NOW, &b3),
                b3.clone(),
                NOW,
            ),
            "204 accepted",
        ),
        (
            "receiver rotating: two lines, sender has the old one",
            (
                "old-secret\r\nnew-secret".into(),
                signed("old-secret", NOW, &b4),
                b4.clone(),
                NOW,
            ),
            "204 accepted",
        ),
        (
            "the same id after twice the window is forgotten",
            (
                SECRET.into(),
                signed(SECRET, NOW + 601, &b1),
                b1.clone(),
                NOW + 601,
            ),
            "204 accepted",
        ),
        (
            "no secret",
            ("\n".into(), signed(SECRET, NOW, &b4), b4.clone(), NOW),
            "401 no_secret",
        ),
    ];
    let deliveries: Vec<_> = cases.iter().map(|(_, d, _)| d.clone()).collect();
    let answers = run_python(&deliveries);
    assert_eq!(answers.len(), cases.len(), "{answers:?}");
    for ((name, (secrets, header, body, now), want), got) in cases.iter().zip(&answers) {
        assert_eq!(got, want, "{name}");
        // The crate and the Python receiver agree on the signature verdict.
        let rust = verify(secrets, header, body.as_bytes(), *now, DEFAULT_WINDOW);
        assert_eq!(
            rust.is_ok(),
            got.starts_with("204"),
            "{name}: crate says {rust:?}"
        );
    }
}

#[test]
fn the_python_receiver_refuses_the_headers_the_crate_refuses() {
    if skip_without_python() {
        return;
    }
    let b = body(15, 9);
    let good = signed(SECRET, NOW, &b);
    let sig = good.split_once(",v1=").unwrap().1;
    let headers = vec![
        String::new(),
        ",".into(),
        format!("{good},"),
        format!("t={NOW}, v1={sig}"),
        format!("T={NOW},v1={sig}"),
        format!("t={NOW},t={NOW},v1={sig}"),
        format!("t=-{NOW},v1={sig}"),
        format!("t=+{NOW},v1={sig}"),
        format!("t=0{NOW},v1={sig}"),
        format!("t={NOW}"),
        format!("t={NOW},v1={}", sig.to_uppercase()),
        format!("t={NOW},v1={sig}00"),
        format!("t={NOW}{},v1={sig}", "0".repeat(12)),
        format!("t={NOW}{}", format!(",v1={sig}").repeat(9)),
        format!("t={NOW},v1={sig},x={}", "a".repeat(5000)),
        format!("t={NOW},v1={sig}\t"),
        format!("t={NOW}é,v1={sig}"),
        format!("t=١٧٦٧٢٢٥٦٠٠,v1={sig}"), // Arabic-Indic digits: not decimal digits here
    ];
    let deliveries: Vec<_> = headers
        .iter()
        .map(|h| (SECRET.to_owned(), h.clone(), b.clone(), NOW))
        .collect();
    let answers = run_python(&deliveries);
    assert_eq!(answers.len(), headers.len(), "{answers:?}");
    for (header, got) in headers.iter().zip(&answers) {
        let rust = verify(SECRET, header, b.as_bytes(), NOW, DEFAULT_WINDOW);
        assert_eq!(
            rust.map_err(|e| e.reason()),
            Err("malformed"),
            "crate: {header:?}"
        );
        assert_eq!(got, "401 malformed", "python: {header:?}");
    }
    // And the good one passes both, so the refusals above are about the header.
    assert_eq!(
        run_python(&[(SECRET.into(), good, b, NOW)]),
        ["204 accepted"]
    );
}

#[test]
fn the_python_receiver_accepts_the_worked_examples_of_the_doc() {
    if skip_without_python() {
        return;
    }
    for ex in signature_examples() {
        // Each example in its own run: they share an event id.
        let answers = run_python(&[(ex.secrets.clone(), ex.header.clone(), ex.body.clone(), ex.t)]);
        assert_eq!(answers, ["204 accepted"], "{ex:?}");
    }
}

#[test]
fn the_python_receiver_retries_a_failed_hand_off_and_takes_new_values_like_the_crate() {
    if skip_without_python() {
        return;
    }
    let b1 = body(15, 1);
    let line = |body: &str, now: i64, fail: bool| {
        json!({"secrets": SECRET, "header": signed(SECRET, now, body), "body": body,
               "now": now, "fail_hand_off": fail})
    };
    // A later version's values and types: the crate reads them as raw events, not errors.
    let event = Event::MfaAdded(MfaChanged {
        user_id: Uuid::from_u128(7),
        method: MfaMethod::Totp,
    });
    let env = Envelope::new(
        Uuid::from_u128(2),
        OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
        RealmName::new("acme").unwrap(),
        event,
    );
    let mfa = String::from_utf8(env.to_body().unwrap()).unwrap();
    let webauthn = mfa.replace(r#""method":"totp""#, r#""method":"webauthn""#);
    let new_type = mfa.replace("mfa.added", "passkey.added").replace(
        "00000000-0000-0000-0000-000000000002",
        "00000000-0000-0000-0000-000000000003",
    );
    for b in [&webauthn, &new_type] {
        assert!(matches!(
            Received::read(b.as_bytes()),
            Ok(Received::Unrecognised(_))
        ));
    }
    let no_id = r#"{"type":"mfa.added"}"#;
    assert!(Received::read(no_id.as_bytes()).is_err());
    let answers = run_python_lines(&[
        line(&b1, NOW, true),
        line(&b1, NOW + 30, false),
        line(&b1, NOW + 31, false),
        line(&webauthn, NOW, false),
        line(&new_type, NOW, false),
        line(no_id, NOW, false),
    ]);
    assert_eq!(
        answers,
        [
            "503 hand_off",
            "204 accepted",
            "204 duplicate",
            "204 accepted",
            "204 accepted",
            "400 body"
        ]
    );
}

#[test]
fn the_python_server_bounds_content_length_before_reading() {
    if skip_without_python() {
        return;
    }
    // body_length decides how much the example server reads: None is answered 413.
    let script = r#"
import importlib.util, sys
spec = importlib.util.spec_from_file_location("receiver", sys.argv[1])
receiver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(receiver)
for value in [None, "", "-1", "abc", "1e3", " 5", "65537", "2000000000", "0", "300", "65536"]:
    print(repr(value), receiver.body_length(value))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(repo_path("docs/examples/webhook_receiver.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "None None",
            "'' None",
            "'-1' None",
            "'abc' None",
            "'1e3' None",
            "' 5' None",
            "'65537' None",
            "'2000000000' None",
            "'0' 0",
            "'300' 300",
            "'65536' 65536",
        ]
    );
}
