//! A linked identity as the store keeps it, and the rule for unlinking one: pure.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::SocialError;

/// An upstream identity linked to a local user (a row of `linked_identities`), as the account
/// page, `/api/v1/me` and the export show it. Never holds the upstream tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The link's own id (the owner the sealed upstream tokens are bound to).
    pub id: Uuid,
    /// The local user.
    pub user: Uuid,
    /// The realm's name for the provider when the link was made.
    pub provider: String,
    /// Who issued `subject` ([`crate::UpstreamIdentity::issuer`]).
    pub issuer: String,
    /// The provider's stable id for the person.
    pub subject: String,
    /// The upstream email when linked, as the provider gave it (for display only).
    pub email: Option<String>,
    /// When the link was made.
    pub created_at: OffsetDateTime,
    /// When it was last used to sign in.
    pub last_used_at: OffsetDateTime,
}

/// A user's ways to sign in, as far as unlinking cares.
#[derive(Clone, Copy, Debug)]
pub struct SignInMethods<'a> {
    /// The user has a password they can sign in with (set, and not disabled).
    pub password_usable: bool,
    /// All the user's links.
    pub links: &'a [Link],
    /// The names of the providers the realm has now: a link to a removed provider is no way in.
    pub live_providers: &'a [String],
}

/// Whether the user may remove the link `link_id`: only while another working way in remains,
/// a usable password or another link whose provider the realm still has.
///
/// # Errors
/// [`SocialError::LinkNotFound`] when `link_id` is not among `methods.links`,
/// [`SocialError::LastSignInMethod`] when nothing else would let the user in.
pub fn may_unlink(methods: &SignInMethods<'_>, link_id: Uuid) -> Result<(), SocialError> {
    if !methods.links.iter().any(|link| link.id == link_id) {
        return Err(SocialError::LinkNotFound);
    }
    let another_live_link = methods
        .links
        .iter()
        .any(|link| link.id != link_id && methods.live_providers.contains(&link.provider));
    if methods.password_usable || another_live_link {
        Ok(())
    } else {
        Err(SocialError::LastSignInMethod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: Uuid = Uuid::from_u128(1);

    fn link(n: u128, provider: &str) -> Link {
        Link {
            id: Uuid::from_u128(100 + n),
            user: USER,
            provider: provider.into(),
            issuer: "https://idp.example".into(),
            subject: format!("sub-{n}"),
            email: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            last_used_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn live(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn decide(
        password: bool,
        links: &[Link],
        providers: &[&str],
        id: Uuid,
    ) -> Option<&'static str> {
        let live_providers = live(providers);
        let methods = SignInMethods {
            password_usable: password,
            links,
            live_providers: &live_providers,
        };
        may_unlink(&methods, id).err().map(|e| e.code())
    }

    #[test]
    fn the_only_link_may_go_while_the_password_works() {
        let links = [link(1, "github")];
        assert_eq!(decide(true, &links, &["github"], links[0].id), None);
    }

    #[test]
    fn the_only_link_without_a_usable_password_stays() {
        let links = [link(1, "github")];
        assert_eq!(
            decide(false, &links, &["github"], links[0].id),
            Some("last_sign_in_method")
        );
    }

    #[test]
    fn a_link_may_go_while_another_links_provider_is_live() {
        let links = [link(1, "github"), link(2, "google")];
        assert_eq!(decide(false, &links, &["google"], links[0].id), None);
    }

    #[test]
    fn another_link_to_a_removed_provider_is_no_way_in() {
        let links = [link(1, "github"), link(2, "google")];
        assert_eq!(
            decide(false, &links, &["github"], links[0].id),
            Some("last_sign_in_method")
        );
    }

    #[test]
    fn the_link_itself_being_live_does_not_count() {
        let links = [link(1, "github"), link(2, "retired")];
        assert_eq!(
            decide(false, &links, &["github"], links[0].id),
            Some("last_sign_in_method")
        );
    }

    #[test]
    fn a_link_not_among_the_users_is_not_found() {
        let links = [link(1, "github")];
        assert_eq!(
            decide(true, &links, &["github"], Uuid::from_u128(999)),
            Some("not_found")
        );
    }
}
