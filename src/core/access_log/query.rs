//! The usage API's reads, as SQL with parameters: access logs filtered by namespace, key,
//! model, target, status, error code and time, newest first with keyset pagination (the
//! cursor is the last row's time and request id; days bound the partitions read), and one
//! log by request id. The aggregates' reads are in [`super::usage`].

use super::rollup::DAY_MS;
use super::table::{Cell, Table};
use crate::core::admin::clock::{format_ms, time_value};
use crate::core::admin::error::ApiError;
use crate::core::admin::query::{cursor_decode, cursor_encode, Query};

/// A statement's parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// A statement and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Param>,
}

pub const LOG_COLUMNS: &[&str] = &[
    "request_id",
    "time",
    "node",
    "namespace",
    "key_id",
    "model",
    "route",
    "target",
    "status",
    "error",
    "latency_ms",
    "ttfb_ms",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "usage_source",
    "attempts",
    "stream",
];

const LOG_SELECT: &str = "SELECT request_id, ts, node, namespace, key_id, model, route, target, status, error, latency_ms, ttfb_ms, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, usage_source, attempts, stream FROM access_logs";

/// Most rows of one page (JSON) and of one CSV export call.
pub const LOG_LIMIT_MAX: usize = 1000;
pub const CSV_LIMIT_MAX: usize = 50_000;

pub(super) fn time_arg(q: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    q.get(name)
        .map(|v| {
            let val = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                serde_json::Value::from(v.parse::<i64>().unwrap_or(-1))
            } else {
                serde_json::Value::from(v)
            };
            time_value(&val).ok_or_else(|| {
                ApiError::invalid(
                    format!("?{name}"),
                    "must be an RFC 3339 time or unix seconds",
                )
            })
        })
        .transpose()
}

pub(super) fn limit_arg(q: &Query, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "?limit",
                format!("must be an integer from 1 to {max}"),
            )),
        },
    }
}

/// `?format=csv` (or `Accept: text/csv`) asks for CSV.
pub fn wants_csv(q: &Query, accept: Option<&str>) -> Result<bool, ApiError> {
    match q.get("format") {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(_) => Err(ApiError::invalid("?format", "must be json or csv")),
        None => Ok(accept.is_some_and(|a| {
            a.split(',')
                .any(|m| m.split(';').next().unwrap_or("").trim() == "text/csv")
        })),
    }
}

/// Equality filters shared by logs and usage: `(argument, column, longest value)`.
const EQUALS: &[(&str, &str, usize)] = &[
    ("namespace", "namespace", 64),
    ("key_id", "key_id", 16),
    ("model", "model", 128),
    ("target", "target", 64),
];

pub(super) fn equals(
    q: &Query,
    where_: &mut Vec<String>,
    params: &mut Vec<Param>,
) -> Result<(), ApiError> {
    for (arg, col, max) in EQUALS {
        if let Some(v) = q.get(arg) {
            if v.len() > *max {
                return Err(ApiError::invalid(
                    format!("?{arg}"),
                    format!("is longer than {max} bytes"),
                ));
            }
            where_.push(format!("{col} = ?"));
            params.push(Param::Text(v.to_string()));
        }
    }
    Ok(())
}

/// `status=429` or `status=4xx`: the range of statuses it means.
fn status_arg(v: &str) -> Option<(i64, i64)> {
    let b = v.as_bytes();
    if b.len() == 3 && b[1..].eq_ignore_ascii_case(b"xx") && (b'0'..=b'5').contains(&b[0]) {
        let c = i64::from(b[0] - b'0') * 100;
        return Some((c, c + 99));
    }
    let n: i64 = v.parse().ok().filter(|n| (0..=999).contains(n))?;
    Some((n, n))
}

/// `GET /api/v1/access-logs`: the statement of one page (one row more than the page, to know
/// whether another follows).
pub fn logs_sql(q: &Query, now_ms: i64, csv: bool) -> Result<(Sql, usize), ApiError> {
    let limit = if csv {
        limit_arg(q, CSV_LIMIT_MAX, CSV_LIMIT_MAX)?
    } else {
        limit_arg(q, 100, LOG_LIMIT_MAX)?
    };
    let since = time_arg(q, "since")?.unwrap_or(0).max(0);
    let until = time_arg(q, "until")?.unwrap_or(now_ms + DAY_MS as i64);
    let mut where_ = vec![
        "day >= ?".to_string(),
        "day <= ?".to_string(),
        "ts >= ?".to_string(),
        "ts < ?".to_string(),
    ];
    let day = |ms: i64| ms.max(0) / DAY_MS as i64;
    let mut params = vec![
        Param::Int(day(since)),
        Param::Int(day(until)),
        Param::Int(since),
        Param::Int(until),
    ];
    equals(q, &mut where_, &mut params)?;
    if let Some(v) = q.get("status") {
        let (lo, hi) = status_arg(v).ok_or_else(|| {
            ApiError::invalid("?status", "must be a status (429) or a class (4xx)")
        })?;
        where_.push("status BETWEEN ? AND ?".into());
        params.extend([Param::Int(lo), Param::Int(hi)]);
    }
    if let Some(v) = q.get("error") {
        if v.len() > 64 {
            return Err(ApiError::invalid("?error", "is longer than 64 bytes"));
        }
        where_.push("error = ?".into());
        params.push(Param::Text(v.to_string()));
    }
    if let Some(c) = q.get("cursor").filter(|c| !c.is_empty()) {
        let (ts, id) = cursor_decode(c)
            .and_then(|k| {
                let (ts, id) = k.split_once(':')?;
                Some((ts.parse::<i64>().ok()?, id.to_string()))
            })
            .ok_or_else(|| ApiError::invalid("?cursor", "is not a cursor of this list"))?;
        where_.push("day <= ?".into());
        where_.push("(ts < ? OR (ts = ? AND request_id < ?))".into());
        params.extend([
            Param::Int(day(ts)),
            Param::Int(ts),
            Param::Int(ts),
            Param::Text(id),
        ]);
    }
    let text = format!(
        "{LOG_SELECT} WHERE {} ORDER BY ts DESC, request_id DESC LIMIT {}",
        where_.join(" AND "),
        limit + 1
    );
    Ok((Sql { text, params }, limit))
}

/// `GET /api/v1/access-logs/{request_id}`.
pub fn log_sql(request_id: &str) -> Sql {
    Sql {
        text: format!("{LOG_SELECT} WHERE request_id = ? ORDER BY ts DESC LIMIT 1"),
        params: vec![Param::Text(request_id.to_string())],
    }
}

/// The cursor that follows `row` (a log row: request id, then time).
pub fn log_cursor(row: &[Cell]) -> Option<String> {
    match row {
        [Cell::Text(id), Cell::Int(ts), ..] => Some(cursor_encode(&format!("{ts}:{id}"))),
        _ => None,
    }
}

/// A log's time in RFC 3339 with its milliseconds always written (times of a page sort as
/// text as they do as numbers).
fn with_millis(ms: i64) -> String {
    let t = format_ms(ms);
    if t.contains('.') {
        t
    } else {
        t.replacen('Z', ".000Z", 1)
    }
}

/// A log row as the API shows it: the time in RFC 3339, the stream flag as a boolean.
pub fn log_table(mut rows: Vec<Vec<Cell>>) -> Table {
    for row in &mut rows {
        if let Some(c) = row.get_mut(1) {
            if let Cell::Int(ms) = c {
                *c = Cell::Text(with_millis(*ms));
            }
        }
        if let Some(c) = row.get_mut(18) {
            if let Cell::Int(n) = c {
                *c = Cell::Bool(*n != 0);
            }
        }
    }
    Table {
        columns: LOG_COLUMNS.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    #[test]
    fn a_log_page_with_every_filter() {
        let q = Query::parse("namespace=team-a&key_id=9f86d081884c&model=gpt-4o&target=eu&status=5xx&error=upstream_failed&since=2026-11-01T00:00:00Z&until=1796000000&limit=20");
        let (sql, limit) = logs_sql(&q, NOW, false).unwrap();
        assert_eq!(limit, 20);
        assert!(
            sql.text
                .ends_with("ORDER BY ts DESC, request_id DESC LIMIT 21"),
            "{}",
            sql.text
        );
        assert!(sql.text.contains("namespace = ? AND key_id = ? AND model = ? AND target = ? AND status BETWEEN ? AND ? AND error = ?"));
        let since = 1_793_491_200_000;
        assert_eq!(
            sql.params,
            vec![
                Param::Int(since / 86_400_000),
                Param::Int(NOW / 86_400_000),
                Param::Int(since),
                Param::Int(NOW),
                Param::Text("team-a".into()),
                Param::Text("9f86d081884c".into()),
                Param::Text("gpt-4o".into()),
                Param::Text("eu".into()),
                Param::Int(500),
                Param::Int(599),
                Param::Text("upstream_failed".into()),
            ]
        );
    }

    #[test]
    fn a_cursor_continues_after_the_last_row() {
        let row = vec![Cell::Text("abc".into()), Cell::Int(NOW)];
        let c = log_cursor(&row).unwrap();
        let (sql, _) = logs_sql(&Query::parse(&format!("cursor={c}")), NOW, false).unwrap();
        assert!(sql.text.contains("(ts < ? OR (ts = ? AND request_id < ?))"));
        assert_eq!(
            sql.params[4..],
            [
                Param::Int(NOW / 86_400_000),
                Param::Int(NOW),
                Param::Int(NOW),
                Param::Text("abc".into())
            ]
        );
        for bad in [
            "cursor=zz",
            "cursor=616263",
            "status=6xx",
            "status=abc",
            "limit=0",
            "limit=1001",
            "since=yesterday",
        ] {
            assert_eq!(
                logs_sql(&Query::parse(bad), NOW, false).unwrap_err().status,
                400,
                "{bad}"
            );
        }
        // CSV takes larger pages
        assert_eq!(
            logs_sql(&Query::parse("limit=20000"), NOW, true).unwrap().1,
            20000
        );
        assert_eq!(
            logs_sql(&Query::parse(""), NOW, true).unwrap().1,
            CSV_LIMIT_MAX
        );
    }

    #[test]
    fn log_times_always_have_milliseconds() {
        let t = log_table(vec![
            vec![Cell::Text("a".into()), Cell::Int(NOW)],
            vec![Cell::Text("b".into()), Cell::Int(NOW - 1)],
        ]);
        assert_eq!(t.rows[0][1], Cell::Text("2026-11-30T00:53:20.000Z".into()));
        assert_eq!(t.rows[1][1], Cell::Text("2026-11-30T00:53:19.999Z".into()));
    }

    #[test]
    fn csv_is_asked_by_format_or_accept() {
        assert!(wants_csv(&Query::parse("format=csv"), None).unwrap());
        assert!(!wants_csv(&Query::parse("format=json"), Some("text/csv")).unwrap());
        assert!(wants_csv(&Query::parse(""), Some("text/csv; q=1, */*")).unwrap());
        assert!(!wants_csv(&Query::parse(""), Some("application/json")).unwrap());
        assert!(wants_csv(&Query::parse("format=xml"), None).is_err());
    }
}
