//! The enrolment URI that authenticator apps read from the QR code, in Google's Key Uri Format:
//! `otpauth://totp/<issuer>:<account>?secret=...&issuer=...&algorithm=...&digits=...&period=...`.

use crate::MfaError;
use crate::totp::{TotpParams, TotpSecret};

/// The `otpauth://totp/` URI for `secret` with the params of this enrolment (the realm's
/// current ones when it is made; store them with the secret, see [`TotpParams`]).
///
/// `issuer` (the realm's `mfa.totp.issuerName`, or the issuer host) and `account` (the user's
/// email or username) are percent-encoded as UTF-8 (RFC 3986): everything but the unreserved
/// characters, so a space is `%20` (apps show a `+` literally), `&` and `=` cannot end the
/// parameter early and a `:` inside a name is `%3A`, leaving the one literal `:` of the label
/// as the separator. The issuer is also given as the `issuer` parameter, which the Key Uri
/// Format recommends and apps prefer over the label prefix.
///
/// # Errors
/// [`MfaError::EmptyLabel`] when `issuer` or `account` is empty: apps would show a blank entry.
pub fn otpauth_uri(
    params: &TotpParams,
    secret: &TotpSecret,
    issuer: &str,
    account: &str,
) -> Result<String, MfaError> {
    if issuer.is_empty() {
        return Err(MfaError::EmptyLabel("issuer"));
    }
    if account.is_empty() {
        return Err(MfaError::EmptyLabel("account name"));
    }
    let issuer = percent_encode(issuer);
    Ok(format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm={algorithm}&digits={digits}&period={period}",
        account = percent_encode(account),
        secret = secret.to_base32().as_str(),
        algorithm = params.algorithm().as_str(),
        digits = params.digits(),
        period = params.period(),
    ))
}

/// RFC 3986 percent-encoding of everything but the unreserved characters; the same in the
/// path (label) and in the query, which keeps both unambiguous.
fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp::{Algorithm, SECRET_LEN};

    /// A strict RFC 3986 decoder, as an app would use: `%XX` only, UTF-8 required.
    fn percent_decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// Splits a URI the way an authenticator app does: label at its literal `:`, the query at
    /// `&` and `=`, and only then decodes each part.
    fn parse(uri: &str) -> (String, String, Vec<(String, String)>) {
        let rest = uri.strip_prefix("otpauth://totp/").unwrap();
        let (label, query) = rest.split_once('?').unwrap();
        let (issuer, account) = label.split_once(':').unwrap();
        let params = query
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_string(), percent_decode(v))
            })
            .collect();
        (percent_decode(issuer), percent_decode(account), params)
    }

    fn secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890").unwrap()
    }

    #[test]
    fn the_uri_has_the_key_uri_format_with_the_realms_settings() {
        let params = TotpParams::new(Algorithm::Sha256, 8, 60).unwrap();
        let uri = otpauth_uri(&params, &secret(), "Acme", "alice@example.com").unwrap();
        assert_eq!(
            uri,
            "otpauth://totp/Acme:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Acme&algorithm=SHA256&digits=8&period=60"
        );
        let default = otpauth_uri(&TotpParams::default(), &secret(), "Acme", "bob").unwrap();
        assert!(
            default.ends_with("&algorithm=SHA1&digits=6&period=30"),
            "{default}"
        );
    }

    #[test]
    fn tricky_names_are_percent_encoded_and_round_trip() {
        let cases = [
            ("Acme Corp", "alice smith"),
            ("Acme: Staging", "user:with:colons"),
            ("Bücher & Söhne", "Zoë+ü@例え.jp"),
            ("A&B=C?D#E/F%G", "x&issuer=Evil"),
        ];
        for (issuer, account) in cases {
            let uri = otpauth_uri(&TotpParams::default(), &secret(), issuer, account).unwrap();
            // Only unreserved characters, `%`, and the URI's own delimiters are left.
            assert!(uri.is_ascii(), "{uri}");
            assert!(!uri.contains(' ') && !uri.contains('+'), "{uri}");
            assert_eq!(
                uri.matches(':').count(),
                2,
                "scheme and label separator only: {uri}"
            );
            assert_eq!(uri.matches('&').count(), 4, "{uri}");
            assert_eq!(uri.matches('#').count(), 0, "{uri}");
            let (got_issuer, got_account, query) = parse(&uri);
            assert_eq!(
                (got_issuer.as_str(), got_account.as_str()),
                (issuer, account)
            );
            let keys: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["secret", "issuer", "algorithm", "digits", "period"]);
            assert_eq!(query[1].1, issuer);
        }
        let uri = otpauth_uri(&TotpParams::default(), &secret(), "Acme Corp", "a b").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Acme%20Corp:a%20b?"),
            "{uri}"
        );
        let uri = otpauth_uri(&TotpParams::default(), &secret(), "Zoë", "ü").unwrap();
        assert!(uri.starts_with("otpauth://totp/Zo%C3%AB:%C3%BC?"), "{uri}");
    }

    #[test]
    fn the_secret_in_the_uri_is_the_enrolment_secret() {
        let secret = TotpSecret::generate([0x42; SECRET_LEN]);
        let uri = otpauth_uri(&TotpParams::default(), &secret, "Acme", "bob").unwrap();
        let (_, _, query) = parse(&uri);
        let back = TotpSecret::from_base32(&query[0].1).unwrap();
        assert_eq!(back.as_bytes(), secret.as_bytes());
        assert!(!query[0].1.contains('='));
    }

    #[test]
    fn empty_issuer_or_account_is_refused() {
        let params = TotpParams::default();
        assert_eq!(
            otpauth_uri(&params, &secret(), "", "bob"),
            Err(MfaError::EmptyLabel("issuer"))
        );
        assert_eq!(
            otpauth_uri(&params, &secret(), "Acme", ""),
            Err(MfaError::EmptyLabel("account name"))
        );
    }
}
