//! What to do with an upstream identity: sign in, create an account, link it to an existing
//! account, or refuse. A pure decision over facts the server looked up.

use portcullis_crds::realm::SocialProviderType;
use uuid::Uuid;

use crate::{ProviderSettings, SocialError, UpstreamIdentity};

/// The local account whose email is the identity's [`UpstreamIdentity::link_email`] (already
/// in the server's canonical form: look the account up by exactly that string, and by nothing
/// when it is `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountWithEmail {
    /// The account.
    pub user: Uuid,
    /// Whether the account has proved that it owns the email.
    pub email_verified: bool,
    /// Whether the account has a second factor.
    pub has_mfa: bool,
}

/// What the server does with the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkDecision {
    /// The identity is already linked: sign in as that user (their MFA, if any, still applies).
    SignIn {
        /// The linked user.
        user: Uuid,
    },
    /// No account has the email: create one, linked to the identity, with that email as
    /// verified (the provider verified it: an unverified upstream email never creates an
    /// account, see [`link_decision`]).
    Create {
        /// The new account's email: the identity's [`UpstreamIdentity::link_email`].
        email: String,
    },
    /// Link the identity to the account with the same (verified) email and sign in.
    Link {
        /// The account.
        user: Uuid,
    },
    /// As [`LinkDecision::Link`], but only after the account's second factor is passed.
    LinkAfterMfa {
        /// The account.
        user: Uuid,
    },
}

/// Decides what an upstream identity of `provider` may do, given the provider's settings
/// (its `allowedDomains`), the user already linked to the identity (looked up by the realm and
/// ([`UpstreamIdentity::issuer`], [`UpstreamIdentity::subject`]): the server's table of links
/// MUST be keyed by the issuer too, not by the provider's name), and the account that has the
/// identity's email, if any:
///
/// 0. The identity must come from `provider` (`provider_mismatch`).
/// 1. `allowedDomains` set: the identity needs a verified email in one of them (exact domain,
///    not subdomains, of [`UpstreamIdentity::link_email`]), or is refused
///    (`domain_not_allowed`), linked or not. For Google the account's hosted domain (`hd`)
///    must also be that domain: a consumer Google account made on a company address is not
///    the company's.
/// 2. Linked: sign in as the linked user.
/// 3. The email must be a plain ASCII address that the server's canonicalisation leaves as
///    it is ([`UpstreamIdentity::link_email`]; `email_required` without one, `email_unusable`
///    otherwise): a fullwidth or other compatibility form would fold into another mailbox.
/// 4. No account has the email: create one with it. Only
///    with an email the provider verified (`email_unverified` otherwise): an account holding
///    an address nobody proved would squat it, and whoever verifies it later (by a password
///    reset) would inherit an account still linked to the squatter's upstream identity. The
///    server has no email-less accounts, so there is no "create without the email" fallback.
/// 5. An account has it: the provider must have verified the email
///    (`unverified_email_matches_account`), and so must the account
///    (`account_email_unverified`); then link, after the account's MFA if it has one.
pub fn link_decision(
    identity: &UpstreamIdentity,
    provider: &ProviderSettings,
    linked: Option<Uuid>,
    account: Option<&AccountWithEmail>,
) -> Result<LinkDecision, SocialError> {
    if identity.provider != provider.name {
        return Err(SocialError::ProviderMismatch {
            started: identity.provider.clone(),
            finishing: provider.name.clone(),
        });
    }
    if !provider.allowed_domains.is_empty() {
        let google = provider.preset == SocialProviderType::Google;
        let allowed = identity.email_verified
            && identity.email_domain().is_some_and(|domain| {
                provider.allowed_domains.contains(&domain)
                    && (!google || identity.hosted_domain.as_deref() == Some(domain.as_str()))
            });
        if !allowed {
            return Err(SocialError::DomainNotAllowed);
        }
    }
    if let Some(user) = linked {
        return Ok(LinkDecision::SignIn { user });
    }
    if identity.email.as_deref().is_none_or(str::is_empty) {
        return Err(SocialError::EmailRequired);
    }
    let Some(email) = identity.link_email() else {
        return Err(SocialError::EmailUnusable);
    };
    let Some(account) = account else {
        if !identity.email_verified {
            return Err(SocialError::EmailUnverified);
        }
        return Ok(LinkDecision::Create { email });
    };
    if !identity.email_verified {
        return Err(SocialError::UnverifiedEmailMatchesAccount);
    }
    if !account.email_verified {
        return Err(SocialError::AccountEmailUnverified);
    }
    Ok(if account.has_mfa {
        LinkDecision::LinkAfterMfa { user: account.user }
    } else {
        LinkDecision::Link { user: account.user }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::settings::test_crd;

    /// The realm's provider `corp` of `preset` with `allowed_domains`.
    fn settings(preset: SocialProviderType, allowed_domains: &[&str]) -> ProviderSettings {
        let issuer = (preset == SocialProviderType::Oidc).then_some("https://id.example.com");
        let crd = test_crd("corp", preset, "portcullis", issuer, allowed_domains);
        ProviderSettings::from_crd(&crd, "secret").unwrap()
    }

    const LINKED: Uuid = Uuid::from_u128(1);
    const ACCOUNT: Uuid = Uuid::from_u128(2);

    fn identity(email: Option<&str>, email_verified: bool) -> UpstreamIdentity {
        UpstreamIdentity {
            provider: "corp".into(),
            issuer: "https://id.example.com".into(),
            subject: "sub-1".into(),
            email: email.map(String::from),
            email_verified,
            name: None,
            hosted_domain: None,
        }
    }

    fn account(email_verified: bool, has_mfa: bool) -> AccountWithEmail {
        AccountWithEmail {
            user: ACCOUNT,
            email_verified,
            has_mfa,
        }
    }

    /// One row: the facts, then the expected decision or error code.
    struct Row {
        what: &'static str,
        email: Option<&'static str>,
        upstream_verified: bool,
        domains: &'static [&'static str],
        linked: Option<Uuid>,
        account: Option<AccountWithEmail>,
        expect: Result<LinkDecision, &'static str>,
    }

    const ADA: Option<&str> = Some("ada@example.com");

    fn rows() -> Vec<Row> {
        vec![
            Row {
                what: "a linked identity signs in as its user",
                email: ADA,
                upstream_verified: true,
                domains: &[],
                linked: Some(LINKED),
                account: Some(account(true, false)),
                expect: Ok(LinkDecision::SignIn { user: LINKED }),
            },
            Row {
                what: "a linked identity signs in even with an unverified upstream email",
                email: ADA,
                upstream_verified: false,
                domains: &[],
                linked: Some(LINKED),
                account: None,
                expect: Ok(LinkDecision::SignIn { user: LINKED }),
            },
            Row {
                what: "a new verified email creates an account with a verified email",
                email: ADA,
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: None,
                expect: Ok(LinkDecision::Create {
                    email: "ada@example.com".into(),
                }),
            },
            Row {
                what: "a new unverified email creates no account (it would squat the address)",
                email: ADA,
                upstream_verified: false,
                domains: &[],
                linked: None,
                account: None,
                expect: Err("email_unverified"),
            },
            Row {
                what: "no email and nothing linked cannot create an account",
                email: None,
                upstream_verified: false,
                domains: &[],
                linked: None,
                account: None,
                expect: Err("email_required"),
            },
            Row {
                what: "a verified fullwidth a email does not create",
                email: Some("\u{ff41}da@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: None,
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified fullwidth a email does not link",
                email: Some("\u{ff41}da@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(true, false)),
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified Kelvin sign email does not create",
                email: Some("\u{212a}elvin@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: None,
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified Kelvin sign email does not link",
                email: Some("\u{212a}elvin@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(true, false)),
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified long s email does not create",
                email: Some("\u{17f}am@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: None,
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified long s email does not link",
                email: Some("\u{17f}am@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(true, false)),
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified fi ligature email does not create",
                email: Some("\u{fb01}le@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: None,
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified fi ligature email does not link",
                email: Some("\u{fb01}le@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(true, false)),
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified fullwidth at sign email does not create",
                email: Some("ada\u{ff20}example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: None,
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified fullwidth at sign email does not link",
                email: Some("ada\u{ff20}example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(true, false)),
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified non-ASCII domain email does not create",
                email: Some("ada@ex\u{e4}mple.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: None,
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified non-ASCII domain email does not link",
                email: Some("ada@ex\u{e4}mple.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(true, false)),
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified leading space email does not create",
                email: Some(" ada@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: None,
                expect: Err("email_unusable"),
            },
            Row {
                what: "a verified leading space email does not link",
                email: Some(" ada@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(true, false)),
                expect: Err("email_unusable"),
            },
            Row {
                what: "a fullwidth email is outside every allowed domain",
                email: Some("ada@example\u{ff0e}com"),
                upstream_verified: true,
                domains: &["example.com"],
                linked: None,
                account: None,
                expect: Err("domain_not_allowed"),
            },
            Row {
                what: "a linked identity signs in whatever its email looks like",
                email: Some("\u{ff41}da@example.com"),
                upstream_verified: true,
                domains: &[],
                linked: Some(LINKED),
                account: None,
                expect: Ok(LinkDecision::SignIn { user: LINKED }),
            },
            Row {
                what: "a new account gets the lower-cased email",
                email: Some("Ada@Example.com"),
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: None,
                expect: Ok(LinkDecision::Create {
                    email: "ada@example.com".into(),
                }),
            },
            Row {
                what: "a verified email matching a verified account without MFA links",
                email: ADA,
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(true, false)),
                expect: Ok(LinkDecision::Link { user: ACCOUNT }),
            },
            Row {
                what: "a verified email matching an account with MFA links after its MFA",
                email: ADA,
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(true, true)),
                expect: Ok(LinkDecision::LinkAfterMfa { user: ACCOUNT }),
            },
            Row {
                what: "an unverified upstream email never takes over an account",
                email: ADA,
                upstream_verified: false,
                domains: &[],
                linked: None,
                account: Some(account(true, false)),
                expect: Err("unverified_email_matches_account"),
            },
            Row {
                what: "an unverified upstream email never takes over an account with MFA",
                email: ADA,
                upstream_verified: false,
                domains: &[],
                linked: None,
                account: Some(account(true, true)),
                expect: Err("unverified_email_matches_account"),
            },
            Row {
                what: "an account that never verified its email is not linked",
                email: ADA,
                upstream_verified: true,
                domains: &[],
                linked: None,
                account: Some(account(false, false)),
                expect: Err("account_email_unverified"),
            },
            Row {
                what: "a verified email in an allowed domain creates an account",
                email: Some("ada@Example.com"),
                upstream_verified: true,
                domains: &["example.com"],
                linked: None,
                account: None,
                expect: Ok(LinkDecision::Create {
                    email: "ada@example.com".into(),
                }),
            },
            Row {
                what: "an email outside the allowed domains is refused",
                email: Some("ada@example.org"),
                upstream_verified: true,
                domains: &["example.com"],
                linked: None,
                account: None,
                expect: Err("domain_not_allowed"),
            },
            Row {
                what: "a subdomain of an allowed domain is not allowed",
                email: Some("ada@evil.example.com"),
                upstream_verified: true,
                domains: &["example.com"],
                linked: None,
                account: None,
                expect: Err("domain_not_allowed"),
            },
            Row {
                what: "an unverified email in an allowed domain is refused",
                email: ADA,
                upstream_verified: false,
                domains: &["example.com"],
                linked: None,
                account: None,
                expect: Err("domain_not_allowed"),
            },
            Row {
                what: "an already linked identity outside the allowed domains is refused",
                email: Some("ada@example.org"),
                upstream_verified: true,
                domains: &["example.com"],
                linked: Some(LINKED),
                account: None,
                expect: Err("domain_not_allowed"),
            },
            Row {
                what: "no email is refused when domains are restricted",
                email: None,
                upstream_verified: true,
                domains: &["example.com"],
                linked: Some(LINKED),
                account: None,
                expect: Err("domain_not_allowed"),
            },
            Row {
                what: "any of several allowed domains will do",
                email: Some("ada@example.net"),
                upstream_verified: true,
                domains: &["example.com", "example.net"],
                linked: None,
                account: Some(account(true, false)),
                expect: Ok(LinkDecision::Link { user: ACCOUNT }),
            },
        ]
    }

    #[test]
    fn link_decision_table() {
        for row in rows() {
            let got = link_decision(
                &identity(row.email, row.upstream_verified),
                &settings(SocialProviderType::Oidc, row.domains),
                row.linked,
                row.account.as_ref(),
            )
            .map_err(|e| e.code());
            assert_eq!(got, row.expect, "{}", row.what);
        }
    }
}

#[cfg(test)]
mod google_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::settings::test_crd;

    fn google(allowed_domains: &[&str]) -> ProviderSettings {
        let crd = test_crd(
            "google",
            SocialProviderType::Google,
            "portcullis.apps.googleusercontent.com",
            None,
            allowed_domains,
        );
        ProviderSettings::from_crd(&crd, "secret").unwrap()
    }

    fn identity(email: &str, hd: Option<&str>) -> UpstreamIdentity {
        UpstreamIdentity {
            provider: "google".into(),
            issuer: "https://accounts.google.com".into(),
            subject: "1234567890".into(),
            email: Some(email.into()),
            email_verified: true,
            name: None,
            hosted_domain: hd.map(String::from),
        }
    }

    fn decide(identity: &UpstreamIdentity, domains: &[&str]) -> Result<LinkDecision, &'static str> {
        link_decision(identity, &google(domains), None, None).map_err(|e| e.code())
    }

    #[test]
    fn google_workspace_account_of_the_allowed_domain_is_allowed() {
        assert_eq!(
            decide(&identity("ada@corp.com", Some("corp.com")), &["corp.com"]),
            Ok(LinkDecision::Create {
                email: "ada@corp.com".into()
            })
        );
    }

    #[test]
    fn google_consumer_account_on_a_company_address_is_not_the_company() {
        assert_eq!(
            decide(&identity("ada@corp.com", None), &["corp.com"]),
            Err("domain_not_allowed")
        );
    }

    #[test]
    fn google_account_of_another_workspace_is_not_allowed() {
        assert_eq!(
            decide(&identity("ada@corp.com", Some("other.com")), &["corp.com"]),
            Err("domain_not_allowed")
        );
    }

    #[test]
    fn google_hosted_domain_alone_does_not_allow_another_email_domain() {
        assert_eq!(
            decide(&identity("ada@gmail.com", Some("corp.com")), &["corp.com"]),
            Err("domain_not_allowed")
        );
    }

    #[test]
    fn hosted_domain_rule_is_for_google_only() {
        // A generic OIDC provider has no `hd`: its email domain decides.
        let mut oidc = identity("ada@corp.com", None);
        oidc.provider = "corp".into();
        let crd = test_crd(
            "corp",
            SocialProviderType::Oidc,
            "portcullis",
            Some("https://id.example.com"),
            &["corp.com"],
        );
        let settings = ProviderSettings::from_crd(&crd, "secret").unwrap();
        assert!(link_decision(&oidc, &settings, None, None).is_ok());
    }

    #[test]
    fn identity_of_another_provider_is_refused() {
        let mut other = identity("ada@corp.com", Some("corp.com"));
        other.provider = "github".into();
        assert_eq!(decide(&other, &[]), Err("provider_mismatch"));
    }
}
