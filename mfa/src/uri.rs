//! The enrolment URI that authenticator apps read from the QR code, in Google's Key Uri Format:
//! `otpauth://totp/<issuer>:<account>?secret=...&issuer=...&algorithm=...&digits=...&period=...`.

use crate::MfaError;
use crate::totp::{TotpParams, TotpSecret};

/// The `otpauth://totp/` URI for `secret` with the params of this enrolment (the realm's
/// current ones when it is made; store them with the secret, see [`TotpParams`]).
///
/// `issuer` (the realm's `mfa.totp.issuerName`, or the issuer host) and `account` (the user's
/// email or username) are percent-encoded as UTF-8 (RFC 3986): everything but the unreserved
/// characters, so a space is `%20` (apps show a `+` literally) and `&` and `=` cannot end the
/// parameter early. The issuer is also given as the `issuer` parameter, as the Key Uri Format
/// recommends.
///
/// Neither may contain a `:`. The Key Uri Format forbids it, and encoding does not help: `%3A`
/// is a separator there too, and apps decode the path before splitting the label (Aegis splits
/// at every `:` and, with more than two parts, shows no issuer; FreeOTP splits at the first).
/// So an issuer or account with a colon is refused rather than shown wrongly; the caller
/// replaces it (for example with ` - `) if it wants to enrol such a name. Control characters
/// and bidirectional overrides are refused too: they would be encoded safely, but apps render
/// them, and an override can make the entry read as another service's.
///
/// # Errors
/// [`MfaError::EmptyLabel`] when `issuer` or `account` is empty: apps would show a blank entry.
/// [`MfaError::InvalidLabel`] when one contains `:`, a control character or a bidirectional
/// override or isolate (U+202A..=U+202E, U+2066..=U+2069).
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
    for (field, text) in [("issuer", issuer), ("account name", account)] {
        if text.chars().any(forbidden_in_label) {
            return Err(MfaError::InvalidLabel(field));
        }
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

/// Characters refused in an issuer or account name: see [`otpauth_uri`].
fn forbidden_in_label(c: char) -> bool {
    c == ':' || c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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

    /// A strict RFC 3986 decoder, as Android's `Uri.getPath()`/`getQueryParameter` decode:
    /// `%XX` only (a `+` stays a `+`), UTF-8 required.
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

    /// The query of a URI, split at `&` and `=`, then each value decoded.
    fn query(uri: &str) -> Vec<(String, String)> {
        let (_, query) = uri.split_once('?').unwrap();
        query
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_string(), percent_decode(v))
            })
            .collect()
    }

    /// The label as the apps read it: the path decoded first (`Uri.getPath()`), then split.
    fn decoded_label(uri: &str) -> String {
        let rest = uri.strip_prefix("otpauth://totp/").unwrap();
        let (label, _) = rest.split_once('?').unwrap();
        percent_decode(label)
    }

    /// Aegis (`GoogleAuthInfo.parseUri`): `label.split(":")`; two parts are issuer and
    /// account, anything else is all account and no issuer.
    fn aegis(uri: &str) -> (String, String) {
        let label = decoded_label(uri);
        let parts: Vec<&str> = label.split(':').collect();
        match parts[..] {
            [issuer, account] => (issuer.to_string(), account.to_string()),
            _ => (String::new(), label.clone()),
        }
    }

    /// FreeOTP (`Token(Uri)`): issuer before the first `:`, account after it.
    fn freeotp(uri: &str) -> (String, String) {
        let label = decoded_label(uri);
        let (issuer, account) = label.split_once(':').unwrap_or(("", &label));
        (issuer.to_string(), account.to_string())
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
    fn tricky_names_are_percent_encoded_and_read_back_by_aegis_and_freeotp() {
        let cases = [
            ("Acme Corp", "alice smith"),
            ("Bücher & Söhne", "Zoë+ü@例え.jp"),
            ("A&B=C?D#E/F%G", "x&issuer=Evil"),
            // A literal "%3A" is text, encoded as %253A, and decodes back to text, not to ':'.
            ("100%3A", "x%3Ay"),
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
            let expected = (issuer.to_string(), account.to_string());
            assert_eq!(aegis(&uri), expected, "{uri}");
            assert_eq!(freeotp(&uri), expected, "{uri}");
            let query = query(&uri);
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
    fn colons_controls_and_bidi_overrides_in_names_are_refused() {
        let params = TotpParams::default();
        for bad in [
            "Acme: Staging",
            "user:with:colons",
            ":",
            "line\nbreak",
            "tab\there",
            "nul\0",
            "c1\u{85}",
            "evil\u{202E}moc.emca",
            "iso\u{2066}late",
        ] {
            assert_eq!(
                otpauth_uri(&params, &secret(), bad, "bob"),
                Err(MfaError::InvalidLabel("issuer")),
                "{bad:?}"
            );
            assert_eq!(
                otpauth_uri(&params, &secret(), "Acme", bad),
                Err(MfaError::InvalidLabel("account name")),
                "{bad:?}"
            );
        }
        // What the old encoding produced for a colon, and how the apps misread it.
        let old = "otpauth://totp/Acme%3A%20Staging:user%3Awith%3Acolons?secret=A";
        assert_eq!(
            aegis(old),
            (String::new(), "Acme: Staging:user:with:colons".into())
        );
        assert_eq!(
            freeotp(old),
            ("Acme".into(), " Staging:user:with:colons".into())
        );
    }

    #[test]
    fn the_secret_in_the_uri_is_the_enrolment_secret() {
        let secret = TotpSecret::generate([0x42; SECRET_LEN]);
        let uri = otpauth_uri(&TotpParams::default(), &secret, "Acme", "bob").unwrap();
        let query = query(&uri);
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
