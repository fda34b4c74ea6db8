//! The authorization request (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2.1), as pure
//! functions: [`validate`] turns the raw parameters into an [`AuthorizationRequest`] or says
//! how to refuse, and [`decide`] says what a valid request needs given the browser's session.
//!
//! Refusals follow RFC 6749 §4.1.2.1: while the client or its redirect URI is unknown, missing,
//! repeated or not registered byte for byte, the user gets an error page and is **never**
//! redirected (no open redirector); once both are established, every other error goes back to
//! the client on its redirect URI, with `state`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::clients::{Client, ClientRegistry};
use super::{Repeated, single_param};
use portcullis_crds::client::GrantType;

/// How the response goes back to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseMode {
    /// Parameters in the redirect URI's query (the default for `code`).
    Query,
    /// An auto-submitting HTML form POSTed to the redirect URI (OAuth 2.0 Form Post Response
    /// Mode).
    FormPost,
}

/// A valid authorization request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    /// The client.
    pub client_id: String,
    /// Its registered redirect URI this request named (the token request must repeat it).
    pub redirect_uri: String,
    /// How to answer.
    pub response_mode: ResponseMode,
    /// Opaque client value, echoed.
    pub state: Option<String>,
    /// Requested scopes, in request order, each once.
    pub scopes: Vec<String>,
    /// Echoed in the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// `prompt=none`: never show a page; fail instead.
    pub prompt_none: bool,
    /// `prompt=login`: authenticate again even with a session.
    pub prompt_login: bool,
    /// `prompt=consent`: ask the user for consent again.
    pub prompt_consent: bool,
    /// Maximum age of the authentication, seconds.
    pub max_age: Option<u64>,
    /// Pre-fills the login form.
    pub login_hint: Option<String>,
}

impl AuthorizationRequest {
    /// The scopes, space-separated.
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }
}

/// An error for the client, sent to its redirect URI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRedirect {
    /// Where to.
    pub redirect_uri: String,
    /// How.
    pub response_mode: ResponseMode,
    /// The request's `state`.
    pub state: Option<String>,
    /// RFC 6749 / OpenID Connect error code.
    pub error: &'static str,
    /// For the client's developers.
    pub description: String,
}

/// How an authorization request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An error page for the user: the client or redirect URI cannot be trusted.
    Page {
        /// What is wrong, for the user.
        description: String,
    },
    /// An error for the client, on its redirect URI.
    Redirect(ErrorRedirect),
}

/// Parameters this server refuses by name, with their error codes (OIDC Core §3.1.2.6).
const UNSUPPORTED: [(&str, &str); 3] = [
    ("request", "request_not_supported"),
    ("request_uri", "request_uri_not_supported"),
    ("registration", "registration_not_supported"),
];

/// A PKCE S256 challenge: base64url of a SHA-256, 43 characters (RFC 7636 §4.2).
fn is_s256_challenge(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Upper bounds on the parameters that are stored with a pending request or a code and echoed
/// (M1: an unauthenticated request must not park kilobytes in the store). No real relying party
/// comes near them: libraries send 22–64 characters of `state` and `nonce`, an e-mail address is at
/// most 254 bytes (RFC 5321), and four scopes fit in 40. Keycloak and Hydra bound the whole
/// request URI instead; these limits are the per-parameter equivalent, stated in each refusal.
const MAX_STATE: usize = 1024;
/// See [`MAX_STATE`].
const MAX_NONCE: usize = 512;
/// See [`MAX_STATE`].
const MAX_LOGIN_HINT: usize = 256;
/// See [`MAX_STATE`].
const MAX_SCOPE: usize = 1024;

fn page(description: &str) -> Refusal {
    Refusal::Page {
        description: description.to_owned(),
    }
}

/// Validates an authorization request's parameters (query or form, in order) against the
/// realm's clients.
pub fn validate(
    params: &[(String, String)],
    clients: &ClientRegistry,
) -> Result<AuthorizationRequest, Refusal> {
    let client_id = single_param(params, "client_id")
        .map_err(|Repeated| page("The request names its client more than once."))?
        .ok_or_else(|| page("The request does not name its application (client_id)."))?;
    let client = clients
        .get(client_id)
        .ok_or_else(|| page("The application that sent you here is not registered."))?;
    let redirect_uri = single_param(params, "redirect_uri")
        .map_err(|Repeated| page("The request names its redirect URI more than once."))?
        .ok_or_else(|| page("The request does not say where to return (redirect_uri)."))?;
    if !client.has_redirect_uri(redirect_uri) {
        return Err(page(
            "The return address of this request is not registered for the application.",
        ));
    }
    let state = single_param(params, "state").ok().flatten();
    let state_too_long = state.is_some_and(|s| s.len() > MAX_STATE);
    // An oversized state is not echoed: the refusal would carry it back in the Location.
    let state = state.filter(|_| !state_too_long).map(str::to_owned);
    let response_mode = match single_param(params, "response_mode") {
        Ok(None | Some("query")) => Ok(ResponseMode::Query),
        Ok(Some("form_post")) => Ok(ResponseMode::FormPost),
        _ => Err("response_mode must be query or form_post"),
    };
    let fail = |error: &'static str, description: &str| {
        Refusal::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.to_owned(),
            response_mode: response_mode.unwrap_or(ResponseMode::Query),
            state: state.clone(),
            error,
            description: description.to_owned(),
        })
    };
    let response_mode = response_mode.map_err(|d| fail("invalid_request", d))?;
    if state_too_long {
        return Err(fail("invalid_request", "state is longer than 1024 bytes"));
    }
    // Descriptions are fixed texts: nothing the request chose is echoed to the client, whose
    // pages may show `error_description` (content injection; RFC 6749 §4.1.2.1 charset).
    if params.iter().filter(|(_, v)| !v.is_empty()).any(|(k, _)| {
        params
            .iter()
            .filter(|(n, v)| n == k && !v.is_empty())
            .count()
            > 1
    }) {
        return Err(fail(
            "invalid_request",
            "a parameter is repeated; send each parameter once",
        ));
    }
    let get = |name: &str| single_param(params, name).ok().flatten();
    for (name, max, description) in [
        ("nonce", MAX_NONCE, "nonce is longer than 512 bytes"),
        (
            "login_hint",
            MAX_LOGIN_HINT,
            "login_hint is longer than 256 bytes",
        ),
        ("scope", MAX_SCOPE, "scope is longer than 1024 bytes"),
    ] {
        if get(name).is_some_and(|value| value.len() > max) {
            return Err(fail("invalid_request", description));
        }
    }
    for (name, error) in UNSUPPORTED {
        if get(name).is_some() {
            return Err(fail(
                error,
                &format!("the {name} parameter is not supported"),
            ));
        }
    }
    match get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        None => return Err(fail("invalid_request", "response_type is required")),
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(fail(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        ));
    }
    let scopes = scopes(get("scope"), client).map_err(|d| fail("invalid_scope", &d))?;
    let code_challenge = pkce(get("code_challenge"), get("code_challenge_method"), client)
        .map_err(|d| fail("invalid_request", d))?;
    // RFC 9700 §2.1.1: without PKCE, only an ID token's nonce stops code injection; a
    // confidential client must send one of the two.
    if code_challenge.is_none() && !(scopes.iter().any(|s| s == "openid") && get("nonce").is_some())
    {
        return Err(fail(
            "invalid_request",
            "send code_challenge (PKCE, S256) or, with scope openid, a nonce",
        ));
    }
    let prompts: Vec<&str> = get("prompt").unwrap_or_default().split(' ').collect();
    let prompt_none = prompts.contains(&"none");
    if prompt_none && prompts.len() > 1 {
        return Err(fail(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    if prompts
        .iter()
        .any(|p| !["", "none", "login", "consent", "select_account"].contains(p))
    {
        return Err(fail(
            "invalid_request",
            "unknown prompt value (none, login, consent, select_account)",
        ));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| fail("invalid_request", "max_age must be a number of seconds"))?,
        ),
    };
    Ok(AuthorizationRequest {
        client_id: client.id().to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        response_mode,
        state,
        scopes,
        nonce: get("nonce").map(str::to_owned),
        code_challenge,
        prompt_none,
        prompt_login: prompts.contains(&"login"),
        prompt_consent: prompts.contains(&"consent"),
        max_age,
        login_hint: get("login_hint").map(str::to_owned),
    })
}

/// The requested scopes, each once, all of them allowed to the client.
fn scopes(requested: Option<&str>, client: &Client) -> Result<Vec<String>, String> {
    let requested = requested.ok_or("scope is required (e.g. openid)")?;
    let mut scopes: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !client.spec.scopes.iter().any(|s| s == scope) {
            return Err("a requested scope is not allowed to this client".to_owned());
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.is_empty() {
        return Err("scope is required (e.g. openid)".to_owned());
    }
    Ok(scopes)
}

/// The PKCE challenge: S256 only (a missing method means `plain`, RFC 7636 §4.3, which is
/// refused), required for public clients.
fn pkce(
    challenge: Option<&str>,
    method: Option<&str>,
    client: &Client,
) -> Result<Option<String>, &'static str> {
    match (challenge, method) {
        (None, None) if client.is_confidential() => Ok(None),
        (None, None) => Err("a public client must use PKCE: send code_challenge with S256"),
        (None, Some(_)) => Err("code_challenge_method without code_challenge"),
        (Some(_), None | Some("plain")) => Err("only code_challenge_method=S256 is supported"),
        (Some(challenge), Some("S256")) if is_s256_challenge(challenge) => {
            Ok(Some(challenge.to_owned()))
        }
        (Some(_), Some("S256")) => Err("code_challenge must be 43 base64url characters (S256)"),
        (Some(_), Some(_)) => Err("only code_challenge_method=S256 is supported"),
    }
}

/// What is known about the user's consent to the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsentFacts {
    /// First-party clients need no consent (unless `prompt=consent` asks for it).
    pub first_party: bool,
    /// The scopes the user allowed this client before, if any.
    pub granted: Option<Vec<String>>,
    /// The user allowed this very request just now.
    pub just_given: bool,
}

/// What a valid request needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Show the login page.
    Login,
    /// Show the consent page.
    Consent,
    /// Issue a code for the session.
    Issue,
    /// Refuse on the redirect URI with this error (e.g. `login_required` under `prompt=none`).
    Refuse(&'static str),
}

/// What a valid `request` needs, given when the browser's session authenticated (`None`: no
/// session), whether that authentication was just made for this request, and the user's
/// consent. Login comes first; then consent, needed for a client that is not first-party until
/// the user allowed every requested scope (remembered), and for any client under
/// `prompt=consent` until given for this request. Under `prompt=none` a needed page is an
/// error instead (`login_required`, `consent_required`; OpenID Connect Core §3.1.2.6).
pub fn decide(
    request: &AuthorizationRequest,
    session_auth_time: Option<OffsetDateTime>,
    fresh_login: bool,
    consent: &ConsentFacts,
    now: OffsetDateTime,
) -> Decision {
    let needs_login = match session_auth_time {
        None => true,
        Some(_) if fresh_login => false,
        Some(auth_time) => {
            request.prompt_login
                || request.max_age.is_some_and(|max_age| {
                    // Compared at full precision, so `max_age=0` asks for a login unless one was
                    // made for this very request (whole seconds let 0.9 s pass as 0).
                    let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
                    now - auth_time > time::Duration::seconds(max_age)
                })
        }
    };
    if needs_login {
        return if request.prompt_none {
            Decision::Refuse("login_required")
        } else {
            Decision::Login
        };
    }
    let covered = consent.granted.as_ref().is_some_and(|granted| {
        request
            .scopes
            .iter()
            .all(|scope| granted.iter().any(|g| g == scope))
    });
    let needs_consent =
        !consent.just_given && (request.prompt_consent || (!consent.first_party && !covered));
    match (needs_consent, request.prompt_none) {
        (false, _) => Decision::Issue,
        (true, true) => Decision::Refuse("consent_required"),
        (true, false) => Decision::Consent,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use portcullis_crds::client::{ClientType, EffectiveClient};

    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn clients() -> ClientRegistry {
        let spec = |id: &str, client_type| EffectiveClient {
            name: id.into(),
            namespace: None,
            client_id: id.into(),
            client_type,
            redirect_uris: vec!["https://app.example.com/cb?tenant=1".into()],
            post_logout_redirect_uris: Vec::new(),
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: ["openid", "profile", "email"].map(String::from).to_vec(),
            first_party: true,
        };
        let mut machine = spec("machine", ClientType::Confidential);
        machine.grant_types = vec![GrantType::ClientCredentials];
        let secrets = BTreeMap::from([
            ("web".to_owned(), "s".to_owned()),
            ("machine".to_owned(), "s".to_owned()),
        ]);
        ClientRegistry::new(
            &[
                spec("web", ClientType::Confidential),
                spec("spa", ClientType::Public),
                machine,
            ],
            &secrets,
        )
        .unwrap()
    }

    fn good(client: &str) -> Vec<(&'static str, String)> {
        vec![
            ("client_id", client.to_owned()),
            ("redirect_uri", "https://app.example.com/cb?tenant=1".into()),
            ("response_type", "code".into()),
            ("scope", "openid email".into()),
            ("state", "xyz".into()),
            ("nonce", "n1".into()),
            ("code_challenge", CHALLENGE.into()),
            ("code_challenge_method", "S256".into()),
        ]
    }

    fn with(client: &str, change: &[(&'static str, &str)]) -> Vec<(String, String)> {
        let mut pairs = good(client);
        for (name, value) in change {
            pairs.retain(|(k, _)| k != name);
            if !value.is_empty() {
                pairs.push((name, (*value).to_owned()));
            }
        }
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn error_of(result: Result<AuthorizationRequest, Refusal>) -> (&'static str, Option<String>) {
        match result {
            Err(Refusal::Redirect(e)) => {
                assert_eq!(e.redirect_uri, "https://app.example.com/cb?tenant=1");
                (e.error, e.state)
            }
            other => panic!("expected an error redirect, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_request_is_understood() {
        let request =
            validate(&with("spa", &[("login_hint", "a@example.com")]), &clients()).unwrap();
        assert_eq!(request.client_id, "spa");
        assert_eq!(request.scope(), "openid email");
        assert_eq!(request.code_challenge.as_deref(), Some(CHALLENGE));
        assert_eq!(request.response_mode, ResponseMode::Query);
        assert_eq!(request.login_hint.as_deref(), Some("a@example.com"));
        assert_eq!(request.nonce.as_deref(), Some("n1"));
    }

    #[test]
    fn an_unknown_client_or_unregistered_redirect_uri_gets_a_page_never_a_redirect() {
        let registry = clients();
        for change in [
            vec![("client_id", "nobody")],
            vec![("client_id", "")],
            vec![("redirect_uri", "")],
            vec![("redirect_uri", "https://app.example.com/cb?tenant=1/")],
            vec![("redirect_uri", "https://app.example.com/cb?tenant=2")],
            vec![("redirect_uri", "https://app.example.com/cb")],
            vec![("redirect_uri", "https://APP.example.com/cb?tenant=1")],
            vec![("redirect_uri", "http://app.example.com/cb?tenant=1")],
            vec![("redirect_uri", "https://evil.example/cb")],
        ] {
            let result = validate(&with("web", &change), &registry);
            assert!(
                matches!(result, Err(Refusal::Page { .. })),
                "{change:?}: {result:?}"
            );
        }
        let mut twice = with("web", &[]);
        twice.push(("redirect_uri".into(), "https://evil.example/cb".into()));
        assert!(matches!(
            validate(&twice, &registry),
            Err(Refusal::Page { .. })
        ));
    }

    #[test]
    fn errors_after_a_valid_redirect_uri_go_back_to_the_client_with_state() {
        let registry = clients();
        let cases: [(&[(&'static str, &str)], &str); 11] = [
            (&[("response_type", "token")], "unsupported_response_type"),
            (&[("response_type", "")], "invalid_request"),
            (&[("scope", "openid admin")], "invalid_scope"),
            (&[("scope", "")], "invalid_scope"),
            (&[("code_challenge_method", "")], "invalid_request"),
            (&[("code_challenge_method", "plain")], "invalid_request"),
            (&[("code_challenge", "short")], "invalid_request"),
            (&[("prompt", "none login")], "invalid_request"),
            (&[("max_age", "soon")], "invalid_request"),
            (&[("request", "eyJ...")], "request_not_supported"),
            (&[("request_uri", "https://x")], "request_uri_not_supported"),
        ];
        for (change, expected) in cases {
            let (error, state) = error_of(validate(&with("web", change), &registry));
            assert_eq!(error, expected, "{change:?}");
            assert_eq!(state.as_deref(), Some("xyz"));
        }
    }

    #[test]
    fn an_oversized_state_nonce_login_hint_or_scope_is_invalid_request() {
        let registry = clients();
        let long = |n: usize| "a".repeat(n);
        let at_limit = [
            ("state", long(1024)),
            ("nonce", long(512)),
            ("login_hint", long(256)),
        ];
        for (name, value) in &at_limit {
            assert!(
                validate(&with("web", &[(*name, value.as_str())]), &registry).is_ok(),
                "{name}"
            );
        }
        for (name, value) in [
            ("nonce", long(513)),
            ("login_hint", long(257)),
            ("scope", format!("openid {}", long(1018))),
        ] {
            let (error, state) =
                error_of(validate(&with("web", &[(name, value.as_str())]), &registry));
            assert_eq!(error, "invalid_request", "{name}");
            assert_eq!(state.as_deref(), Some("xyz"));
        }
        let (error, state) = error_of(validate(&with("web", &[("state", &long(1025))]), &registry));
        assert_eq!(error, "invalid_request");
        assert_eq!(state, None, "an oversized state is not echoed");
    }

    #[test]
    fn an_error_description_never_echoes_request_text() {
        let registry = clients();
        let evil = "<b>Call+1-555</b>\"";
        let mut repeated = with("web", &[]);
        repeated.push((evil.into(), "1".into()));
        repeated.push((evil.into(), "2".into()));
        for request in [
            with("web", &[("prompt", evil)]),
            with("web", &[("scope", &format!("openid {evil}"))]),
            repeated,
        ] {
            let Err(Refusal::Redirect(e)) = validate(&request, &registry) else {
                panic!("an error redirect expected");
            };
            assert!(!e.description.contains("555"), "{}", e.description);
            assert!(
                e.description
                    .bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'),
                "{}",
                e.description
            );
        }
    }

    #[test]
    fn a_confidential_client_without_pkce_needs_a_nonce() {
        let registry = clients();
        let without = [("code_challenge", ""), ("code_challenge_method", "")];
        let no_nonce = [without[0], without[1], ("nonce", "")];
        assert_eq!(
            error_of(validate(&with("web", &no_nonce), &registry)).0,
            "invalid_request"
        );
        assert!(validate(&with("web", &without), &registry).is_ok());
    }

    #[test]
    fn a_public_client_must_use_pkce_and_a_confidential_one_may() {
        let registry = clients();
        let without = [("code_challenge", ""), ("code_challenge_method", "")];
        assert_eq!(
            error_of(validate(&with("spa", &without), &registry)).0,
            "invalid_request"
        );
        let request = validate(&with("web", &without), &registry).unwrap();
        assert_eq!(request.code_challenge, None);
    }

    #[test]
    fn a_repeated_parameter_is_invalid_request_and_an_empty_one_absent() {
        let mut twice = with("web", &[]);
        twice.push(("scope".into(), "openid".into()));
        assert_eq!(error_of(validate(&twice, &clients())).0, "invalid_request");
        let mut empty = with("web", &[]);
        empty.push(("login_hint".into(), String::new()));
        assert_eq!(validate(&empty, &clients()).unwrap().login_hint, None);
    }

    #[test]
    fn a_client_without_the_code_grant_is_unauthorized_client() {
        let mut pairs = with("machine", &[]);
        pairs.retain(|(k, _)| k != "redirect_uri");
        pairs.push((
            "redirect_uri".into(),
            "https://app.example.com/cb?tenant=1".into(),
        ));
        assert_eq!(
            error_of(validate(&pairs, &clients())).0,
            "unauthorized_client"
        );
    }

    #[test]
    fn form_post_is_chosen_by_response_mode_and_an_unknown_mode_refused_by_query() {
        let registry = clients();
        let request = validate(&with("web", &[("response_mode", "form_post")]), &registry).unwrap();
        assert_eq!(request.response_mode, ResponseMode::FormPost);
        match validate(&with("web", &[("response_mode", "fragment")]), &registry) {
            Err(Refusal::Redirect(e)) => {
                assert_eq!(e.response_mode, ResponseMode::Query);
                assert_eq!(e.error, "invalid_request");
            }
            other => panic!("{other:?}"),
        }
    }

    fn request(change: &[(&'static str, &str)]) -> AuthorizationRequest {
        validate(&with("web", change), &clients()).unwrap()
    }

    #[test]
    fn without_a_session_the_user_logs_in_unless_prompt_is_none() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            decide(&request(&[]), None, false, &first_party(), now),
            Decision::Login
        );
        assert_eq!(
            decide(
                &request(&[("prompt", "none")]),
                None,
                false,
                &first_party(),
                now
            ),
            Decision::Refuse("login_required")
        );
        assert_eq!(
            decide(&request(&[]), Some(now), false, &first_party(), now),
            Decision::Issue
        );
    }

    fn first_party() -> ConsentFacts {
        ConsentFacts {
            first_party: true,
            ..ConsentFacts::default()
        }
    }

    #[test]
    fn a_third_party_client_needs_consent_until_every_scope_was_allowed() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let asked = request(&[]);
        let mut consent = ConsentFacts::default();
        assert_eq!(
            decide(&asked, Some(now), false, &consent, now),
            Decision::Consent
        );
        consent.granted = Some(vec!["openid".into()]);
        assert_eq!(
            decide(&asked, Some(now), false, &consent, now),
            Decision::Consent,
            "email not allowed yet"
        );
        consent.granted = Some(vec!["email".into(), "openid".into(), "profile".into()]);
        assert_eq!(
            decide(&asked, Some(now), false, &consent, now),
            Decision::Issue
        );
        assert_eq!(
            decide(
                &request(&[("prompt", "none")]),
                Some(now),
                false,
                &ConsentFacts::default(),
                now
            ),
            Decision::Refuse("consent_required")
        );
        assert_eq!(
            decide(&asked, None, false, &ConsentFacts::default(), now),
            Decision::Login,
            "login comes first"
        );
    }

    #[test]
    fn prompt_consent_asks_even_a_first_party_client_until_given_for_the_request() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let asked = request(&[("prompt", "consent")]);
        assert_eq!(
            decide(&asked, Some(now), false, &first_party(), now),
            Decision::Consent
        );
        let given = ConsentFacts {
            just_given: true,
            ..first_party()
        };
        assert_eq!(
            decide(&asked, Some(now), false, &given, now),
            Decision::Issue
        );
        assert_eq!(
            decide(&request(&[]), Some(now), false, &first_party(), now),
            Decision::Issue
        );
    }

    #[test]
    fn max_age_zero_asks_for_a_login_even_half_a_second_after_one() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let zero = request(&[("max_age", "0")]);
        let just_before = now - Duration::from_millis(500);
        assert_eq!(
            decide(&zero, Some(just_before), false, &first_party(), now),
            Decision::Login
        );
        assert_eq!(
            decide(&zero, Some(just_before), true, &first_party(), now),
            Decision::Issue
        );
    }

    #[test]
    fn prompt_login_and_max_age_ask_again_until_a_fresh_login() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let earlier = now - Duration::from_secs(301);
        let max_age = request(&[("max_age", "300")]);
        assert_eq!(
            decide(&max_age, Some(earlier), false, &first_party(), now),
            Decision::Login
        );
        assert_eq!(
            decide(
                &max_age,
                Some(now - Duration::from_secs(300)),
                false,
                &first_party(),
                now
            ),
            Decision::Issue
        );
        assert_eq!(
            decide(&max_age, Some(earlier), true, &first_party(), now),
            Decision::Issue
        );
        let login = request(&[("prompt", "login")]);
        assert_eq!(
            decide(&login, Some(now), false, &first_party(), now),
            Decision::Login
        );
        assert_eq!(
            decide(&login, Some(now), true, &first_party(), now),
            Decision::Issue
        );
        let none_max_age = request(&[("prompt", "none"), ("max_age", "0")]);
        assert_eq!(
            decide(&none_max_age, Some(earlier), false, &first_party(), now),
            Decision::Refuse("login_required")
        );
    }
}
