//! The usage API's aggregates: usage over hours or days grouped by namespace, key, model,
//! target or status class, read from the aggregate tables only (the summary by namespace
//! and model when that is all the call asks for).

use super::query::{equals, limit_arg, time_arg, Param, Sql};
use super::rollup::{DAY_MS, HOUR_MS};
use super::table::{Cell, Table};
use crate::core::admin::clock::format_ms;
use crate::core::admin::error::ApiError;
use crate::core::admin::query::Query;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    pub fn ms(self) -> u64 {
        match self {
            Interval::Hour => HOUR_MS,
            Interval::Day => DAY_MS,
        }
    }

    /// The full-grain table, or the summary by namespace and model.
    pub fn table(self, summary: bool) -> &'static str {
        match (self, summary) {
            (Interval::Hour, false) => "usage_hourly",
            (Interval::Day, false) => "usage_daily",
            (Interval::Hour, true) => "usage_hourly_summary",
            (Interval::Day, true) => "usage_daily_summary",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }
}

/// Most rows of one answer.
pub const USAGE_LIMIT_MAX: usize = 10_000;

const DIMENSIONS: &[&str] = &["namespace", "key_id", "model", "target", "status_class"];

pub const USAGE_SUMS: &[&str] = &[
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "latency_ms_avg",
    "latency_ms_max",
];

/// A usage query: its statement, the page size, the interval and the grouped dimensions.
pub struct UsageSql {
    pub sql: Sql,
    pub limit: usize,
    pub interval: Interval,
    pub group_by: Vec<&'static str>,
}

/// `GET /api/v1/usage`.
pub fn usage_sql(q: &Query, now_ms: i64) -> Result<UsageSql, ApiError> {
    let interval = match q.get("interval").unwrap_or("hour") {
        "hour" => Interval::Hour,
        "day" => Interval::Day,
        _ => return Err(ApiError::invalid("?interval", "must be hour or day")),
    };
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
    let limit = limit_arg(q, 1000, USAGE_LIMIT_MAX)?;
    let until = time_arg(q, "until")?.unwrap_or(now_ms).max(0);
    let span = match interval {
        Interval::Hour => DAY_MS,
        Interval::Day => 30 * DAY_MS,
    };
    let since = time_arg(q, "since")?.unwrap_or(until - span as i64).max(0);
    let bucket = |ms: i64| ms / interval.ms() as i64;
    let col = interval.column();
    let mut where_ = vec![format!("{col} >= ?"), format!("{col} <= ?")];
    let mut params = vec![Param::Int(bucket(since)), Param::Int(bucket(until))];
    equals(q, &mut where_, &mut params)?;
    let dims: String = group_by.iter().map(|d| format!(", {d}")).collect();
    // grouped and filtered by namespace and model alone: the summary answers
    let summary = group_by.iter().all(|d| matches!(*d, "namespace" | "model"))
        && q.get("key_id").is_none()
        && q.get("target").is_none();
    let text = format!(
        "SELECT {col}{dims}, SUM(requests), SUM(errors), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), SUM(reasoning_tokens), SUM(latency_ms_sum), MAX(latency_ms_max) FROM {} WHERE {} GROUP BY {col}{dims} ORDER BY {col}{dims} LIMIT {}",
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

/// Usage rows (bucket, dimensions, sums) as the API shows them: the bucket's start in RFC
/// 3339, the average latency in place of the sum.
pub fn usage_table(u: &UsageSql, rows: Vec<Vec<Cell>>) -> Table {
    let dims = u.group_by.len();
    let rows = rows
        .into_iter()
        .map(|row| {
            let mut out = Vec::with_capacity(row.len());
            for (i, c) in row.into_iter().enumerate() {
                match (i, c) {
                    (0, Cell::Int(b)) => {
                        out.push(Cell::Text(format_ms(b * u.interval.ms() as i64)))
                    }
                    (i, c) if i == dims + 7 => {
                        // the latency sum becomes the average over the requests
                        let requests = match out.get(dims + 1) {
                            Some(Cell::Int(n)) if *n > 0 => *n,
                            _ => 1,
                        };
                        let avg = match c {
                            Cell::Int(s) => Cell::Int(s / requests),
                            other => other,
                        };
                        out.push(avg);
                    }
                    (_, c) => out.push(c),
                }
            }
            out
        })
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
        ]];
        let t = usage_table(&u, rows);
        assert_eq!(t.columns[..3], ["time", "model", "namespace"]);
        assert_eq!(
            t.rows[0][9],
            Cell::Int(250),
            "the latency sum became the average"
        );
        assert_eq!(t.rows[0][0], Cell::Text(format_ms(days * 86_400_000)));
    }
}
