//! GitHub: an OAuth 2 app without ID tokens; the user is read from its REST API, the email
//! from `/user/emails` (the primary one, and whether GitHub verified it).

use serde::Deserialize;
use url::Url;

use crate::http::{HttpClient, get_json};
use crate::{GitHubEndpoints, SocialError, UpstreamIdentity};

/// `GET /user`, the fields used.
#[derive(Debug, Deserialize)]
struct User {
    id: u64,
    login: String,
    name: Option<String>,
}

/// One entry of `GET /user/emails`.
#[derive(Debug, Deserialize)]
struct Email {
    email: String,
    primary: bool,
    verified: bool,
}

/// The GitHub user the access token belongs to.
pub(crate) async fn identity(
    endpoints: &GitHubEndpoints,
    name: &str,
    http: &HttpClient,
    access_token: &str,
) -> Result<UpstreamIdentity, SocialError> {
    let user = get_json(http, api_url(&endpoints.api, "user")?, access_token)
        .await
        .map_err(SocialError::UserInfo)?;
    let user: User = serde_json::from_value(user)
        .map_err(|e| SocialError::UserInfo(format!("GitHub's /user: {e}")))?;
    let emails = get_json(http, api_url(&endpoints.api, "user/emails")?, access_token)
        .await
        .map_err(SocialError::UserInfo)?;
    let emails: Vec<Email> = serde_json::from_value(emails)
        .map_err(|e| SocialError::UserInfo(format!("GitHub's /user/emails: {e}")))?;
    Ok(from_api(name, &endpoints.api, user, &emails))
}

/// The identity from the API's answers: the API base as issuer, the numeric id as subject (a login can be renamed
/// and then taken by someone else), the primary email with GitHub's verdict on it, the
/// name or else the login.
fn from_api(name: &str, api: &Url, user: User, emails: &[Email]) -> UpstreamIdentity {
    let primary = emails.iter().find(|e| e.primary);
    UpstreamIdentity {
        provider: name.to_owned(),
        issuer: api.as_str().to_owned(),
        subject: user.id.to_string(),
        email: primary.map(|e| e.email.clone()),
        email_verified: primary.is_some_and(|e| e.verified),
        name: user.name.filter(|n| !n.is_empty()).or(Some(user.login)),
        hosted_domain: None,
    }
}

/// `{api}/{path}`, whether or not the configured base ends with a slash.
fn api_url(api: &Url, path: &str) -> Result<Url, SocialError> {
    let base = api.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/{path}"))
        .map_err(|e| SocialError::UserInfo(format!("GitHub API URL {base}/{path}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn api() -> Url {
        Url::parse("https://api.github.com/").unwrap()
    }

    fn user(name: Option<&str>) -> User {
        User {
            id: 583231,
            login: "octocat".into(),
            name: name.map(String::from),
        }
    }

    fn email(email: &str, primary: bool, verified: bool) -> Email {
        Email {
            email: email.into(),
            primary,
            verified,
        }
    }

    #[test]
    fn subject_is_the_numeric_id_and_email_the_verified_primary() {
        let emails = [
            email("other@example.com", false, true),
            email("octo@example.com", true, true),
        ];
        let identity = from_api("github", &api(), user(Some("The Octocat")), &emails);
        assert_eq!(
            identity,
            UpstreamIdentity {
                provider: "github".into(),
                issuer: "https://api.github.com/".into(),
                subject: "583231".into(),
                email: Some("octo@example.com".into()),
                email_verified: true,
                name: Some("The Octocat".into()),
                hosted_domain: None,
            }
        );
    }

    #[test]
    fn unverified_primary_email_is_reported_unverified() {
        let emails = [
            email("verified@example.com", false, true),
            email("octo@example.com", true, false),
        ];
        let identity = from_api("github", &api(), user(None), &emails);
        assert_eq!(identity.email.as_deref(), Some("octo@example.com"));
        assert!(!identity.email_verified);
    }

    #[test]
    fn no_primary_email_gives_no_email() {
        let identity = from_api(
            "github",
            &api(),
            user(None),
            &[email("a@example.com", false, true)],
        );
        assert_eq!(identity.email, None);
        assert!(!identity.email_verified);
    }

    #[test]
    fn name_falls_back_to_the_login() {
        assert_eq!(
            from_api("github", &api(), user(None), &[]).name.as_deref(),
            Some("octocat")
        );
        assert_eq!(
            from_api("github", &api(), user(Some("")), &[])
                .name
                .as_deref(),
            Some("octocat")
        );
    }

    #[test]
    fn api_paths_join_with_or_without_a_trailing_slash() {
        for base in ["https://api.github.com", "https://api.github.com/"] {
            let url = api_url(&Url::parse(base).unwrap(), "user/emails").unwrap();
            assert_eq!(url.as_str(), "https://api.github.com/user/emails");
        }
        let enterprise = Url::parse("https://git.example.com/api/v3").unwrap();
        assert_eq!(
            api_url(&enterprise, "user").unwrap().as_str(),
            "https://git.example.com/api/v3/user"
        );
    }
}
