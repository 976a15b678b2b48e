//! Times in the admin API: unix milliseconds inside, RFC 3339 UTC in JSON (read as the data
//! plane reads them, `core::timestamp`)
//! (`2026-12-07T10:00:00Z`), durations as `"90s"`, `"15m"`, `"2h"`, `"7d"` or seconds.

use serde_json::Value;

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-12-07T10:00:00Z` (milliseconds when there are any).
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let (h, mi, se) = (s / 3600, s % 3600 / 60, s % 60);
    if millis == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{millis:03}Z")
    }
}

/// Unix ms of an RFC 3339 time (`Z` or a `+hh:mm` offset, optional fraction): the data
/// plane's own reading of `expires_at`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    crate::core::timestamp::parse_rfc3339_ms(s)
}

/// A time field of a request body: an RFC 3339 string or unix seconds.
pub fn time_value(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_rfc3339(s),
        Value::Number(n) => n
            .as_i64()
            .filter(|s| (0..=253_402_300_799).contains(s))
            .map(|s| s * 1000),
        _ => None,
    }
}

/// A duration field: seconds, or `"<n>ms|s|m|h|d"`; in ms.
pub fn duration_value(v: &Value) -> Option<u64> {
    crate::core::fields::duration_ms(v, 1000)
}

/// A duration in a query argument: `"250ms"`, `"5s"`, `"1m"` or milliseconds.
pub fn duration_arg(s: &str) -> Option<u64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    crate::core::fields::duration_ms(&Value::String(s.to_string()), 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_and_parse_round_trip() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(1_796_083_200_000), "2026-12-01T00:00:00Z");
        assert_eq!(format_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        for ms in [
            0,
            86_399_999,
            951_782_400_123,
            1_796_083_200_000,
            4_102_444_800_000,
        ] {
            assert_eq!(parse_rfc3339(&format_ms(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            parse_rfc3339("2026-12-01T02:00:00+02:00"),
            Some(1_796_083_200_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-30T22:30:00-01:30"),
            Some(1_796_083_200_000)
        );
        assert_eq!(
            parse_rfc3339("2026-12-01T00:00:00.5Z"),
            Some(1_796_083_200_500)
        );
        for bad in [
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-01",
            "2026-12-01T24:00:00Z",
            "2026-12-01T00:00:00",
            "2026-12-01T00:00:00+2:00",
            "x026-12-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn values_and_durations() {
        assert_eq!(time_value(&json!(1_796_083_200)), Some(1_796_083_200_000));
        assert_eq!(time_value(&json!(-1)), None);
        assert_eq!(time_value(&json!(true)), None);
        assert_eq!(duration_value(&json!("15m")), Some(900_000));
        assert_eq!(duration_value(&json!(30)), Some(30_000));
        assert_eq!(duration_arg("250ms"), Some(250));
        assert_eq!(duration_arg("2s"), Some(2000));
        assert_eq!(duration_arg("1500"), Some(1500));
        assert_eq!(duration_arg("x"), None);
    }
}
