//! Date formats as a mapping's `format` writes them (`yyyy/MM/dd HH:mm||epoch_millis`), for
//! reading the dates `_source` holds as sent.
//!
//! The built-in names of the Elasticsearch reference and Java `DateTimeFormatter` patterns
//! (the letters `y u M d H h a m s S Z X x E` and quoted literals) are understood. Values are
//! tried against each alternative in order, as the cluster does.

use std::fmt;

/// The alternatives of one `format`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DateFormats(Vec<DateFormat>);

#[derive(Debug, Clone, PartialEq)]
enum DateFormat {
    EpochMillis,
    EpochSecond,
    /// ISO 8601 as `strict_date_optional_time` reads it: a date, optionally a time with
    /// optional seconds and fraction, optionally an offset.
    Iso,
    Pattern(Vec<Item>),
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Number {
        field: Part,
        min: usize,
        max: usize,
    },
    /// Fraction of a second, `S` repeated: up to nine digits.
    Fraction,
    MonthName,
    DayName,
    AmPm,
    /// `Z`, `X`, `x`: `Z`, `+01`, `+0100` or `+01:00`.
    Offset,
    Literal(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    Year,
    Month,
    Day,
    Hour,
    Hour12,
    Minute,
    Second,
}

/// Why a value is not a date in any of the formats.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NotADate;

impl fmt::Display for NotADate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a date in the field's format")
    }
}

impl DateFormats {
    /// `strict_date_optional_time||epoch_millis`, what a mapping without `format` reads.
    pub fn default_for_mapping() -> Self {
        Self(vec![DateFormat::Iso, DateFormat::EpochMillis])
    }

    /// Parses a `format` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let formats = text
            .split("||")
            .map(|one| {
                let one = one.trim();
                match named(one) {
                    Some(format) => Ok(format),
                    None if one.contains('_') => {
                        Err(format!("unknown built-in date format {one:?}"))
                    }
                    None => pattern(one).map(DateFormat::Pattern),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(formats))
    }

    /// Nanoseconds since the epoch of a JSON number (epoch formats, else its text).
    pub fn number_nanos(&self, number: f64, text: &str) -> Result<i64, NotADate> {
        for format in &self.0 {
            let scale = match format {
                DateFormat::EpochMillis => 1e6,
                DateFormat::EpochSecond => 1e9,
                _ => continue,
            };
            let nanos = (number * scale).round();
            if nanos.is_finite() && nanos.abs() < 9.2e18 {
                return Ok(nanos as i64);
            }
            return Err(NotADate);
        }
        self.string_nanos(text)
    }

    /// Nanoseconds since the epoch of a string value.
    pub fn string_nanos(&self, text: &str) -> Result<i64, NotADate> {
        for format in &self.0 {
            let parsed = match format {
                DateFormat::EpochMillis => epoch(text, 1e6),
                DateFormat::EpochSecond => epoch(text, 1e9),
                DateFormat::Iso => iso(text),
                DateFormat::Pattern(items) => with_pattern(items, text),
            };
            if let Some(nanos) = parsed {
                return Ok(nanos);
            }
        }
        Err(NotADate)
    }
}

fn epoch(text: &str, scale: f64) -> Option<i64> {
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == '.')
    {
        return None;
    }
    if !text.contains('.') {
        let whole: i64 = text.parse().ok()?;
        return whole.checked_mul(scale as i64);
    }
    let value: f64 = text.parse().ok()?;
    let nanos = (value * scale).round();
    (nanos.is_finite() && nanos.abs() < 9.2e18).then_some(nanos as i64)
}

/// The built-in formats, by name (with or without `strict_`).
fn named(name: &str) -> Option<DateFormat> {
    let name = name.strip_prefix("strict_").unwrap_or(name);
    // The built-in patterns are valid (a test reads each); were one not, its name would be
    // unknown rather than a panic.
    let p = |text: &str| pattern(text).ok().map(DateFormat::Pattern);
    Some(match name {
        "epoch_millis" => DateFormat::EpochMillis,
        "epoch_second" => DateFormat::EpochSecond,
        "date_optional_time"
        | "date_optional_time_nanos"
        | "date_time"
        | "date_time_no_millis"
        | "date_hour_minute_second"
        | "date_hour_minute_second_fraction"
        | "date_hour_minute_second_millis"
        | "date_hour_minute"
        | "date_hour"
        | "date"
        | "year_month_day" => DateFormat::Iso,
        "basic_date" => p("yyyyMMdd")?,
        "basic_date_time" => p("yyyyMMdd'T'HHmmss.SSSZ")?,
        "basic_date_time_no_millis" => p("yyyyMMdd'T'HHmmssZ")?,
        "year_month" => p("yyyy-MM")?,
        "year" => p("yyyy")?,
        _ => return None,
    })
}

/// Reads a Java `DateTimeFormatter` pattern.
fn pattern(text: &str) -> Result<Vec<Item>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '\'' {
            let end = chars
                .iter()
                .skip(i + 1)
                .position(|&c| c == '\'')
                .ok_or_else(|| format!("unterminated quote in {text:?}"))?;
            let literal: String = chars.iter().skip(i + 1).take(end).collect();
            items.push(Item::Literal(if literal.is_empty() {
                "'".to_owned()
            } else {
                literal
            }));
            i += end + 2;
            continue;
        }
        let run = chars.iter().skip(i).take_while(|&&d| d == c).count();
        let number = |field, fixed: usize| Item::Number {
            field,
            min: run.min(fixed),
            max: if run == 1 { fixed } else { run.max(fixed) },
        };
        let item = match c {
            'y' | 'u' => Item::Number {
                field: Part::Year,
                min: if run == 2 { 2 } else { 1 },
                max: if run == 2 { 2 } else { 9 },
            },
            'M' if run >= 3 => Item::MonthName,
            'M' => number(Part::Month, 2),
            'd' => number(Part::Day, 2),
            'H' => number(Part::Hour, 2),
            'h' => number(Part::Hour12, 2),
            'm' => number(Part::Minute, 2),
            's' => number(Part::Second, 2),
            'S' => Item::Fraction,
            'a' => Item::AmPm,
            'E' => Item::DayName,
            'Z' | 'X' | 'x' => Item::Offset,
            c if c.is_ascii_alphabetic() => {
                return Err(format!("pattern letter {c:?} in {text:?} is not supported"));
            }
            c => Item::Literal(c.to_string().repeat(run)),
        };
        items.push(item);
        i += run;
    }
    Ok(items)
}

/// Date and time parts as parsed, before they make an instant.
#[derive(Default)]
struct Parts {
    year: Option<i64>,
    month: Option<u32>,
    day: Option<u32>,
    hour: u32,
    hour12: Option<u32>,
    pm: Option<bool>,
    minute: u32,
    second: u32,
    nanos: u32,
    offset_seconds: i64,
}

impl Parts {
    fn nanos(&self) -> Option<i64> {
        let year = self.year?;
        let (month, day) = (self.month.unwrap_or(1), self.day.unwrap_or(1));
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let hour = match (self.hour12, self.pm) {
            (Some(h), Some(pm)) if (1..=12).contains(&h) => h % 12 + if pm { 12 } else { 0 },
            (Some(_), _) => return None,
            (None, _) => self.hour,
        };
        if hour > 23 || self.minute > 59 || self.second > 59 {
            return None;
        }
        let seconds = days_from_civil(year, month, day) * 86_400
            + i64::from(hour * 3600 + self.minute * 60 + self.second)
            - self.offset_seconds;
        seconds
            .checked_mul(1_000_000_000)?
            .checked_add(i64::from(self.nanos))
    }
}

fn with_pattern(items: &[Item], text: &str) -> Option<i64> {
    let mut parts = Parts::default();
    let mut rest = text;
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Literal(literal) => rest = rest.strip_prefix(literal.as_str())?,
            Item::Number { field, min, max } => {
                // Numbers written side by side (`yyyyMMdd`): this one leaves the digits the
                // following ones need, as Java's adjacent value parsing does.
                let following: usize = items
                    .iter()
                    .skip(i + 1)
                    .map_while(|item| match item {
                        Item::Number { min, .. } => Some(*min),
                        _ => None,
                    })
                    .sum();
                let available = rest.bytes().take_while(u8::is_ascii_digit).count();
                let max = if following > 0 {
                    (*max).min(available.saturating_sub(following))
                } else {
                    *max
                };
                let (value, after) = digits(rest, *min, max)?;
                rest = after;
                match field {
                    Part::Year => parts.year = Some(value),
                    Part::Month => parts.month = Some(value as u32),
                    Part::Day => parts.day = Some(value as u32),
                    Part::Hour => parts.hour = value as u32,
                    Part::Hour12 => parts.hour12 = Some(value as u32),
                    Part::Minute => parts.minute = value as u32,
                    Part::Second => parts.second = value as u32,
                }
            }
            Item::Fraction => {
                let (nanos, after) = fraction(rest)?;
                parts.nanos = nanos;
                rest = after;
            }
            Item::MonthName => {
                let (month, after) = month_name(rest)?;
                parts.month = Some(month);
                rest = after;
            }
            Item::DayName => {
                let letters = rest.chars().take_while(char::is_ascii_alphabetic).count();
                if letters == 0 {
                    return None;
                }
                rest = &rest[letters..];
            }
            Item::AmPm => {
                let upper = rest.get(..2)?.to_ascii_uppercase();
                parts.pm = Some(match upper.as_str() {
                    "AM" => false,
                    "PM" => true,
                    _ => return None,
                });
                rest = &rest[2..];
            }
            Item::Offset => {
                let (offset, after) = offset(rest)?;
                parts.offset_seconds = offset;
                rest = after;
            }
        }
    }
    if !rest.is_empty() {
        return None;
    }
    parts.nanos()
}

/// `yyyy-MM-dd`, then optionally `T` (or a space) and `HH`, `:mm`, `:ss`, `.fraction`,
/// then optionally an offset.
fn iso(text: &str) -> Option<i64> {
    let mut parts = Parts::default();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (year, rest) = digits(text, 4, 9)?;
    parts.year = Some(if negative { -year } else { year });
    let mut rest = rest;
    if let Some(after) = rest.strip_prefix('-') {
        let (month, after) = digits(after, 1, 2)?;
        parts.month = Some(month as u32);
        rest = after;
        if let Some(after) = rest.strip_prefix('-') {
            let (day, after) = digits(after, 1, 2)?;
            parts.day = Some(day as u32);
            rest = after;
        }
    }
    if let Some(after) = rest.strip_prefix('T').or_else(|| rest.strip_prefix('t')) {
        let (hour, after) = digits(after, 1, 2)?;
        parts.hour = hour as u32;
        rest = after;
        if let Some(after) = rest.strip_prefix(':') {
            let (minute, after) = digits(after, 1, 2)?;
            parts.minute = minute as u32;
            rest = after;
            if let Some(after) = rest.strip_prefix(':') {
                let (second, after) = digits(after, 1, 2)?;
                parts.second = second as u32;
                rest = after;
                if let Some(after) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(',')) {
                    let (nanos, after) = fraction(after)?;
                    parts.nanos = nanos;
                    rest = after;
                }
            }
        }
    }
    if !rest.is_empty() {
        let (offset, after) = offset(rest)?;
        if !after.is_empty() {
            return None;
        }
        parts.offset_seconds = offset;
    }
    parts.nanos()
}

fn digits(text: &str, min: usize, max: usize) -> Option<(i64, &str)> {
    let count = text
        .bytes()
        .take(max)
        .take_while(u8::is_ascii_digit)
        .count();
    if count < min.max(1) {
        return None;
    }
    Some((text[..count].parse().ok()?, &text[count..]))
}

fn fraction(text: &str) -> Option<(u32, &str)> {
    let count = text.bytes().take_while(u8::is_ascii_digit).count();
    if count == 0 || count > 9 {
        return None;
    }
    let value: u32 = text[..count].parse().ok()?;
    Some((value * 10u32.pow(9 - count as u32), &text[count..]))
}

fn offset(text: &str) -> Option<(i64, &str)> {
    if let Some(rest) = text.strip_prefix('Z').or_else(|| text.strip_prefix('z')) {
        return Some((0, rest));
    }
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, rest) = digits(&text[1..], 2, 2)?;
    let rest_after_colon = rest.strip_prefix(':').unwrap_or(rest);
    let (minutes, rest) = match digits(rest_after_colon, 2, 2) {
        Some((m, after)) => (m, after),
        None => (0, rest),
    };
    if hours > 18 || minutes > 59 {
        return None;
    }
    Some((sign * (hours * 3600 + minutes * 60), rest))
}

fn month_name(text: &str) -> Option<(u32, &str)> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let letters = text.chars().take_while(char::is_ascii_alphabetic).count();
    let word = text[..letters].to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| {
        word.len() >= 3 && (word == *m || (word.len() == 3 && m.starts_with(&word)))
    })?;
    Some((month as u32 + 1, &text[letters..]))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn values_read_in_their_formats() {
        // (format, value, expected milliseconds since the epoch, or None for "not a date").
        let cases: &[(&str, &str, Option<i64>)] = &[
            (
                "strict_date_optional_time||epoch_millis",
                "2024-01-02",
                Some(1_704_153_600_000),
            ),
            (
                "strict_date_optional_time||epoch_millis",
                "2024-01-02T03:04:05Z",
                Some(1_704_164_645_000),
            ),
            (
                "strict_date_optional_time||epoch_millis",
                "2024-01-02T03:04:05.678+01:00",
                Some(1_704_161_045_678),
            ),
            (
                "strict_date_optional_time||epoch_millis",
                "2024-01-02T03:04",
                Some(1_704_164_640_000),
            ),
            (
                "strict_date_optional_time||epoch_millis",
                "1700000000000",
                Some(1_700_000_000_000),
            ),
            (
                "strict_date_optional_time||epoch_millis",
                "2024-02-30",
                None,
            ),
            ("strict_date_optional_time||epoch_millis", "yesterday", None),
            ("date_optional_time", "1969-12-31T23:59:59.999Z", Some(-1)),
            (
                "yyyy/MM/dd||epoch_millis",
                "2024/01/02",
                Some(1_704_153_600_000),
            ),
            ("yyyy/MM/dd||epoch_millis", "2024-01-02", None),
            (
                "dd/MM/yyyy HH:mm",
                "02/01/2024 03:04",
                Some(1_704_164_640_000),
            ),
            ("d.M.yyyy", "2.1.2024", Some(1_704_153_600_000)),
            // Two letters take exactly two digits, as in Java.
            ("dd.MM.yyyy", "2.1.2024", None),
            ("yyyyMMdd", "20240102", Some(1_704_153_600_000)),
            (
                "basic_date_time",
                "20240102T030405.678Z",
                Some(1_704_164_645_678),
            ),
            (
                "basic_date_time_no_millis",
                "20240102T030405+0100",
                Some(1_704_161_045_000),
            ),
            (
                "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
                "2024-01-02T03:04:05.678-0200",
                Some(1_704_171_845_678),
            ),
            (
                "MMM d, yyyy h:mm a",
                "Jan 2, 2024 3:04 PM",
                Some(1_704_207_840_000),
            ),
            (
                "EEE, dd MMM yyyy HH:mm:ss Z",
                "Tue, 02 Jan 2024 03:04:05 +0000",
                Some(1_704_164_645_000),
            ),
            ("epoch_second", "1700000000", Some(1_700_000_000_000)),
            ("epoch_second", "1700000000.5", Some(1_700_000_000_500)),
            ("year_month", "2024-02", Some(1_706_745_600_000)),
            ("yyyy", "2024", Some(1_704_067_200_000)),
        ];
        for (format, value, expected) in cases {
            let formats = DateFormats::parse(format).unwrap();
            let got = formats.string_nanos(value).ok().map(|n| n.div_euclid(MS));
            assert_eq!(got, *expected, "{format} {value}");
        }
    }

    #[test]
    fn numbers_read_as_epochs_when_the_format_has_one() {
        let millis = DateFormats::default_for_mapping();
        assert_eq!(
            millis.number_nanos(1.7e12, "1700000000000"),
            Ok(1_700_000_000_000 * MS)
        );
        let seconds = DateFormats::parse("yyyy-MM-dd||epoch_second").unwrap();
        assert_eq!(
            seconds.number_nanos(1.7e9, "1700000000"),
            Ok(1_700_000_000_000 * MS)
        );
        // Without an epoch format a number is read as text in the patterns.
        let year = DateFormats::parse("yyyy").unwrap();
        assert_eq!(
            year.number_nanos(2024.0, "2024"),
            Ok(1_704_067_200_000 * MS)
        );
    }

    #[test]
    fn nanoseconds_are_kept() {
        let formats = DateFormats::parse("strict_date_optional_time_nanos").unwrap();
        assert_eq!(
            formats.string_nanos("1970-01-01T00:00:00.123456789Z"),
            Ok(123_456_789)
        );
    }

    #[test]
    fn unknown_formats_are_refused_by_name() {
        assert!(
            DateFormats::parse("week_date_nonsense")
                .unwrap_err()
                .contains("week_date_nonsense")
        );
        assert!(DateFormats::parse("yyyy-QQ").unwrap_err().contains("'Q'"));
        assert!(DateFormats::parse("yyyy 'unterminated").is_err());
    }
}
