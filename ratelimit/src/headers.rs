//! `RateLimit-Policy` and `RateLimit` field values (draft-ietf-httpapi-ratelimit-headers-11),
//! pure. They go on 429 answers only.
//!
//! ```text
//! RateLimit-Policy: "login.ip";q=30;w=60;portcullis-burst=10;portcullis-rule="default/login"
//! RateLimit: "login.ip";r=0;t=2
//! ```

use std::time::Duration;

/// One applicable limit, as the policy header describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyItem<'a> {
    /// The route class, e.g. `login`.
    pub route: &'a str,
    /// The key kind, e.g. `ip`.
    pub key: &'a str,
    /// Requests per period (`q`, which draft §3.1 makes required).
    pub requests: u64,
    /// The period; `w` is its whole seconds rounded up, at least 1.
    pub period: Duration,
    /// Extra requests at once (`portcullis-burst`).
    pub burst: u64,
    /// The RateLimitPolicy rule the limit comes from (`portcullis-rule`; the CRD doc promises it).
    pub rule: &'a str,
}

/// A structured-field string (RFC 9651 §3.3.3): quoted, with `\` and `"` escaped. The syntax
/// admits printable ASCII only, so any other character becomes `?` rather than breaking the field.
pub fn sf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// The largest structured-field Integer (RFC 9651 §3.3.1: at most 15 digits). A client must
/// drop a whole field holding a larger one (draft §7), so every emitted number is clamped to it.
pub const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

/// `n` as a structured-field Integer: clamped to [`SF_INTEGER_MAX`] (31 700 years in seconds,
/// so only an absurd policy is affected, and it still reads as "a very long time").
pub fn sf_integer(n: u64) -> u64 {
    n.min(SF_INTEGER_MAX)
}

/// The item identifier `"<route>.<key>"`, unique within a request.
fn item_id(route: &str, key: &str) -> String {
    sf_string(&format!("{route}.{key}"))
}

/// The window `w` in whole seconds: rounded up, at least 1.
fn window_secs(period: Duration) -> u64 {
    // Saturating: `Duration::MAX` has u64::MAX seconds and a fraction (a plain + panicked).
    let secs = period
        .as_secs()
        .saturating_add(u64::from(period.subsec_nanos() > 0));
    secs.max(1)
}

/// One `RateLimit-Policy` list member.
pub fn policy_item(item: &PolicyItem<'_>) -> String {
    format!(
        "{};q={};w={};portcullis-burst={};portcullis-rule={}",
        item_id(item.route, item.key),
        sf_integer(item.requests),
        sf_integer(window_secs(item.period)),
        sf_integer(item.burst),
        sf_string(item.rule)
    )
}

/// The `RateLimit-Policy` field value: every applicable limit, comma-separated.
pub fn rate_limit_policy(items: &[PolicyItem<'_>]) -> String {
    items.iter().map(policy_item).collect::<Vec<_>>().join(", ")
}

/// The `RateLimit` field value naming only the bucket that refused: `r` the requests left
/// (0 on a refusal) and `t` equal to `Retry-After` (draft §6: `Retry-After` must not point
/// before the end of the effective window). No `pk`, so no key digest leaks. Both numbers are
/// clamped to [`SF_INTEGER_MAX`]; the caller clamps its `Retry-After` alike (with [`sf_integer`])
/// so that `t` still equals it.
pub fn rate_limit(route: &str, key: &str, remaining: u64, retry_after_secs: u64) -> String {
    format!(
        "{};r={};t={}",
        item_id(route, key),
        sf_integer(remaining),
        sf_integer(retry_after_secs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login_ip() -> PolicyItem<'static> {
        PolicyItem {
            route: "login",
            key: "ip",
            requests: 30,
            period: Duration::from_secs(60),
            burst: 10,
            rule: "default/login",
        }
    }

    #[test]
    fn policy_lists_every_limit_with_q_w_burst_and_rule() {
        let all = PolicyItem {
            route: "all",
            key: "ip",
            requests: 600,
            burst: 200,
            rule: "default/all",
            ..login_ip()
        };
        assert_eq!(
            rate_limit_policy(&[login_ip(), all]),
            "\"login.ip\";q=30;w=60;portcullis-burst=10;portcullis-rule=\"default/login\", \
             \"all.ip\";q=600;w=60;portcullis-burst=200;portcullis-rule=\"default/all\""
        );
        assert_eq!(rate_limit_policy(&[]), "");
    }

    #[test]
    fn window_is_rounded_up_to_a_whole_second_and_never_zero() {
        let item = |period| {
            policy_item(&PolicyItem {
                period,
                ..login_ip()
            })
        };
        assert!(item(Duration::from_millis(1500)).contains(";w=2;"));
        assert!(item(Duration::from_millis(10)).contains(";w=1;"));
        assert!(item(Duration::ZERO).contains(";w=1;"));
        assert!(item(Duration::from_secs(3600)).contains(";w=3600;"));
    }

    #[test]
    fn rate_limit_names_the_refusing_bucket_with_t_equal_to_retry_after() {
        assert_eq!(rate_limit("login", "ip", 0, 2), "\"login.ip\";r=0;t=2");
    }

    #[test]
    fn every_integer_has_at_most_fifteen_digits() {
        let absurd = PolicyItem {
            requests: u64::MAX,
            period: Duration::MAX,
            burst: u64::MAX,
            ..login_ip()
        };
        assert_eq!(
            policy_item(&absurd),
            "\"login.ip\";q=999999999999999;w=999999999999999;\
             portcullis-burst=999999999999999;portcullis-rule=\"default/login\""
        );
        assert_eq!(
            rate_limit("login", "ip", u64::MAX, u64::MAX),
            "\"login.ip\";r=999999999999999;t=999999999999999"
        );
        assert_eq!(sf_integer(SF_INTEGER_MAX), SF_INTEGER_MAX);
        assert_eq!(sf_integer(7), 7);
    }

    #[test]
    fn strings_escape_quotes_and_backslashes_and_replace_non_printable_characters() {
        assert_eq!(sf_string("ns/rule"), "\"ns/rule\"");
        assert_eq!(sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(sf_string("tab\there é"), "\"tab?here ?\"");
        let item = PolicyItem {
            rule: "we\"ird",
            ..login_ip()
        };
        assert!(policy_item(&item).ends_with(";portcullis-rule=\"we\\\"ird\""));
    }
}
