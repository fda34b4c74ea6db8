//! Go-style duration strings (`90s`, `15m`, `12h`, `30d`, `1h30m`) as used in every spec.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The schema pattern for a duration: one or more `<digits><unit>` groups, units `ms`, `s`,
/// `m`, `h`, `d`; days, when given, come first and once (`1d12h`), as the maximum rules
/// ([`max_rule`]) read them. Written for both Go RE2 (the API server) and ECMAScript (tests).
pub const DURATION_PATTERN: &str = "^([0-9]+d([0-9]+(ms|s|m|h))*|([0-9]+(ms|s|m|h))+)$";

/// The longest value each duration field accepts, by field path (as in [`max_rule`] and
/// [`crate::SettingsError::DurationTooLong`]): what a realm really needs, far from what date
/// arithmetic can hold. The schema (CEL) and the settings layer refuse longer values with
/// the same message.
pub const MAXIMA: &[(&str, &str)] = &[
    ("passwordPolicy.breachCheck.timeout", "30s"),
    ("lockout.window", "1d"),
    ("lockout.baseLockout", "1d"),
    ("lockout.maxLockout", "30d"),
    ("lockout.progressiveDelay.base", "1m"),
    ("lockout.progressiveDelay.max", "5m"),
    ("tokens.accessTokenTtl", "1d"),
    ("tokens.idTokenTtl", "1d"),
    ("tokens.refreshTokenTtl", "400d"),
    ("tokens.refreshIdleTtl", "400d"),
    ("tokens.keyRotation.every", "400d"),
    ("sessions.idleTimeout", "30d"),
    ("sessions.absoluteTimeout", "400d"),
    ("monitoring.interval", "1h"),
    (
        "monitoring.alertThresholds.certificateExpiryWarning",
        "365d",
    ),
    ("privacy.erasureGracePeriod", "365d"),
    ("rules.auditLogs.retainFor", "3650d"),
    ("rules.inactiveAccounts.after", "3650d"),
    ("rules.inactiveAccounts.warnBefore", "365d"),
    ("rules.unverifiedAccounts.after", "365d"),
    ("rules.expiredSessionsAndTokens.after", "365d"),
    ("rules.withdrawnConsents.retainFor", "3650d"),
    ("limits.period", "1d"),
];

/// The maximum of a duration field (see [`MAXIMA`]); `None` for a field without one.
pub fn maximum(field: &str) -> Option<GoDuration> {
    MAXIMA
        .iter()
        .find(|(f, _)| *f == field)
        .and_then(|(_, max)| GoDuration::parse(max).ok())
}

/// The message of a duration above its maximum, the same from the API server (CEL) and the
/// settings layer.
pub fn too_long_message(field: &str, max: &str) -> String {
    format!("{field} must be at most {max}")
}

/// The CEL rule (`x-kubernetes-validations` entry) that refuses a value of `field` above its
/// maximum. CEL's `duration()` reads Go durations, which have no days: a leading `<N>d` is
/// counted apart, after the day count alone is checked (so a huge count never overflows).
pub fn max_rule(field: &str) -> serde_json::Value {
    let (max_text, max) = MAXIMA
        .iter()
        .find(|(f, _)| *f == field)
        .and_then(|(_, text)| Some((*text, GoDuration::parse(text).ok()?)))
        .unwrap_or(("0s", GoDuration::from_secs(0)));
    let secs = max.as_duration().as_secs();
    let days = secs / 86_400;
    let ms = max.as_duration().as_millis();
    // The day count and the rest are read apart: the API server's cost estimate refuses
    // `duration()` of a string built at run time. A malformed value is the pattern's to
    // refuse (the API server evaluates rules even when the pattern fails).
    let rule = format!(
        "!self.matches('{DURATION_PATTERN}') || (self.contains('d') ? (int(self.substring(0, self.indexOf('d'))) <= {days} && int(self.substring(0, self.indexOf('d'))) * 86400000 + (self.endsWith('d') ? 0 : duration(self.substring(self.indexOf('d') + 1)).getMilliseconds()) <= {ms}) : duration(self) <= duration('{secs}s'))"
    );
    serde_json::json!({"rule": rule, "message": too_long_message(field, max_text)})
}

/// A duration written the way Kubernetes users write them: `90s`, `15m`, `12h`, `30d`.
///
/// It keeps the text as written (so round-trips through YAML are byte-stable) and the parsed
/// value. Deserialization rejects malformed text, so a value of this type is always valid.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GoDuration {
    text: String,
    value: Duration,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty.
    #[error("empty duration")]
    Empty,
    /// A number was not followed by a unit, or a unit by a number.
    #[error("malformed duration {0:?}: expected groups like 90s, 15m, 12h or 30d")]
    Malformed(String),
    /// The unit is not one of ms, s, m, h, d.
    #[error("unknown unit {unit:?} in duration {text:?}: use ms, s, m, h or d")]
    UnknownUnit {
        /// The whole duration string.
        text: String,
        /// The unit that was not recognised.
        unit: String,
    },
    /// The value does not fit in 64-bit milliseconds.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

impl GoDuration {
    /// Parses a duration string; see [`DURATION_PATTERN`].
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        text.parse()
    }

    /// A duration of whole seconds, written in the largest unit that divides it.
    pub fn from_secs(secs: u64) -> Self {
        let text = match secs {
            0 => "0s".to_owned(),
            s if s % 86_400 == 0 => format!("{}d", s / 86_400),
            s if s % 3_600 == 0 => format!("{}h", s / 3_600),
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        };
        Self {
            text,
            value: Duration::from_secs(secs),
        }
    }

    /// The parsed value.
    pub fn as_duration(&self) -> Duration {
        self.value
    }

    /// The text as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(DurationError::Empty);
        }
        let malformed = || DurationError::Malformed(text.to_owned());
        let overflow = || DurationError::Overflow(text.to_owned());
        let mut total_ms: u64 = 0;
        let mut rest = text;
        let mut first = true;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return Err(malformed());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| overflow())?;
            rest = &rest[digits..];
            let unit_len = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .len();
            if unit_len == 0 {
                return Err(malformed());
            }
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let per_unit_ms: u64 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                // Days come first and once, as DURATION_PATTERN says.
                "d" if !first => return Err(malformed()),
                "d" => 86_400_000,
                _ => {
                    return Err(DurationError::UnknownUnit {
                        text: text.to_owned(),
                        unit: unit.to_owned(),
                    });
                }
            };
            first = false;
            let ms = number.checked_mul(per_unit_ms).ok_or_else(overflow)?;
            total_ms = total_ms.checked_add(ms).ok_or_else(overflow)?;
        }
        Ok(Self {
            text: text.to_owned(),
            value: Duration::from_millis(total_ms),
        })
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoDuration({:?})", self.text)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        for (text, ms) in [
            ("250ms", 250),
            ("90s", 90_000),
            ("15m", 900_000),
            ("12h", 43_200_000),
            ("30d", 2_592_000_000),
        ] {
            assert_eq!(
                GoDuration::parse(text).unwrap().as_duration(),
                Duration::from_millis(ms)
            );
        }
    }

    #[test]
    fn adds_up_compound_durations() {
        let d = GoDuration::parse("1h30m15s").unwrap();
        assert_eq!(d.as_duration(), Duration::from_secs(5_415));
        assert_eq!(d.as_str(), "1h30m15s");
    }

    #[test]
    fn rejects_malformed_text() {
        assert_eq!(GoDuration::parse(""), Err(DurationError::Empty));
        for bad in ["15", "m", "1.5h", "-1s", "1 h", "h1"] {
            assert!(
                matches!(GoDuration::parse(bad), Err(DurationError::Malformed(_))),
                "{bad} should be malformed"
            );
        }
    }

    #[test]
    fn days_come_first_and_once() {
        assert_eq!(
            GoDuration::parse("1d12h").unwrap().as_duration(),
            Duration::from_secs(36 * 3_600)
        );
        for bad in ["12h1d", "1d1d"] {
            assert!(
                matches!(GoDuration::parse(bad), Err(DurationError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_maximum_parses_and_has_a_rule() {
        for (field, max) in MAXIMA {
            assert!(maximum(field).is_some(), "{field} {max}");
            assert!(max_rule(field)["message"].as_str().unwrap().ends_with(max));
        }
    }

    #[test]
    fn rejects_unknown_units() {
        assert_eq!(
            GoDuration::parse("3w"),
            Err(DurationError::UnknownUnit {
                text: "3w".into(),
                unit: "w".into()
            })
        );
    }

    #[test]
    fn rejects_overflowing_values() {
        assert!(matches!(
            GoDuration::parse("99999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn writes_whole_seconds_in_the_largest_unit() {
        assert_eq!(GoDuration::from_secs(86_400 * 30).as_str(), "30d");
        assert_eq!(GoDuration::from_secs(7_200).as_str(), "2h");
        assert_eq!(GoDuration::from_secs(90).as_str(), "90s");
        assert_eq!(GoDuration::from_secs(0).as_str(), "0s");
    }

    #[test]
    fn round_trips_through_json_as_written() {
        let d: GoDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
    }
}
