//! A second relying-party library, in another language: openid-client 6 (Node.js, unmodified,
//! pinned by e2e/node/package-lock.json) runs the whole code flow with PKCE against the built
//! server over TLS (`e2e/node/rp.mjs`, trusting the test CA through `NODE_EXTRA_CA_CERTS`):
//! discovery, the hosted login page filled in with fetch, the code grant with the expected
//! nonce and state, UserInfo, refresh, introspection, revocation, RP-initiated logout. The
//! script reports what it saw as JSON; this test asserts on it.
//!
//! Without node or the npm packages (`npm ci` in e2e/node; scripts/test.sh runs it) the test
//! prints a loud SKIPPED line and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::process::Command;

use portcullis_e2e::realm::{PASSWORD, Realm};
use portcullis_e2e::{repo_root, skipped};
use serde_json::{Value, json};

const EMAIL: &str = "grace@example.com";
/// Never contacted: the script reads the code from the realm's redirect.
const REDIRECT: &str = "http://localhost:7777/cb";
const BYE: &str = "http://localhost:7777/bye";

/// A confidential first-party client (no consent page: that is the browser test's part).
fn registration() -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {{name: node-app}}
spec:
  realmRef: {{name: REALM}}
  clientId: node-app
  type: Confidential
  firstParty: true
  redirectUris: [\"{REDIRECT}\"]
  postLogoutRedirectUris: [\"{BYE}\"]
  grantTypes: [authorization_code, refresh_token]
  scopes: [openid, profile, email, offline_access]
"
    )
}

/// Why the Node RP cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {}
        _ => return Some("no `node` on PATH".to_owned()),
    }
    let package = repo_root().join("e2e/node/node_modules/openid-client/package.json");
    (!package.is_file()).then(|| {
        format!(
            "{} is missing: run `npm ci` in e2e/node (scripts/test.sh does)",
            package.display()
        )
    })
}

/// Runs rp.mjs against `realm` and returns its report.
fn run_rp(realm: &Realm) -> Value {
    let output = Command::new("node")
        .arg("rp.mjs")
        .current_dir(repo_root().join("e2e/node"))
        .env("NODE_EXTRA_CA_CERTS", &realm.ca_file)
        .env("ISSUER", &realm.issuer)
        .env("CLIENT_ID", "node-app")
        .env("CLIENT_SECRET", realm.client_secret("node-app"))
        .env("REDIRECT_URI", REDIRECT)
        .env("POST_LOGOUT_REDIRECT_URI", BYE)
        .env("EMAIL", EMAIL)
        .env("PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rp.mjs failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "rp.mjs printed no JSON report ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_signs_in_with_pkce_refreshes_introspects_revokes_and_logs_out() {
    if let Some(reason) = skip_reason() {
        skipped("Node RP test (openid-client)", &reason);
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let realm = Realm::start(&[registration()]).await;
    realm.account(EMAIL).await;
    // Blocks this test's thread while node runs; the server is a process of its own.
    let report = run_rp(&realm);
    eprintln!("rp.mjs reported: {report:#}");
    let issuer = realm.issuer.as_str();

    // Discovery: the issuer byte for byte, S256, RFC 9207.
    assert_eq!(report["discovery"]["issuer"], issuer);
    assert_eq!(
        report["discovery"]["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        report["discovery"]["authorization_response_iss_parameter_supported"],
        true
    );
    // The hosted login page sent the browser back to the registered URI with a code.
    assert_eq!(report["callback"]["origin_and_path"], REDIRECT);
    assert_eq!(report["callback"]["has_code"], true);
    // The library validated the ID token (signature, iss, aud, nonce, state, iss parameter).
    let id_token = &report["id_token"];
    assert_eq!(id_token["iss"], issuer);
    assert_eq!(id_token["aud"], "node-app");
    assert_eq!(id_token["has_auth_time"], true);
    assert_eq!(id_token["has_sid"], true);
    // oauth4webapi lower-cases token_type (it is case-insensitive, RFC 6749 §5.1).
    assert_eq!(report["token_type"], "bearer");
    assert_eq!(report["scope"], "openid profile email offline_access");
    assert_eq!(report["has_refresh_token"], true, "offline_access");
    // UserInfo answers for the ID token's subject with the email scope's claims.
    assert_eq!(report["userinfo"]["sub"], id_token["sub"]);
    assert_eq!(report["userinfo"]["email"], EMAIL);
    assert_eq!(report["userinfo"]["email_verified"], true);
    // A refresh rotates the refresh token and issues a new access token.
    assert_eq!(report["refresh"]["rotated"], true, "{}", report["refresh"]);
    assert_eq!(report["refresh"]["new_access_token"], true);
    assert_eq!(
        report["refresh"]["sub"], id_token["sub"],
        "the refreshed ID token is the same person's"
    );
    // Introspection (client-authenticated) says the new access token is active, for whom.
    assert_eq!(report["introspection"]["active"], true);
    assert_eq!(report["introspection"]["sub"], id_token["sub"]);
    assert_eq!(report["introspection"]["client_id"], "node-app");
    // Revoking the refresh token ends the grant: its access token and the refresh token die.
    assert_eq!(
        report["revocation"],
        json!({"access_token_active": false, "refresh": "invalid_grant"})
    );
    // RP-initiated logout with the ID token naming the session: straight back, state echoed,
    // and the browser's session is over.
    assert_eq!(report["logout"]["status"], 303, "{}", report["logout"]);
    assert_eq!(report["logout"]["to"], BYE);
    assert_eq!(report["logout"]["state_echoed"], true);
    assert_eq!(
        report["after_logout"],
        json!({"status": 303, "error": "login_required"})
    );
    realm.stop().await;
}
