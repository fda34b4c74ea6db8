//! Standard five-field cron schedules: parsing, validation and evaluation.
//!
//! [`CRON_SCHEDULE_PATTERN`] is a portable (RE2 and ECMAScript) regular
//! expression suitable for an OpenAPI `pattern`; [`CronSchedule`] parses a
//! schedule with [`std::str::FromStr`], accepting exactly what a Kubernetes CronJob accepts
//! (five fields or a macro) with messages that name the field, and computes the next firing
//! time with [`CronSchedule::next_after`] (UTC, as the operator's CronJobs run) or
//! [`CronSchedule::next_after_in`]. The calendar evaluation is the `croner` crate's; this
//! module only decides the grammar and hands croner the schedule in a canonical form whose
//! meaning is the same for both (see [`CronSchedule::canonical`]).

use std::str::FromStr;

use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{RoundMode, Timestamp, TimestampRound, ToSpan, Unit};

/// Builds the regular expression for one comma-separated cron field whose
/// single values are matched by the alternation `$atom`.
macro_rules! field_pattern {
    ($($atom:tt)+) => {
        concat!(
            r"(\*|(", $($atom)+, r")(-(", $($atom)+, r"))?)(/[0-9]{1,2})?",
            r"(,(\*|(", $($atom)+, r")(-(", $($atom)+, r"))?)(/[0-9]{1,2})?)*"
        )
    };
}

/// Case-insensitive three-letter month names, as a regex alternation.
macro_rules! month_names_pattern {
    () => {
        concat!(
            "[Jj][Aa][Nn]|[Ff][Ee][Bb]|[Mm][Aa][Rr]|[Aa][Pp][Rr]|[Mm][Aa][Yy]|[Jj][Uu][Nn]|",
            "[Jj][Uu][Ll]|[Aa][Uu][Gg]|[Ss][Ee][Pp]|[Oo][Cc][Tt]|[Nn][Oo][Vv]|[Dd][Ee][Cc]"
        )
    };
}

/// Case-insensitive three-letter weekday names, as a regex alternation.
macro_rules! weekday_names_pattern {
    () => {
        concat!(
            "[Ss][Uu][Nn]|[Mm][Oo][Nn]|[Tt][Uu][Ee]|[Ww][Ee][Dd]|",
            "[Tt][Hh][Uu]|[Ff][Rr][Ii]|[Ss][Aa][Tt]"
        )
    };
}

/// Regular expression (anchored, RE2- and ECMAScript-compatible) accepting
/// standard five-field cron schedules and the `@yearly`, `@annually`,
/// `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly` macros.
///
/// Values are at most two digits and range-checked per field (minute 0-59,
/// hour 0-23, day of month 1-31, month 1-12 or `JAN`-`DEC`, day of week 0-7 or
/// `SUN`-`SAT`); fields are separated by spaces or tabs. The pattern is a
/// superset of what [`CronSchedule`]'s parser accepts only for a zero step
/// (`*/0`) and a reversed range (`10-5`), which the parser rejects.
pub const CRON_SCHEDULE_PATTERN: &str = concat!(
    r"^[ \t]*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|",
    field_pattern!("[0-5]?[0-9]"),
    r"[ \t]+",
    field_pattern!("[01]?[0-9]|2[0-3]"),
    r"[ \t]+",
    field_pattern!("0?[1-9]|[12][0-9]|3[01]"),
    r"[ \t]+",
    field_pattern!(concat!("0?[1-9]|1[0-2]|", month_names_pattern!())),
    r"[ \t]+",
    field_pattern!(concat!("0?[0-7]|", weekday_names_pattern!())),
    r")[ \t]*$"
);

/// Why a cron schedule could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The schedule is empty or only whitespace.
    #[error("cron schedule is empty")]
    Empty,
    /// The schedule does not have exactly five fields.
    #[error(
        "cron schedule must have 5 fields (minute hour day-of-month month day-of-week), found {found}"
    )]
    WrongFieldCount {
        /// Number of whitespace-separated fields found.
        found: usize,
    },
    /// The schedule starts with `@` but is not a supported macro.
    #[error(
        "unknown cron macro `{0}` (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"
    )]
    UnknownMacro(String),
    /// A field contains text that is not a number, name, range, step or list.
    #[error("invalid {field} value `{value}`")]
    InvalidValue {
        /// Name of the field ("minute", "hour", "day of month", "month", "day of week").
        field: &'static str,
        /// The offending text.
        value: String,
    },
    /// A number lies outside the field's allowed range.
    #[error("{field} value {value} is out of range {min}-{max}")]
    OutOfRange {
        /// Name of the field.
        field: &'static str,
        /// The number given.
        value: u32,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
    },
    /// A range's start is greater than its end.
    #[error("invalid {field} range {start}-{end}: start is greater than end")]
    InvalidRange {
        /// Name of the field.
        field: &'static str,
        /// Start of the range.
        start: u32,
        /// End of the range.
        end: u32,
    },
    /// A step of zero (`*/0`).
    #[error("{field} step must be at least 1")]
    ZeroStep {
        /// Name of the field.
        field: &'static str,
    },
}

/// A parsed standard five-field cron schedule.
///
/// Each field is stored as a bitset (bit `n` set means value `n` matches).
/// Day of week uses 0-6 with 0 = Sunday (7 is accepted on input as Sunday).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_restricted: bool,
    dow_restricted: bool,
    /// The same schedule, for croner's evaluation.
    cron: croner::Cron,
}

/// Static description of one cron field.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Three-letter names; `names[i]` stands for `min + i`.
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

/// How far ahead [`CronSchedule::next_after`] searches, in years.
const SEARCH_YEARS: i64 = 5;

impl FromStr for CronSchedule {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim_matches([' ', '\t']);
        if trimmed.is_empty() {
            return Err(CronError::Empty);
        }
        let expanded = if trimmed.starts_with('@') {
            match trimmed {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                other => return Err(CronError::UnknownMacro(other.to_owned())),
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded
            .split([' ', '\t'])
            .filter(|f| !f.is_empty())
            .collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(CronError::WrongFieldCount {
                found: fields.len(),
            });
        };
        let mut days_of_week = parse_field(dow, &DAY_OF_WEEK)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        let minutes = parse_field(minute, &MINUTE)?;
        let hours = parse_field(hour, &HOUR)?;
        let days_of_month = parse_field(dom, &DAY_OF_MONTH)?;
        let months = parse_field(month, &MONTH)?;
        // Kubernetes CronJob semantics (robfig/cron): only `*` (or `*/1`) leaves a day
        // field unrestricted; a stepped `*/n` restricts it, so the OR rule applies.
        let (dom_restricted, dow_restricted) = (!is_unrestricted(dom), !is_unrestricted(dow));
        let canonical = canonical(
            [minutes, hours, days_of_month, months, days_of_week],
            dom_restricted,
            dow_restricted,
        );
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(&canonical)
            .map_err(|e| CronError::InvalidValue {
                field: "schedule",
                value: format!("{trimmed} ({e})"),
            })?;
        Ok(CronSchedule {
            minutes,
            hours: narrow(hours),
            days_of_month: narrow(days_of_month),
            months: narrow(months),
            days_of_week: narrow(days_of_week),
            dom_restricted,
            dow_restricted,
            cron,
        })
    }
}

/// The schedule as croner reads it with the meaning a Kubernetes CronJob gives it: every
/// field an explicit list of its values (no steps, names or `7`), except a day field left
/// unrestricted, which is `*`: croner, like cron, ORs the two day fields only when neither is
/// `*`, and Kubernetes treats `*/1` as unrestricted and any other step as restricted.
fn canonical(fields: [u64; 5], dom_restricted: bool, dow_restricted: bool) -> String {
    let list = |bits: u64| {
        (0..64)
            .filter(|n| bits & (1 << n) != 0)
            .map(|n: u32| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let [minutes, hours, dom, months, dow] = fields;
    let day = |bits: u64, restricted: bool| {
        if restricted {
            list(bits)
        } else {
            "*".to_owned()
        }
    };
    format!(
        "{} {} {} {} {}",
        list(minutes),
        list(hours),
        day(dom, dom_restricted),
        list(months),
        day(dow, dow_restricted)
    )
}

/// Whether a day field leaves the day unconstrained for the day-of-month / day-of-week rule.
fn is_unrestricted(field: &str) -> bool {
    field == "*" || field == "*/1"
}

/// Narrows a field bitset; the parser never sets bits above the field maximum.
fn narrow<T: TryFrom<u64> + Default>(bits: u64) -> T {
    T::try_from(bits).unwrap_or_default()
}

/// Parses a comma-separated field into a bitset over `spec.min..=spec.max`.
fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, CronError> {
    let mut bits = 0u64;
    for item in text.split(',') {
        bits |= parse_item(item, text, spec)?;
    }
    Ok(bits)
}

/// Parses one list item: `*`, `n`, `a-b`, optionally followed by `/step`.
fn parse_item(item: &str, field_text: &str, spec: &FieldSpec) -> Result<u64, CronError> {
    let invalid = |value: &str| CronError::InvalidValue {
        field: spec.name,
        value: value.to_owned(),
    };
    if item.is_empty() {
        return Err(invalid(field_text));
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(parse_step(step, item, spec)?)),
        None => (item, None),
    };
    let (start, end) = if range == "*" {
        (spec.min, spec.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let start = parse_value(a, item, spec)?;
        let end = parse_value(b, item, spec)?;
        if start > end {
            return Err(CronError::InvalidRange {
                field: spec.name,
                start,
                end,
            });
        }
        (start, end)
    } else {
        let start = parse_value(range, item, spec)?;
        (start, if step.is_some() { spec.max } else { start })
    };
    let step = step.unwrap_or(1);
    let mut bits = 0u64;
    let mut value = start;
    while value <= end {
        bits |= 1 << value;
        value += step;
    }
    Ok(bits)
}

/// Parses the step after `/`: one or two digits, not zero.
fn parse_step(text: &str, item: &str, spec: &FieldSpec) -> Result<u32, CronError> {
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CronError::InvalidValue {
            field: spec.name,
            value: item.to_owned(),
        });
    }
    match text.parse::<u32>() {
        Ok(0) => Err(CronError::ZeroStep { field: spec.name }),
        Ok(step) => Ok(step),
        Err(_) => Err(CronError::InvalidValue {
            field: spec.name,
            value: item.to_owned(),
        }),
    }
}

/// Parses a single value: a one- or two-digit number or a three-letter name.
fn parse_value(token: &str, item: &str, spec: &FieldSpec) -> Result<u32, CronError> {
    let invalid = |value: &str| CronError::InvalidValue {
        field: spec.name,
        value: value.to_owned(),
    };
    if token.is_empty() {
        return Err(invalid(item));
    }
    if token.bytes().all(|b| b.is_ascii_digit()) {
        let value = token.parse::<u32>().map_err(|_| invalid(token))?;
        let out_of_range = || CronError::OutOfRange {
            field: spec.name,
            value,
            min: spec.min,
            max: spec.max,
        };
        if value < spec.min || value > spec.max {
            return Err(out_of_range());
        }
        if token.len() > 2 {
            return Err(invalid(token));
        }
        return Ok(value);
    }
    spec.names
        .iter()
        .zip(spec.min..)
        .find(|(name, _)| name.eq_ignore_ascii_case(token))
        .map(|(_, value)| value)
        .ok_or_else(|| invalid(token))
}

impl CronSchedule {
    /// Bitset of matching minutes (bit `n` = minute `n`, 0-59).
    pub fn minutes(&self) -> u64 {
        self.minutes
    }

    /// Bitset of matching hours (bit `n` = hour `n`, 0-23).
    pub fn hours(&self) -> u32 {
        self.hours
    }

    /// Bitset of matching days of month (bit `n` = day `n`, 1-31).
    pub fn days_of_month(&self) -> u32 {
        self.days_of_month
    }

    /// Bitset of matching months (bit `n` = month `n`, 1-12).
    pub fn months(&self) -> u16 {
        self.months
    }

    /// Bitset of matching days of week (bit `n` = weekday `n`, 0 = Sunday .. 6 = Saturday).
    pub fn days_of_week(&self) -> u8 {
        self.days_of_week
    }

    /// Whether the day-of-month field was restricted (did not start with `*`).
    pub fn dom_restricted(&self) -> bool {
        self.dom_restricted
    }

    /// Whether the day-of-week field was restricted (did not start with `*`).
    pub fn dow_restricted(&self) -> bool {
        self.dow_restricted
    }

    /// Whether any date can match: a restricted day of week always can (the day fields are
    /// ORed, or the day of month is unrestricted); otherwise some listed month must have
    /// one of the listed days (February counting its 29th).
    fn can_fire(&self) -> bool {
        const DAYS_IN_MONTH: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        !self.dom_restricted
            || self.dow_restricted
            || (1..=12u32).any(|month| {
                self.months & (1 << month) != 0
                    && (1..=DAYS_IN_MONTH[month as usize - 1])
                        .any(|day| self.days_of_month & (1 << day) != 0)
            })
    }

    /// The five fields croner evaluates (see [`canonical`]).
    pub fn canonical(&self) -> String {
        self.cron.pattern.to_string()
    }

    /// Whether the schedule fires in the UTC minute containing `at`.
    pub fn matches(&self, at: Timestamp) -> bool {
        let minute = TimestampRound::new()
            .smallest(Unit::Minute)
            .mode(RoundMode::Floor);
        at.round(minute).is_ok_and(|at| {
            self.cron
                .is_time_matching(&at.to_zoned(TimeZone::UTC))
                .unwrap_or(false)
        })
    }

    /// The first matching minute strictly after `after`, evaluated in UTC (the time zone of
    /// the operator's CronJobs).
    ///
    /// When both day of month and day of week are restricted, a day matches
    /// if either does (as Kubernetes CronJobs do); otherwise both must match. Returns `None`
    /// if nothing matches within five years of `after` (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.next_after_in(after, TimeZone::UTC)
    }

    /// The first matching minute strictly after `after` on the wall clock of `zone` (as a
    /// CronJob with that `timeZone` runs; croner resolves daylight-saving gaps and overlaps);
    /// `None` as for [`Self::next_after`].
    pub fn next_after_in(&self, after: Timestamp, zone: TimeZone) -> Option<Timestamp> {
        if !self.can_fire() {
            // croner would search for centuries before it gives up.
            return None;
        }
        let start = after.to_zoned(zone);
        let limit = start.checked_add(SEARCH_YEARS.years()).ok()?.timestamp();
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp()).filter(|next| *next <= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> CronSchedule {
        s.parse().unwrap()
    }

    fn err(s: &str) -> CronError {
        s.parse::<CronSchedule>().unwrap_err()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> Option<Timestamp> {
        parse(schedule).next_after(ts(after))
    }

    fn bits(values: &[u32]) -> u64 {
        values.iter().fold(0, |acc, v| acc | 1 << v)
    }

    // ---- parsing: each syntax form ----

    #[test]
    fn parses_star_as_full_range() {
        let s = parse("* * * * *");
        assert_eq!(s.minutes(), (1 << 60) - 1);
        assert_eq!(s.hours(), (1 << 24) - 1);
        assert_eq!(s.days_of_month(), ((1u64 << 32) - 2) as u32);
        assert_eq!(s.months(), 0b1_1111_1111_1110);
        assert_eq!(s.days_of_week(), 0b111_1111);
        assert!(!s.dom_restricted());
        assert!(!s.dow_restricted());
    }

    #[test]
    fn parses_single_numbers() {
        let s = parse("5 3 15 6 2");
        assert_eq!(s.minutes(), bits(&[5]));
        assert_eq!(u64::from(s.hours()), bits(&[3]));
        assert_eq!(u64::from(s.days_of_month()), bits(&[15]));
        assert_eq!(u64::from(s.months()), bits(&[6]));
        assert_eq!(u64::from(s.days_of_week()), bits(&[2]));
        assert!(s.dom_restricted());
        assert!(s.dow_restricted());
    }

    #[test]
    fn parses_leading_zero_numbers() {
        assert_eq!(parse("05 03 01 02 0"), parse("5 3 1 2 0"));
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(parse("10-12 * * * *").minutes(), bits(&[10, 11, 12]));
    }

    #[test]
    fn parses_star_step() {
        assert_eq!(parse("*/15 * * * *").minutes(), bits(&[0, 15, 30, 45]));
    }

    #[test]
    fn parses_range_step() {
        assert_eq!(parse("5-10/2 * * * *").minutes(), bits(&[5, 7, 9]));
    }

    #[test]
    fn parses_start_step_to_field_max() {
        assert_eq!(parse("* 20/2 * * *").hours() as u64, bits(&[20, 22]));
    }

    #[test]
    fn parses_comma_lists() {
        let s = parse("0,30 * 1,15 * *");
        assert_eq!(s.minutes(), bits(&[0, 30]));
        assert_eq!(u64::from(s.days_of_month()), bits(&[1, 15]));
    }

    #[test]
    fn parses_month_names_case_insensitively() {
        assert_eq!(parse("0 0 1 jan,Jun-AUG *"), parse("0 0 1 1,6-8 *"));
    }

    #[test]
    fn parses_weekday_names_case_insensitively() {
        assert_eq!(parse("0 0 * * mon-FRI"), parse("0 0 * * 1-5"));
        assert_eq!(parse("0 0 * * Sun,sat"), parse("0 0 * * 0,6"));
    }

    #[test]
    fn parses_sunday_as_seven() {
        assert_eq!(parse("0 0 * * 7"), parse("0 0 * * 0"));
        assert_eq!(
            u64::from(parse("0 0 * * 5-7").days_of_week()),
            bits(&[0, 5, 6])
        );
    }

    #[test]
    fn parses_macros() {
        assert_eq!(parse("@yearly"), parse("0 0 1 1 *"));
        assert_eq!(parse("@annually"), parse("0 0 1 1 *"));
        assert_eq!(parse("@monthly"), parse("0 0 1 * *"));
        assert_eq!(parse("@weekly"), parse("0 0 * * 0"));
        assert_eq!(parse("@daily"), parse("0 0 * * *"));
        assert_eq!(parse("@midnight"), parse("0 0 * * *"));
        assert_eq!(parse("@hourly"), parse("0 * * * *"));
    }

    #[test]
    fn parses_tabs_and_repeated_spaces_as_separators() {
        assert_eq!(parse(" 0\t3  * *\t* "), parse("0 3 * * *"));
    }

    #[test]
    fn star_step_restricts_a_day_field_as_kubernetes_does() {
        let s = parse("0 0 */2 * */2");
        assert!(s.dom_restricted());
        assert!(s.dow_restricted());
        let s = parse("0 0 */1 * *");
        assert!(!s.dom_restricted());
        assert!(!s.dow_restricted());
    }

    // ---- parsing: each error kind ----

    #[test]
    fn rejects_empty_schedule() {
        assert_eq!(err(""), CronError::Empty);
        assert_eq!(err(" \t "), CronError::Empty);
    }

    #[test]
    fn rejects_wrong_field_count() {
        assert_eq!(err("* * * *"), CronError::WrongFieldCount { found: 4 });
        assert_eq!(err("* * * * * *"), CronError::WrongFieldCount { found: 6 });
    }

    #[test]
    fn rejects_unknown_macro() {
        assert_eq!(err("@reboot"), CronError::UnknownMacro("@reboot".into()));
        assert_eq!(err("@DAILY"), CronError::UnknownMacro("@DAILY".into()));
    }

    #[test]
    fn rejects_invalid_values() {
        let invalid = |field, value: &str| CronError::InvalidValue {
            field,
            value: value.into(),
        };
        assert_eq!(err("abc * * * *"), invalid("minute", "abc"));
        assert_eq!(err("1,,2 * * * *"), invalid("minute", "1,,2"));
        assert_eq!(err("* 5/ * * *"), invalid("hour", "5/"));
        assert_eq!(err("* * * FOO *"), invalid("month", "FOO"));
        assert_eq!(err("* * * * MONDAY"), invalid("day of week", "MONDAY"));
        assert_eq!(err("* * JAN * *"), invalid("day of month", "JAN"));
        assert_eq!(err("005 * * * *"), invalid("minute", "005"));
        assert_eq!(err("-5 * * * *"), invalid("minute", "-5"));
    }

    #[test]
    fn rejects_out_of_range_values() {
        let oor = |field, value, min, max| CronError::OutOfRange {
            field,
            value,
            min,
            max,
        };
        assert_eq!(err("60 * * * *"), oor("minute", 60, 0, 59));
        assert_eq!(err("0 24 * * *"), oor("hour", 24, 0, 23));
        assert_eq!(err("0 0 0 * *"), oor("day of month", 0, 1, 31));
        assert_eq!(err("0 0 32 * *"), oor("day of month", 32, 1, 31));
        assert_eq!(err("0 0 * 13 *"), oor("month", 13, 1, 12));
        assert_eq!(err("0 0 * * 8"), oor("day of week", 8, 0, 7));
    }

    #[test]
    fn rejects_reversed_range() {
        assert_eq!(
            err("10-5 * * * *"),
            CronError::InvalidRange {
                field: "minute",
                start: 10,
                end: 5
            }
        );
    }

    #[test]
    fn rejects_zero_step() {
        assert_eq!(err("*/0 * * * *"), CronError::ZeroStep { field: "minute" });
    }

    #[test]
    fn error_messages_name_the_field() {
        assert_eq!(
            err("61 3 * * *").to_string(),
            "minute value 61 is out of range 0-59"
        );
        assert_eq!(
            err("0 0 * * 1-x").to_string(),
            "invalid day of week value `x`"
        );
        assert_eq!(
            err("0 0 20-10 * *").to_string(),
            "invalid day of month range 20-10: start is greater than end"
        );
        assert_eq!(
            err("0 */0 * * *").to_string(),
            "hour step must be at least 1"
        );
    }

    // ---- next_after ----

    #[test]
    fn next_every_fifteen_minutes() {
        let s = "*/15 * * * *";
        assert_eq!(
            next(s, "2024-05-01T10:07:30Z"),
            Some(ts("2024-05-01T10:15:00Z"))
        );
        assert_eq!(
            next(s, "2024-05-01T10:45:00Z"),
            Some(ts("2024-05-01T11:00:00Z"))
        );
        assert_eq!(
            next(s, "2024-05-01T23:59:59.5Z"),
            Some(ts("2024-05-02T00:00:00Z"))
        );
    }

    #[test]
    fn next_daily_at_three_crosses_midnight() {
        let s = "0 3 * * *";
        assert_eq!(
            next(s, "2024-01-31T03:00:00Z"),
            Some(ts("2024-02-01T03:00:00Z"))
        );
        assert_eq!(
            next(s, "2024-12-31T23:59:00Z"),
            Some(ts("2025-01-01T03:00:00Z"))
        );
        assert_eq!(
            next(s, "2024-06-10T02:59:59Z"),
            Some(ts("2024-06-10T03:00:00Z"))
        );
    }

    #[test]
    fn next_monthly_on_31st_skips_short_months() {
        let s = "0 0 31 * *";
        assert_eq!(
            next(s, "2024-01-31T00:00:00Z"),
            Some(ts("2024-03-31T00:00:00Z"))
        );
        assert_eq!(
            next(s, "2024-03-31T00:00:00Z"),
            Some(ts("2024-05-31T00:00:00Z"))
        );
    }

    #[test]
    fn next_feb_29_waits_for_leap_year() {
        let s = "0 12 29 2 *";
        assert_eq!(
            next(s, "2023-06-01T00:00:00Z"),
            Some(ts("2024-02-29T12:00:00Z"))
        );
        assert_eq!(
            next(s, "2024-03-01T00:00:00Z"),
            Some(ts("2028-02-29T12:00:00Z"))
        );
    }

    #[test]
    fn next_dom_and_dow_both_restricted_match_either() {
        // Fridays or the 13th: 2024-10-13 is a Sunday.
        let s = "0 0 13 * FRI";
        assert_eq!(
            next(s, "2024-10-01T00:00:00Z"),
            Some(ts("2024-10-04T00:00:00Z"))
        );
        assert_eq!(
            next(s, "2024-10-11T00:00:00Z"),
            Some(ts("2024-10-13T00:00:00Z"))
        );
        assert_eq!(
            next(s, "2024-10-13T00:00:00Z"),
            Some(ts("2024-10-18T00:00:00Z"))
        );
    }

    #[test]
    fn next_dom_star_step_with_dow_matches_either() {
        // Odd days OR Mondays: 2024-09-02 is a Monday (even day), reached before 09-03.
        assert_eq!(
            next("0 0 */2 * MON", "2024-09-01T00:00:00Z"),
            Some(ts("2024-09-02T00:00:00Z"))
        );
    }

    #[test]
    fn next_with_weekday_names_skips_weekend() {
        // 2024-09-06 is a Friday.
        assert_eq!(
            next("30 9 * * mon-fri", "2024-09-06T10:00:00Z"),
            Some(ts("2024-09-09T09:30:00Z"))
        );
    }

    #[test]
    fn next_with_sunday_as_seven() {
        // 2024-09-07 is a Saturday.
        assert_eq!(
            next("0 0 * * 7", "2024-09-07T12:00:00Z"),
            Some(ts("2024-09-08T00:00:00Z"))
        );
    }

    #[test]
    fn croner_reads_explicit_lists_and_a_star_for_an_unrestricted_day_field() {
        assert_eq!(
            parse("*/20 9-17/4 */1 JAN,jul sun-tue,7").canonical(),
            "0,20,40 9,13,17 * 1,7 0,1,2"
        );
        assert_eq!(
            parse("@weekly").canonical(),
            "0 0 * 1,2,3,4,5,6,7,8,9,10,11,12 0"
        );
        // A stepped day field is restricted (Kubernetes), so it is a list, not croner's `*`.
        assert_eq!(
            parse("0 0 */10 * 1").canonical(),
            "0 0 1,11,21,31 1,2,3,4,5,6,7,8,9,10,11,12 1"
        );
    }

    #[test]
    fn next_in_a_zone_follows_its_wall_clock() {
        let plus_two = TimeZone::fixed(k8s_openapi::jiff::tz::offset(2));
        let at_three = parse("0 3 * * *");
        assert_eq!(
            at_three.next_after_in(ts("2027-01-10T00:00:00Z"), plus_two),
            Some(ts("2027-01-10T01:00:00Z"))
        );
        assert_eq!(
            at_three.next_after(ts("2027-01-10T00:00:00Z")),
            Some(ts("2027-01-10T03:00:00Z"))
        );
    }

    #[test]
    fn an_impossible_schedule_is_decided_quickly() {
        // The settings layer asks this of every RetentionPolicy at every reconcile.
        let started = std::time::Instant::now();
        assert_eq!(next("0 0 30 2 *", "1970-01-01T00:00:00Z"), None);
        assert!(
            started.elapsed() < std::time::Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn next_impossible_schedule_is_none() {
        assert_eq!(next("0 0 30 2 *", "2024-01-01T00:00:00Z"), None);
        assert_eq!(next("0 0 31 4,6,9,11 *", "2024-01-01T00:00:00Z"), None);
    }

    #[test]
    fn next_beyond_five_years_is_none() {
        // 2100 is not a leap year: the next Feb 29 after 2096 is in 2104.
        assert_eq!(next("0 0 29 2 *", "2096-03-01T00:00:00Z"), None);
    }

    #[test]
    fn next_near_maximum_timestamp_is_none() {
        assert_eq!(parse("0 0 1 1 *").next_after(Timestamp::MAX), None);
    }

    #[test]
    fn next_before_epoch_with_fraction() {
        assert_eq!(
            next("* * * * *", "1969-12-31T23:59:59.5Z"),
            Some(ts("1970-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn matches_reports_firing_minute() {
        let s = parse("30 9 * * MON-FRI");
        assert!(s.matches(ts("2024-09-09T09:30:42Z")));
        assert!(!s.matches(ts("2024-09-08T09:30:00Z")));
        assert!(!s.matches(ts("2024-09-09T09:31:00Z")));
    }

    // ---- CRON_SCHEDULE_PATTERN ----

    fn pattern() -> regex::Regex {
        regex::Regex::new(CRON_SCHEDULE_PATTERN).unwrap()
    }

    const VALID: &[&str] = &[
        "* * * * *",
        "*/15 * * * *",
        "0 3 * * *",
        "0 0 1,15 * *",
        "5-10/2 * * * *",
        "0 3 * * MON-FRI",
        "0 3 * * mon-fri",
        "0 0 1 JAN,jul *",
        "0 0 * jan-Dec/3 *",
        "59 23 31 12 7",
        "0 0 * * 0",
        "05 09 01 02 06",
        "0 20/2 * * *",
        "0,15,30,45 0-6,18-23 */2 1-6/2 SUN",
        "1-59/59 * * * *",
        "0\t3\t*\t*\t*",
        "  0   3 * * *  ",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];

    const MALFORMED: &[&str] = &[
        "",
        " ",
        "abc",
        "@reboot",
        "@DAILY",
        "@daily *",
        "60 3 * * *",
        "61 3 * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 0 32 * *",
        "0 0 * 0 *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "* * * *",
        "* * * * * *",
        "1,,2 * * * *",
        ",1 * * * *",
        "1, * * * *",
        "*/ * * * *",
        "*/100 * * * *",
        "1-*/2 * * * *",
        "*-5 * * * *",
        "-5 * * * *",
        "005 * * * *",
        "? * * * *",
        "0 0 * * MONDAY",
        "0 0 JAN * *",
        "0 0 * FOO *",
        "0 0 * * 1-5-6",
        "1/2/3 * * * *",
        "0 3 * * *\n",
        "0\n3 * * * *",
        "0 3 * * 1 # comment",
    ];

    #[test]
    fn pattern_accepts_every_valid_schedule() {
        let re = pattern();
        for s in VALID {
            assert!(s.parse::<CronSchedule>().is_ok(), "parser rejected {s:?}");
            assert!(re.is_match(s), "pattern rejected {s:?}");
        }
    }

    #[test]
    fn pattern_rejects_every_malformed_schedule() {
        let re = pattern();
        for s in MALFORMED {
            assert!(s.parse::<CronSchedule>().is_err(), "parser accepted {s:?}");
            assert!(!re.is_match(s), "pattern accepted {s:?}");
        }
    }

    #[test]
    fn pattern_leaves_zero_step_and_reversed_range_to_parser() {
        let re = pattern();
        for s in ["*/0 * * * *", "10-5 * * * *"] {
            assert!(re.is_match(s));
            assert!(s.parse::<CronSchedule>().is_err());
        }
    }

    #[test]
    fn pattern_agrees_with_parser_on_generated_fields() {
        // The pattern matches exactly what the parser accepts, except zero
        // steps and reversed ranges, which only the parser rejects.
        let re = pattern();
        let mut atoms: Vec<String> = (0..=99).map(|n| n.to_string()).collect();
        atoms.extend((0..=9).map(|n| format!("0{n}")));
        atoms.extend(["", "*", "000", "010", "100", "xyz", "?", "L", "-1"].map(String::from));
        atoms.extend(
            MONTH
                .names
                .iter()
                .chain(DAY_OF_WEEK.names)
                .flat_map(|n| [n.to_string(), n.to_lowercase(), n[..2].to_string()]),
        );
        let mut items = Vec::new();
        for a in &atoms {
            for suffix in [
                "", "/2", "/0", "/", "/100", "-5", "-9/3", "-JUN", "-sat", ",1",
            ] {
                items.push(format!("{a}{suffix}"));
            }
        }
        for position in 0..5 {
            for item in &items {
                let mut fields = ["1"; 5];
                fields[position] = item;
                let schedule = fields.join(" ");
                let parsed = schedule.parse::<CronSchedule>();
                let matched = re.is_match(&schedule);
                match parsed {
                    Ok(_) => assert!(matched, "pattern rejected {schedule:?}"),
                    Err(CronError::ZeroStep { .. } | CronError::InvalidRange { .. }) => {}
                    Err(e) => assert!(!matched, "pattern accepted {schedule:?} ({e})"),
                }
            }
        }
    }

    #[test]
    fn pattern_uses_only_portable_syntax() {
        for forbidden in [
            "(?=", "(?!", "(?<", "(?>", "(?i", "\\d", "\\1", "*+", "++", "?+",
        ] {
            assert!(
                !CRON_SCHEDULE_PATTERN.contains(forbidden),
                "pattern contains {forbidden:?}"
            );
        }
        assert!(CRON_SCHEDULE_PATTERN.starts_with('^'));
        assert!(CRON_SCHEDULE_PATTERN.ends_with('$'));
    }
}
