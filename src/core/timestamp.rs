//! Points in time written in the config: RFC 3339 timestamps (`2026-12-31T00:00:00Z`,
//! `2026-12-31T01:00:00.250+01:00`) or integer unix seconds, as unix milliseconds. No
//! calendar library: a date becomes a day count with the days-from-civil conversion of the
//! proleptic Gregorian calendar.

use serde_json::Value;

/// Days from 1970-01-01 to `year-month-day` (negative before it). `month` is 1-12, `day`
/// 1-31; the date is not checked here.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // years start in March, so that the leap day is the last day of a year
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400); // 0..=399
    let m = i64::from(month);
    let march_based_month = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let day_of_year = (153 * march_based_month + 2) / 5 + i64::from(day) - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468: days from 0000-03-01 to 1970-01-01
    era * 146_097 + day_of_era - 719_468
}

/// Whether `year` has a 29 February.
pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A fixed number of ASCII digits at the start of `s`, and the rest.
fn digits(s: &[u8], n: usize) -> Option<(u32, &[u8])> {
    if s.len() < n || !s[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = s[..n]
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    Some((value, &s[n..]))
}

/// Whether `s` starts with one of the bytes of `what`.
fn next_is(s: &[u8], what: &[u8]) -> Option<()> {
    what.iter().any(|c| s.first() == Some(c)).then_some(())
}

/// Parses an RFC 3339 `date-time` into unix milliseconds (fractional seconds past the
/// millisecond are dropped). `T`/`t` separate date and time; the offset is `Z`/`z` or
/// `+hh:mm`/`-hh:mm`. A second of 60 (a leap second) counts as the next minute's first.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let s = text.as_bytes();
    let (year, s) = digits(s, 4)?;
    next_is(s, b"-")?;
    let (month, s) = digits(&s[1..], 2)?;
    next_is(s, b"-")?;
    let (day, s) = digits(&s[1..], 2)?;
    next_is(s, b"Tt")?;
    let (hour, s) = digits(&s[1..], 2)?;
    next_is(s, b":")?;
    let (minute, s) = digits(&s[1..], 2)?;
    next_is(s, b":")?;
    let (second, mut s) = digits(&s[1..], 2)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut millis = 0i64;
    if s.first() == Some(&b'.') {
        let fraction = &s[1..];
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        for (i, d) in fraction[..len.min(3)].iter().enumerate() {
            millis += i64::from(d - b'0') * [100, 10, 1][i];
        }
        s = &fraction[len..];
    }
    let offset_minutes = match s {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, rest) = digits(rest, 2)?;
            next_is(rest, b":")?;
            let (m, rest) = digits(&rest[1..], 2)?;
            if !rest.is_empty() || h > 23 || m > 59 {
                return None;
            }
            let minutes = i64::from(h * 60 + m);
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// A point in time as the config writes it: an RFC 3339 string or integer unix seconds
/// (not negative). Unix milliseconds; a time before 1970 is 0 (it has passed either way).
pub fn parse_time_ms(v: &Value) -> Option<u64> {
    let ms = match v {
        Value::String(s) => parse_rfc3339_ms(s)?,
        Value::Number(n) => {
            let seconds = n.as_u64()?;
            return seconds.checked_mul(1000);
        }
        _ => return None,
    };
    Some(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 12, 31), 20_818);
        // every day from 1900 to 2400 follows the one before
        let mut expected = days_from_civil(1900, 1, 1);
        for year in 1900..2400 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(
                        days_from_civil(year, month, day),
                        expected,
                        "{year}-{month}-{day}"
                    );
                    expected += 1;
                }
            }
        }
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2024));
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2100));
        assert!(!is_leap_year(2026));
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T12:00:00Z"),
            Some(951_825_600_000)
        );
        assert_eq!(parse_rfc3339_ms("2026-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2100-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-04-31T00:00:00Z"), None);
        // the day after 28 February of a leap year is the 29th, of another year 1 March
        assert_eq!(
            parse_rfc3339_ms("2024-03-01T00:00:00Z").unwrap()
                - parse_rfc3339_ms("2024-02-28T00:00:00Z").unwrap(),
            2 * 86_400_000
        );
        assert_eq!(
            parse_rfc3339_ms("2026-03-01T00:00:00Z").unwrap()
                - parse_rfc3339_ms("2026-02-28T00:00:00Z").unwrap(),
            86_400_000
        );
    }

    #[test]
    fn rfc3339_forms_and_offsets() {
        let base = 1_798_675_200_000; // 2026-12-31T00:00:00Z
        assert_eq!(parse_rfc3339_ms("2026-12-31T00:00:00Z"), Some(base));
        assert_eq!(parse_rfc3339_ms("2026-12-31t00:00:00z"), Some(base));
        assert_eq!(parse_rfc3339_ms("2026-12-31T00:00:00+00:00"), Some(base));
        assert_eq!(parse_rfc3339_ms("2026-12-31T00:00:00-00:00"), Some(base));
        assert_eq!(parse_rfc3339_ms("2026-12-31T01:00:00+01:00"), Some(base));
        assert_eq!(parse_rfc3339_ms("2026-12-30T18:30:00-05:30"), Some(base));
        // an offset that crosses the year: 2026-12-31T23:00:00Z
        assert_eq!(
            parse_rfc3339_ms("2027-01-01T08:00:00+09:00"),
            Some(base + 23 * 3_600_000)
        );
        assert_eq!(parse_rfc3339_ms("2026-12-31T00:00:00.5Z"), Some(base + 500));
        assert_eq!(
            parse_rfc3339_ms("2026-12-31T00:00:00.25Z"),
            Some(base + 250)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-31T00:00:00.123456789Z"),
            Some(base + 123)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-31T00:00:00.999+00:00"),
            Some(base + 999)
        );
        assert_eq!(parse_rfc3339_ms("2026-12-30T23:59:60Z"), Some(base));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), Some(-1000));
    }

    #[test]
    fn malformed_times() {
        for bad in [
            "",
            "2026-12-31",
            "2026-12-31T00:00Z",
            "2026-12-31T00:00:00",
            "2026-12-31 00:00:00Z",
            "2026-12-31T00:00:00ZZ",
            "2026-12-31T00:00:00.Z",
            "2026-12-31T00:00:00+0100",
            "2026-12-31T00:00:00+01",
            "2026-12-31T00:00:00+24:00",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-12-00T00:00:00Z",
            "2026-12-32T00:00:00Z",
            "2026-12-31T24:00:00Z",
            "2026-12-31T00:60:00Z",
            "2026-12-31T00:00:61Z",
            "26-12-31T00:00:00Z",
            "+2026-12-31T00:00:00Z",
            "2026-1-31T00:00:00Z",
            "２026-12-31T00:00:00Z",
            "tomorrow",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn json_values() {
        assert_eq!(
            parse_time_ms(&json!(1_798_675_200)),
            Some(1_798_675_200_000)
        );
        assert_eq!(parse_time_ms(&json!(0)), Some(0));
        assert_eq!(
            parse_time_ms(&json!("2026-12-31T00:00:00Z")),
            Some(1_798_675_200_000)
        );
        assert_eq!(parse_time_ms(&json!("1960-01-01T00:00:00Z")), Some(0));
        assert_eq!(parse_time_ms(&json!(-1)), None);
        assert_eq!(parse_time_ms(&json!(1.5)), None);
        assert_eq!(parse_time_ms(&json!(u64::MAX)), None);
        assert_eq!(parse_time_ms(&json!("1798675200")), None);
        assert_eq!(parse_time_ms(&json!(true)), None);
        assert_eq!(parse_time_ms(&json!(null)), None);
    }
}
