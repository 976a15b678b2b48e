//! The usage API's aggregates: usage over minutes, hours or days grouped by namespace,
//! key, model, target or status class, read from the aggregate tables only (the summary by
//! namespace and model when that is all the call asks for; by minute, only that summary is
//! kept, 48 hours). Latency percentiles are estimated from the histograms summed in SQL.

use super::latency::{percentile, Histogram, COLUMNS};
use super::query::{equals, limit_arg, time_arg, Param, Sql};
use super::rollup::{DAY_MS, HOUR_MS, MINUTES_KEPT_MS, MINUTE_MS};
use super::table::{Cell, Table};
use crate::core::admin::clock::format_ms;
use crate::core::admin::error::ApiError;
use crate::core::admin::query::Query;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Minute,
    Hour,
    Day,
}

impl Interval {
    pub fn parse(v: &str) -> Option<Interval> {
        match v {
            "minute" => Some(Interval::Minute),
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interval::Minute => "minute",
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }

    pub fn ms(self) -> u64 {
        match self {
            Interval::Minute => MINUTE_MS,
            Interval::Hour => HOUR_MS,
            Interval::Day => DAY_MS,
        }
    }

    /// The range read when the call names no `since`.
    fn default_span_ms(self) -> u64 {
        match self {
            Interval::Minute => HOUR_MS,
            Interval::Hour => DAY_MS,
            Interval::Day => 30 * DAY_MS,
        }
    }

    /// The full-grain table, or the summary by namespace and model (by minute, there is only
    /// the summary).
    pub fn table(self, summary: bool) -> &'static str {
        match (self, summary) {
            (Interval::Minute, _) => "usage_minutely_summary",
            (Interval::Hour, false) => "usage_hourly",
            (Interval::Day, false) => "usage_daily",
            (Interval::Hour, true) => "usage_hourly_summary",
            (Interval::Day, true) => "usage_daily_summary",
        }
    }

    /// The bucket column: unix minutes, hours or days.
    pub fn column(self) -> &'static str {
        match self {
            Interval::Minute => "minute",
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }
}

/// Most rows of one answer.
pub const USAGE_LIMIT_MAX: usize = 10_000;

/// The dimensions a call may group by.
pub const DIMENSIONS: &[&str] = &["namespace", "key_id", "model", "target", "status_class"];
/// The dimensions of the summaries (and so of the minutes).
const SUMMARY_DIMENSIONS: &[&str] = &["namespace", "model"];

/// The columns of a row after the time and its dimensions.
pub const USAGE_SUMS: &[&str] = &[
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "latency_ms_avg",
    "latency_ms_max",
    "latency_p50_ms",
    "latency_p95_ms",
];

/// A usage query: its statement, the page size, the interval and the grouped dimensions.
pub struct UsageSql {
    pub sql: Sql,
    pub limit: usize,
    pub interval: Interval,
    pub group_by: Vec<&'static str>,
}

fn group_by_arg(q: &Query) -> Result<Vec<&'static str>, ApiError> {
    let mut group_by = Vec::new();
    for d in q.get("group_by").unwrap_or("namespace").split(',') {
        let d = d.trim();
        if d.is_empty() {
            continue;
        }
        let known = DIMENSIONS.iter().find(|k| **k == d).ok_or_else(|| {
            ApiError::invalid(
                "?group_by",
                format!("\"{d}\" is not one of {}", DIMENSIONS.join(", ")),
            )
        })?;
        if !group_by.contains(known) {
            group_by.push(*known);
        }
    }
    Ok(group_by)
}

/// What `interval=minute` cannot answer: a dimension or a filter the minute summary does not
/// keep, or a range longer than the 48 hours it keeps (give or take a minute: a `since` of
/// "now - 48 h" meets this node's now a little later).
fn minute_limits(q: &Query, group_by: &[&str], since: i64, until: i64) -> Result<(), ApiError> {
    if let Some(d) = group_by.iter().find(|d| !SUMMARY_DIMENSIONS.contains(*d)) {
        return Err(ApiError::invalid(
            "?group_by",
            format!(
                "\"{d}\" is not kept by minute: interval=minute groups by namespace and model only"
            ),
        ));
    }
    for arg in ["key_id", "target"] {
        if q.get(arg).is_some() {
            return Err(ApiError::invalid(
                format!("?{arg}"),
                "is not kept by minute: interval=minute filters by namespace and model only",
            ));
        }
    }
    if until - since > (MINUTES_KEPT_MS + MINUTE_MS) as i64 {
        return Err(ApiError::invalid(
            "?since",
            "interval=minute reads 48 hours at most (minutes are kept that long); use interval=hour for a longer range",
        ));
    }
    Ok(())
}

/// `GET /api/v1/usage`.
pub fn usage_sql(q: &Query, now_ms: i64) -> Result<UsageSql, ApiError> {
    let interval = Interval::parse(q.get("interval").unwrap_or("hour"))
        .ok_or_else(|| ApiError::invalid("?interval", "must be minute, hour or day"))?;
    let group_by = group_by_arg(q)?;
    let limit = limit_arg(q, 1000, USAGE_LIMIT_MAX)?;
    let until = time_arg(q, "until")?.unwrap_or(now_ms).max(0);
    let span = interval.default_span_ms() as i64;
    let since = time_arg(q, "since")?.unwrap_or(until - span).max(0);
    if interval == Interval::Minute {
        minute_limits(q, &group_by, since, until)?;
    }
    let bucket = |ms: i64| ms / interval.ms() as i64;
    let col = interval.column();
    let mut where_ = vec![format!("{col} >= ?"), format!("{col} <= ?")];
    let mut params = vec![Param::Int(bucket(since)), Param::Int(bucket(until))];
    equals(q, &mut where_, &mut params)?;
    let dims: String = group_by.iter().map(|d| format!(", {d}")).collect();
    // grouped and filtered by namespace and model alone: the summary answers
    let summary = group_by.iter().all(|d| SUMMARY_DIMENSIONS.contains(d))
        && q.get("key_id").is_none()
        && q.get("target").is_none();
    let histogram: String = COLUMNS.iter().map(|c| format!(", SUM({c})")).collect();
    let text = format!(
        "SELECT {col}{dims}, SUM(requests), SUM(errors), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), SUM(reasoning_tokens), SUM(latency_ms_sum), MAX(latency_ms_max){histogram} FROM {} WHERE {} GROUP BY {col}{dims} ORDER BY {col}{dims} LIMIT {}",
        interval.table(summary),
        where_.join(" AND "),
        limit + 1
    );
    Ok(UsageSql {
        sql: Sql { text, params },
        limit,
        interval,
        group_by,
    })
}

fn count(c: Option<&Cell>) -> u64 {
    match c {
        Some(Cell::Int(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

/// A usage row as read (bucket, dimensions, requests, errors, tokens, latency sum and max,
/// histogram) as the API shows it (bucket's start, dimensions, requests, errors, tokens,
/// latency average, max, p50 and p95).
fn usage_row(interval: Interval, dims: usize, row: Vec<Cell>) -> Vec<Cell> {
    let mut cells = row.into_iter();
    let mut out = Vec::with_capacity(1 + dims + USAGE_SUMS.len());
    out.push(match cells.next() {
        Some(Cell::Int(b)) => Cell::Text(format_ms(b * interval.ms() as i64)),
        other => other.unwrap_or(Cell::Null),
    });
    out.extend(cells.by_ref().take(dims));
    let sums: Vec<Cell> = cells.collect();
    out.extend(sums.iter().take(6).cloned());
    // the latency sum becomes the average over the requests
    let requests = count(sums.first()).max(1) as i64;
    out.push(match sums.get(6) {
        Some(Cell::Int(s)) => Cell::Int(s / requests),
        other => other.cloned().unwrap_or(Cell::Null),
    });
    out.push(sums.get(7).cloned().unwrap_or(Cell::Null));
    let max = count(sums.get(7));
    let mut h = Histogram::default();
    for (i, n) in h.iter_mut().enumerate() {
        *n = count(sums.get(8 + i));
    }
    for fraction in [0.5, 0.95] {
        out.push(percentile(&h, fraction, max).map_or(Cell::Null, |ms| {
            Cell::Int(i64::try_from(ms).unwrap_or(i64::MAX))
        }));
    }
    out
}

/// Usage rows as the API shows them (see `usage_row`).
pub fn usage_table(u: &UsageSql, rows: Vec<Vec<Cell>>) -> Table {
    let dims = u.group_by.len();
    let rows = rows
        .into_iter()
        .map(|row| usage_row(u.interval, dims, row))
        .collect();
    let mut columns = vec!["time".to_string()];
    columns.extend(u.group_by.iter().map(|d| d.to_string()));
    columns.extend(USAGE_SUMS.iter().map(|s| s.to_string()));
    Table { columns, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    #[test]
    fn usage_groups_by_the_dimensions_asked() {
        let q = Query::parse("interval=day&group_by=model,namespace,model&namespace=team-a");
        let u = usage_sql(&q, NOW).unwrap();
        assert_eq!(u.group_by, ["model", "namespace"]);
        assert!(u
            .sql
            .text
            .starts_with("SELECT day, model, namespace, SUM(requests)"));
        assert!(u.sql.text.contains("FROM usage_daily_summary WHERE day >= ? AND day <= ? AND namespace = ? GROUP BY day, model, namespace"));
        // a key, a target or the status class need the full grain
        for q in [
            "group_by=key_id",
            "group_by=namespace&target=eu",
            "group_by=status_class",
        ] {
            let u = usage_sql(&Query::parse(q), NOW).unwrap();
            assert!(u.sql.text.contains("FROM usage_hourly WHERE"), "{q}");
        }
        let days = NOW / 86_400_000;
        assert_eq!(u.sql.params[..2], [Param::Int(days - 30), Param::Int(days)]);
        for bad in ["interval=week", "group_by=prompt", "limit=10001"] {
            assert_eq!(
                usage_sql(&Query::parse(bad), NOW).err().map(|e| e.status),
                Some(400),
                "{bad}"
            );
        }
        let rows = vec![vec![
            Cell::Int(days),
            Cell::Text("m".into()),
            Cell::Text("team-a".into()),
            Cell::Int(4),
            Cell::Int(1),
            Cell::Int(100),
            Cell::Int(50),
            Cell::Int(0),
            Cell::Int(0),
            Cell::Int(1000),
            Cell::Int(700),
        ]
        .into_iter()
        .chain([0, 0, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0].map(Cell::Int))
        .collect()];
        let t = usage_table(&u, rows);
        assert_eq!(t.columns[..3], ["time", "model", "namespace"]);
        assert_eq!(
            t.rows[0][9],
            Cell::Int(250),
            "the latency sum became the average"
        );
        assert_eq!(t.rows[0][0], Cell::Text(format_ms(days * 86_400_000)));
        assert_eq!(
            t.columns[9..],
            [
                "latency_ms_avg",
                "latency_ms_max",
                "latency_p50_ms",
                "latency_p95_ms"
            ]
        );
        // 2 in 250-500 ms, 1 in 1-2.5 s (max 700): p50 at 3/4 of the first, p95 capped
        assert_eq!(
            t.rows[0][10..],
            [Cell::Int(700), Cell::Int(438), Cell::Int(700)]
        );
    }

    /// A read row: bucket, one dimension, requests, errors, 4 token sums, latency sum and
    /// max, then the histogram.
    fn read_row(bucket: i64, requests: i64, max: i64, histogram: [i64; 12]) -> Vec<Cell> {
        let mut row = vec![Cell::Int(bucket), Cell::Text("team-a".into())];
        row.extend([requests, 0, 0, 0, 0, 0, requests * 10, max].map(Cell::Int));
        row.extend(histogram.map(Cell::Int));
        row
    }

    #[test]
    fn percentiles_come_from_the_summed_histogram() {
        let u = usage_sql(&Query::parse(""), NOW).unwrap();
        let hist: Vec<String> = COLUMNS.iter().map(|c| format!("SUM({c})")).collect();
        assert!(
            u.sql.text.contains(&format!(
                "MAX(latency_ms_max), {} FROM usage_hourly_summary",
                hist.join(", ")
            )),
            "{}",
            u.sql.text
        );
        let rows = vec![
            read_row(1, 10, 40, [10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            // rows from before the histogram: requests, a max, no count
            read_row(2, 10, 40, [0; 12]),
            // some of them (a bucket that holds rows of before and after)
            read_row(3, 10, 90, [0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let t = usage_table(&u, rows);
        let items = t.items();
        assert_eq!(items[0]["latency_p50_ms"], 25);
        assert_eq!(items[0]["latency_p95_ms"], 40);
        assert_eq!(items[1]["latency_p50_ms"], serde_json::Value::Null);
        assert_eq!(items[1]["latency_p95_ms"], serde_json::Value::Null);
        assert_eq!(items[1]["latency_ms_max"], 40);
        assert_eq!(items[2]["latency_p50_ms"], 75);
        assert_eq!(items[2]["latency_p95_ms"], 90);
        // CSV: a null is an empty cell
        let csv = t.csv();
        let line = csv.split("\r\n").nth(2).unwrap_or_default();
        assert!(line.ends_with(",10,0,0,0,0,0,10,40,,"), "{line}");
        assert!(csv.starts_with("time,namespace,requests,errors,prompt_tokens,completion_tokens,cached_tokens,reasoning_tokens,latency_ms_avg,latency_ms_max,latency_p50_ms,latency_p95_ms\r\n"));
    }

    #[test]
    fn minutes_read_the_minute_summary_for_48_hours_at_most() {
        let u = usage_sql(&Query::parse("interval=minute"), NOW).unwrap();
        assert_eq!(u.interval.name(), "minute");
        assert!(u
            .sql
            .text
            .starts_with("SELECT minute, namespace, SUM(requests)"));
        assert!(u.sql.text.contains("FROM usage_minutely_summary WHERE minute >= ? AND minute <= ? GROUP BY minute, namespace ORDER BY minute, namespace LIMIT 1001"));
        // the last hour by default: 61 minutes, both ends' buckets included
        let m = NOW / 60_000;
        assert_eq!(u.sql.params, [Param::Int(m - 60), Param::Int(m)]);
        let rows = vec![read_row(m, 3, 20, [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])];
        let t = usage_table(&u, rows);
        assert_eq!(t.rows[0][0], Cell::Text(format_ms(m * 60_000)));
        // namespace and model, filtered by them, over 48 hours
        let since = (NOW - 48 * 3_600_000) / 1000;
        let q = format!(
            "interval=minute&group_by=model,namespace&model=gpt-4o&namespace=a&since={since}"
        );
        let u = usage_sql(&Query::parse(&q), NOW).unwrap();
        assert!(u.sql.text.contains("FROM usage_minutely_summary WHERE minute >= ? AND minute <= ? AND namespace = ? AND model = ?"));
        // what the minutes do not keep
        let three_days_ago = (NOW - 72 * 3_600_000) / 1000;
        for (bad, path, says) in [
            (
                "interval=minute&group_by=key_id",
                "?group_by",
                "\"key_id\" is not kept by minute",
            ),
            (
                "interval=minute&group_by=namespace,status_class",
                "?group_by",
                "\"status_class\" is not kept by minute",
            ),
            (
                "interval=minute&key_id=9f86d081884c",
                "?key_id",
                "filters by namespace and model only",
            ),
            (
                "interval=minute&target=eu",
                "?target",
                "filters by namespace and model only",
            ),
            (
                &format!("interval=minute&since={three_days_ago}"),
                "?since",
                "48 hours at most",
            ),
            (
                &format!("interval=minute&since={}&until=1796000000", since - 61),
                "?since",
                "48 hours at most",
            ),
        ] {
            let e = usage_sql(&Query::parse(bad), NOW)
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert_eq!(e.status, 400, "{bad}");
            assert_eq!(
                e.details.first().map(|d| d.path.as_str()),
                Some(path),
                "{bad}"
            );
            assert!(
                e.details[0].message.contains(says),
                "{bad}: {}",
                e.details[0].message
            );
        }
        // "now - 48 h" as a client saw it a little earlier
        let q = format!("interval=minute&since={}", since - 30);
        assert!(usage_sql(&Query::parse(&q), NOW).is_ok());
        // an old range of 48 hours at most is fine (it finds nothing once deleted)
        let old = format!(
            "interval=minute&since={three_days_ago}&until={}",
            three_days_ago + 3600
        );
        assert!(usage_sql(&Query::parse(&old), NOW).is_ok());
        assert_eq!(
            usage_sql(&Query::parse("interval=second"), NOW)
                .err()
                .map(|e| e.message),
            Some("?interval: must be minute, hour or day".to_string())
        );
    }
}
