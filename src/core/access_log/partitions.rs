//! The access-log table's day partitions: which to add (every day from the oldest kept to
//! a few days ahead, split off the empty `pmax`) and which to drop (days past retention),
//! from the partitions the table has. A partition `p20261207` holds the day 2026-12-07
//! (UTC), its bound being the next day's number; the first one also holds anything older.

use crate::core::admin::clock::format_ms;

use super::rollup::DAY_MS;

/// Days made ahead of today (a node whose clock is a little ahead still has its day).
pub const AHEAD_DAYS: i64 = 3;

/// A partition as `information_schema.PARTITIONS` shows it: its name and its bound (`None`
/// for `MAXVALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub below: Option<i64>,
}

/// The statements that bring the table to `today` with `retention_days` kept (today
/// included).
pub fn plan(existing: &[Partition], today: i64, retention_days: i64) -> Vec<String> {
    let oldest_kept = today - retention_days.max(1) + 1;
    let mut out = Vec::new();
    let last_bound = existing.iter().filter_map(|p| p.below).max();
    let first_day = last_bound.unwrap_or(oldest_kept).max(oldest_kept);
    let days: Vec<i64> = (first_day..=today + AHEAD_DAYS).collect();
    let has_max = existing.iter().any(|p| p.below.is_none());
    if !days.is_empty() && has_max {
        let parts: Vec<String> = days
            .iter()
            .map(|d| format!("PARTITION {} VALUES LESS THAN ({})", name(*d), d + 1))
            .chain(std::iter::once(
                "PARTITION pmax VALUES LESS THAN MAXVALUE".to_string(),
            ))
            .collect();
        out.push(format!(
            "ALTER TABLE access_logs REORGANIZE PARTITION pmax INTO ({})",
            parts.join(", ")
        ));
    }
    let drop: Vec<&str> = existing
        .iter()
        .filter(|p| p.below.is_some_and(|b| b <= oldest_kept))
        .map(|p| p.name.as_str())
        .collect();
    if !drop.is_empty() {
        out.push(format!(
            "ALTER TABLE access_logs DROP PARTITION {}",
            drop.join(", ")
        ));
    }
    out
}

/// `p20261207` for the unix day of 2026-12-07.
pub fn name(day: i64) -> String {
    let date = format_ms(day * DAY_MS as i64);
    format!("p{}", date[..10].replace('-', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: i64 = 20_794; // 2026-12-07

    fn p(day: i64) -> Partition {
        Partition {
            name: name(day),
            below: Some(day + 1),
        }
    }

    fn pmax() -> Partition {
        Partition {
            name: "pmax".into(),
            below: None,
        }
    }

    #[test]
    fn a_new_table_gets_the_kept_days_and_a_few_ahead() {
        assert_eq!(name(TODAY), "p20261207");
        let sql = plan(&[pmax()], TODAY, 3);
        assert_eq!(sql.len(), 1);
        assert_eq!(
            sql[0],
            "ALTER TABLE access_logs REORGANIZE PARTITION pmax INTO (PARTITION p20261205 VALUES LESS THAN (20793), PARTITION p20261206 VALUES LESS THAN (20794), PARTITION p20261207 VALUES LESS THAN (20795), PARTITION p20261208 VALUES LESS THAN (20796), PARTITION p20261209 VALUES LESS THAN (20797), PARTITION p20261210 VALUES LESS THAN (20798), PARTITION pmax VALUES LESS THAN MAXVALUE)"
        );
    }

    #[test]
    fn days_past_retention_are_dropped_and_new_ones_added() {
        let mut have: Vec<Partition> = (TODAY - 10..=TODAY + 2).map(p).collect();
        have.push(pmax());
        let sql = plan(&have, TODAY, 5);
        assert_eq!(sql.len(), 2);
        assert_eq!(
            sql[0],
            "ALTER TABLE access_logs REORGANIZE PARTITION pmax INTO (PARTITION p20261210 VALUES LESS THAN (20798), PARTITION pmax VALUES LESS THAN MAXVALUE)"
        );
        // kept: today and the four days before
        let dropped: Vec<String> = (TODAY - 10..TODAY - 4).map(name).collect();
        assert_eq!(
            sql[1],
            format!(
                "ALTER TABLE access_logs DROP PARTITION {}",
                dropped.join(", ")
            )
        );
        // up to date: nothing to do
        let mut have: Vec<Partition> = (TODAY - 4..=TODAY + AHEAD_DAYS).map(p).collect();
        have.push(pmax());
        assert!(plan(&have, TODAY, 5).is_empty());
    }
}
