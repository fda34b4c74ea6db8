//! What a ciphertext is bound to (a purpose and its owner's user id) and the plaintext
//! framing that carries the binding inside the Fernet token.

use std::fmt;

use uuid::Uuid;
use zeroize::Zeroizing;

/// The version byte of the framing this crate writes.
pub const FRAMING_V1: u8 = 0x01;

/// Version, purpose, owner id: the bytes before the secret.
pub const FRAMING_HEADER_LEN: usize = 1 + 1 + 16;

/// What a stored secret is for; the column it lives in. Closed: a new kind of stored secret
/// gets a new code here, and no code is ever reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A user's TOTP shared secret (code 0x01).
    TotpSecret,
    /// An upstream (social login) provider's access token (code 0x02).
    UpstreamAccessToken,
    /// An upstream (social login) provider's refresh token (code 0x03).
    UpstreamRefreshToken,
}

impl Purpose {
    /// Every purpose, for tests and for a re-encryption command that walks each column.
    pub const ALL: [Purpose; 3] = [
        Purpose::TotpSecret,
        Purpose::UpstreamAccessToken,
        Purpose::UpstreamRefreshToken,
    ];

    /// The byte stored in the framing.
    pub fn code(self) -> u8 {
        match self {
            Purpose::TotpSecret => 0x01,
            Purpose::UpstreamAccessToken => 0x02,
            Purpose::UpstreamRefreshToken => 0x03,
        }
    }

    /// The purpose stored as `code`, if this version knows it.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }

    /// A stable name for logs and status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::TotpSecret => "totp_secret",
            Purpose::UpstreamAccessToken => "upstream_access_token",
            Purpose::UpstreamRefreshToken => "upstream_refresh_token",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose secret a ciphertext is, and what for: its purpose (column) and the id of the user
/// who owns it. Sealed inside the plaintext and checked on open, so a ciphertext copied to
/// another user's row or to another column is refused instead of handing one user's secret
/// to another.
///
/// `owner` MUST be the owning user's id (`users.id`), read from the row's owner column at
/// open time, for every purpose here (all are per-user secrets): never the secret's own row
/// id. Bound to its own row id, a TOTP row whose `user_id` is changed in the database (or an
/// identity row re-pointed at another user) would still open, and the attacker's
/// authenticator would satisfy the victim's MFA. Bound to the owner, that re-pointing makes
/// the open fail. A user with several rows of one purpose (two linked providers' tokens) can
/// swap them among themselves: that hands a user nothing they did not already have.
///
/// Not covered, as no binding in the database can cover it: a rollback to an *older*
/// ciphertext of the same binding (a backup restored after a re-enrolment revives the old
/// authenticator). Re-enrolment should be followed by a check that the old secret is not
/// restored, e.g. a per-enrolment counter kept outside the restored data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The column.
    pub purpose: Purpose,
    /// The owning user's id.
    pub owner: Uuid,
}

impl Binding {
    /// The binding of `purpose` for the user `owner` (the owning user's id, see [`Binding`]).
    pub fn new(purpose: Purpose, owner: Uuid) -> Self {
        Self { purpose, owner }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of user {}", self.purpose, self.owner)
    }
}

/// Why decrypted bytes are not this crate's framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FramingError {
    TooShort,
    UnknownVersion,
    UnknownPurpose,
}

impl FramingError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            FramingError::TooShort => "shorter than the framing header",
            FramingError::UnknownVersion => "unknown framing version",
            FramingError::UnknownPurpose => "unknown purpose code",
        }
    }
}

/// `0x01 ‖ purpose code ‖ owner id (16 bytes, big-endian as in its text form) ‖ secret`, in a
/// buffer wiped on drop.
pub fn frame(binding: Binding, secret: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(FRAMING_HEADER_LEN + secret.len()));
    out.push(FRAMING_V1);
    out.push(binding.purpose.code());
    out.extend_from_slice(binding.owner.as_bytes());
    out.extend_from_slice(secret);
    out
}

/// The binding and the secret of framed bytes.
pub(crate) fn unframe(framed: &[u8]) -> Result<(Binding, &[u8]), FramingError> {
    let Some((header, secret)) = framed.split_at_checked(FRAMING_HEADER_LEN) else {
        return Err(FramingError::TooShort);
    };
    let [version, purpose, owner @ ..] = header else {
        return Err(FramingError::TooShort);
    };
    if *version != FRAMING_V1 {
        return Err(FramingError::UnknownVersion);
    }
    let purpose = Purpose::from_code(*purpose).ok_or(FramingError::UnknownPurpose)?;
    let owner = Uuid::from_slice(owner).map_err(|_| FramingError::TooShort)?;
    Ok((Binding { purpose, owner }, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: Uuid = Uuid::from_u128(0x0192_3e4a_5b6c_7d8e_9fa0_b1c2_d3e4_f506);

    #[test]
    fn the_framing_is_version_purpose_row_then_secret() {
        let framed = frame(Binding::new(Purpose::UpstreamRefreshToken, ROW), b"rt");
        let mut expected = vec![0x01, 0x03];
        expected.extend_from_slice(&ROW.as_u128().to_be_bytes());
        expected.extend_from_slice(b"rt");
        assert_eq!(framed.as_slice(), expected.as_slice());
    }

    #[test]
    fn framing_round_trips_for_every_purpose_and_an_empty_secret() {
        for purpose in Purpose::ALL {
            for secret in [&b""[..], b"JBSWY3DPEHPK3PXP"] {
                let binding = Binding::new(purpose, ROW);
                let framed = frame(binding, secret);
                assert_eq!(unframe(&framed), Ok((binding, secret)));
            }
        }
    }

    #[test]
    fn purpose_codes_are_distinct_and_round_trip() {
        for purpose in Purpose::ALL {
            assert_eq!(Purpose::from_code(purpose.code()), Some(purpose));
        }
        let mut codes: Vec<u8> = Purpose::ALL.iter().map(|p| p.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Purpose::ALL.len());
        assert_eq!(Purpose::from_code(0), None);
        assert_eq!(Purpose::from_code(0xFF), None);
    }

    #[test]
    fn bad_framing_is_told_apart() {
        let good = frame(Binding::new(Purpose::TotpSecret, ROW), b"s");
        assert_eq!(
            unframe(&good[..FRAMING_HEADER_LEN - 1]),
            Err(FramingError::TooShort)
        );
        assert_eq!(unframe(b""), Err(FramingError::TooShort));
        let mut version = good.to_vec();
        version[0] = 0x02;
        assert_eq!(unframe(&version), Err(FramingError::UnknownVersion));
        let mut purpose = good.to_vec();
        purpose[1] = 0x7F;
        assert_eq!(unframe(&purpose), Err(FramingError::UnknownPurpose));
    }
}
