//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): a client sends the browser to
//! the end-session endpoint, optionally with the ID token it holds (`id_token_hint`, accepted
//! even expired, §2, but only if this realm signed it), its `client_id`, a
//! `post_logout_redirect_uri` that must be registered for that client byte for byte, and
//! `state`, echoed. The session ends at once only when the hint names it (`sid`); otherwise
//! the user confirms on a page with a CSRF-protected form (a cross-site link must not sign
//! anyone out, §4). A redirect URI that cannot be trusted gets an error page, never a redirect.

use serde::{Deserialize, Serialize};

use super::flow::current_session;
use super::{Repeated, single_param};
use crate::auth::core::Core;
use crate::auth::principal::{AuthMethod, Principal, RequestMeta};
use crate::auth::{AuthError, account, session_auth};
use crate::store::kv::PendingKind;

/// How long a logout waits for the user's confirmation.
const CONFIRM_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// What the browser gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// An error page (no redirect).
    Page(String),
    /// A page asking the user to confirm, with the form's CSRF token.
    Confirm {
        /// Id of the pending logout.
        pending_id: String,
        /// The session's CSRF token.
        csrf: String,
        /// The client asking, when known.
        client: Option<String>,
    },
    /// Done: redirect (the validated URI with `state`), or a signed-out page.
    Done {
        /// Where to go, if the client named a registered URI.
        redirect: Option<String>,
        /// Whether a session was ended (clear its cookie).
        ended: bool,
    },
}

/// A logout waiting for confirmation: only the validated target is kept.
#[derive(Serialize, Deserialize)]
struct PendingLogout {
    redirect: Option<String>,
}

/// [`single_param`], a repeat described for the error page.
fn single<'a>(params: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, String> {
    single_param(params, name).map_err(|Repeated| format!("The logout request repeats {name}."))
}

/// The validated target of a logout request and the session id its hint names.
struct Target {
    client: Option<String>,
    redirect: Option<String>,
    hinted_sid: Option<String>,
}

fn target(core: &Core, params: &[(String, String)]) -> Result<Target, String> {
    let hint = single(params, "id_token_hint")?;
    let client_id = single(params, "client_id")?;
    let uri = single(params, "post_logout_redirect_uri")?;
    let state = single(params, "state")?;
    let hint = match hint {
        Some(token) => Some(
            core.keys
                .verify_id_token_hint(token, core.issuer())
                .map_err(|_| "The logout request carries an ID token this server did not issue.")?,
        ),
        None => None,
    };
    let client = match (hint.as_ref().map(|h| h.aud.as_str()), client_id) {
        (Some(aud), Some(id)) if aud != id => {
            return Err("The logout request names two different applications.".to_owned());
        }
        (Some(id), _) | (None, Some(id)) => Some(
            core.clients()
                .get(id)
                .ok_or("The application that sent you here is not registered.")?,
        ),
        (None, None) => None,
    };
    let redirect = match (uri, client) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(
                "The logout request names a return address but not its application.".to_owned(),
            );
        }
        (Some(uri), Some(client)) => {
            if !client
                .spec
                .post_logout_redirect_uris
                .iter()
                .any(|r| r == uri)
            {
                return Err(
                    "The return address of this logout is not registered for the application."
                        .to_owned(),
                );
            }
            let mut url = url::Url::parse(uri)
                .map_err(|_| "The application's return address cannot be used.")?;
            if let Some(state) = state {
                url.query_pairs_mut().append_pair("state", state);
            }
            Some(url.to_string())
        }
    };
    Ok(Target {
        client: client.map(|c| c.id().to_owned()),
        redirect,
        hinted_sid: hint.and_then(|h| h.sid),
    })
}

async fn end(
    core: &Core,
    user_id: uuid::Uuid,
    session_id: String,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    account::logout(
        core,
        &Principal {
            user_id,
            session_id,
            method: AuthMethod::Cookie,
        },
        meta,
    )
    .await
}

/// Handles a logout request's parameters for the browser presenting `session_secret`.
pub async fn begin(
    core: &Core,
    params: &[(String, String)],
    session_secret: Option<&str>,
    meta: &RequestMeta,
) -> Result<LogoutOutcome, AuthError> {
    let target = match target(core, params) {
        Ok(target) => target,
        Err(description) => return Ok(LogoutOutcome::Page(description)),
    };
    let Some((sid, record)) = current_session(core, session_secret).await? else {
        return Ok(LogoutOutcome::Done {
            redirect: target.redirect,
            ended: false,
        });
    };
    if target.hinted_sid.as_deref() == Some(sid.as_str()) {
        end(core, record.user_id, sid, meta).await?;
        return Ok(LogoutOutcome::Done {
            redirect: target.redirect,
            ended: true,
        });
    }
    let pending_id = core.random.token(24);
    let json = serde_json::to_string(&PendingLogout {
        redirect: target.redirect,
    })
    .map_err(|e| AuthError::Internal(e.to_string()))?;
    core.kv
        .put_pending(PendingKind::Logout, &pending_id, &json, CONFIRM_TTL)
        .await?;
    Ok(LogoutOutcome::Confirm {
        pending_id,
        csrf: session_auth::csrf_token(core, &sid),
        client: target.client,
    })
}

/// The user confirmed the pending logout `id` with the session's CSRF token `csrf`.
pub async fn confirm(
    core: &Core,
    id: &str,
    session_secret: Option<&str>,
    csrf: &str,
    meta: &RequestMeta,
) -> Result<LogoutOutcome, AuthError> {
    let Some(pending) = core
        .kv
        .take_pending(PendingKind::Logout, id)
        .await?
        .and_then(|json| serde_json::from_str::<PendingLogout>(&json).ok())
    else {
        return Ok(LogoutOutcome::Page(
            "This logout request has expired or was already used.".to_owned(),
        ));
    };
    let Some((sid, record)) = current_session(core, session_secret).await? else {
        return Ok(LogoutOutcome::Done {
            redirect: pending.redirect,
            ended: false,
        });
    };
    if !session_auth::verify_csrf(core, &sid, csrf) {
        return Ok(LogoutOutcome::Page(
            "This form expired. Sign out again from the application.".to_owned(),
        ));
    }
    end(core, record.user_id, sid, meta).await?;
    Ok(LogoutOutcome::Done {
        redirect: pending.redirect,
        ended: true,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::login::LoginSuccess;
    use crate::auth::testing::{Fixture, fixture_with_clients, meta, signed_in};
    use crate::auth::tokens::{self, IdContext};

    fn hint(f: &Fixture, login: &LoginSuccess, client: &str) -> String {
        let claims = tokens::id_claims(
            f.core.issuer(),
            client,
            login.user_id,
            &IdContext {
                sid: Some(&login.session_id),
                ..IdContext::default()
            },
            f.clock.now(),
            Duration::from_secs(600),
        );
        f.core.keys.sign("JWT", &claims).unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn a_hint_naming_the_session_signs_out_at_once_even_expired_and_echoes_state() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let hint = hint(&f, &login, "web");
        f.clock.advance(Duration::from_secs(15 * 60));
        let outcome = begin(
            &f.core,
            &params(&[
                ("id_token_hint", &hint),
                ("post_logout_redirect_uri", "https://app.example.com/bye"),
                ("state", "s1"),
            ]),
            Some(&login.session_secret),
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(
            outcome,
            LogoutOutcome::Done {
                redirect: Some("https://app.example.com/bye?state=s1".into()),
                ended: true
            }
        );
        assert!(!f.session_lives(&login.session_id).await);
        assert!(f.core.kv.is_sid_revoked(&login.session_id).await.unwrap());
    }

    #[tokio::test]
    async fn an_unregistered_return_address_or_foreign_hint_gets_a_page_and_signs_nobody_out() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let hint = hint(&f, &login, "web");
        let mut forged = hint.clone();
        forged.insert(forged.len() - 4, 'A');
        for pairs in [
            vec![
                ("id_token_hint", hint.as_str()),
                ("post_logout_redirect_uri", "https://evil.example/"),
            ],
            vec![("post_logout_redirect_uri", "https://app.example.com/bye")],
            vec![
                ("client_id", "spa"),
                ("post_logout_redirect_uri", "https://app.example.com/bye"),
            ],
            vec![("id_token_hint", hint.as_str()), ("client_id", "spa")],
            vec![("id_token_hint", forged.as_str())],
        ] {
            let outcome = begin(
                &f.core,
                &params(&pairs),
                Some(&login.session_secret),
                &meta(),
            )
            .await
            .unwrap();
            assert!(
                matches!(outcome, LogoutOutcome::Page(_)),
                "{pairs:?}: {outcome:?}"
            );
        }
        assert!(f.session_lives(&login.session_id).await);
    }

    #[tokio::test]
    async fn without_a_hint_for_the_session_the_user_confirms_with_the_csrf_token() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let secret = Some(login.session_secret.as_str());
        let ask = params(&[
            ("client_id", "web"),
            ("post_logout_redirect_uri", "https://app.example.com/bye"),
        ]);
        let LogoutOutcome::Confirm {
            pending_id,
            csrf,
            client,
        } = begin(&f.core, &ask, secret, &meta()).await.unwrap()
        else {
            panic!("a confirmation page");
        };
        assert_eq!(client.as_deref(), Some("web"));
        assert!(
            f.session_lives(&login.session_id).await,
            "nothing ended yet"
        );
        assert!(matches!(
            confirm(&f.core, &pending_id, secret, "wrong", &meta())
                .await
                .unwrap(),
            LogoutOutcome::Page(_)
        ));
        assert!(f.session_lives(&login.session_id).await);
        let LogoutOutcome::Confirm {
            pending_id,
            csrf: _,
            ..
        } = begin(&f.core, &ask, secret, &meta()).await.unwrap()
        else {
            panic!("a confirmation page");
        };
        assert_eq!(
            confirm(&f.core, &pending_id, secret, &csrf, &meta())
                .await
                .unwrap(),
            LogoutOutcome::Done {
                redirect: Some("https://app.example.com/bye".into()),
                ended: true
            }
        );
        assert!(!f.session_lives(&login.session_id).await);
    }
}
