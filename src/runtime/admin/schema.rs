//! The config center's MySQL schema, as numbered migrations the module applies when it
//! starts (and again when MySQL comes back): each runs once, in order, under a named lock
//! (`GET_LOCK`), so nodes starting together do not race; every statement is idempotent
//! (`IF NOT EXISTS`, `INSERT IGNORE`; an `ALTER TABLE` that adds columns is one statement,
//! all or nothing, and one that finds them there already counts as done: [`done_before`]),
//! so a migration cut short runs again cleanly.
//!
//! SQL that MariaDB 10.5+ and MySQL 8 both take: InnoDB, utf8mb4 with binary collation
//! (codes and names compare as the gateway compares them), times as unix milliseconds.

/// An aggregate table of usage logs: `$name` with its bucket column `$bucket` (unix hours or
/// days) first in the key.
macro_rules! usage_table {
    ($name:literal, $bucket:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS ",
            $name,
            " (
            ",
            $bucket,
            " INT NOT NULL,
            namespace VARCHAR(64) NOT NULL,
            key_id VARCHAR(16) NOT NULL,
            model VARCHAR(128) NOT NULL,
            target VARCHAR(64) NOT NULL,
            status_class TINYINT UNSIGNED NOT NULL,
            requests BIGINT UNSIGNED NOT NULL,
            errors BIGINT UNSIGNED NOT NULL,
            prompt_tokens BIGINT UNSIGNED NOT NULL,
            completion_tokens BIGINT UNSIGNED NOT NULL,
            cached_tokens BIGINT UNSIGNED NOT NULL,
            reasoning_tokens BIGINT UNSIGNED NOT NULL,
            latency_ms_sum BIGINT UNSIGNED NOT NULL,
            latency_ms_max INT UNSIGNED NOT NULL,
            PRIMARY KEY (",
            $bucket,
            ", namespace, key_id, model, target, status_class),
            KEY ",
            $name,
            "_namespace (namespace, ",
            $bucket,
            ")
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        )
    };
}

/// Adds the latency histogram's columns (`core::access_log::latency::COLUMNS`, 0 for the
/// rows already there) to the aggregate table `$name`, in one statement.
macro_rules! add_latency_histogram {
    ($name:literal) => {
        concat!(
            "ALTER TABLE ",
            $name,
            " ADD COLUMN latency_le_50 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_100 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_250 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_500 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_1000 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_2500 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_5000 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_10000 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_30000 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_60000 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_le_120000 BIGINT UNSIGNED NOT NULL DEFAULT 0,",
            " ADD COLUMN latency_gt_120000 BIGINT UNSIGNED NOT NULL DEFAULT 0"
        )
    };
}

/// Whether a statement that failed with the server error `code` had done its work in an
/// earlier run cut short: an `ALTER TABLE` whose columns are there (1060, duplicate column).
pub fn done_before(sql: &str, code: u16) -> bool {
    code == 1060 && sql.trim_start().starts_with("ALTER TABLE ")
}

/// `(version, name, statements)`.
pub const MIGRATIONS: &[(u32, &str, &[&str])] = &[(
    1,
    "config center",
    &[
        "CREATE TABLE IF NOT EXISTS config_head (
            id TINYINT NOT NULL PRIMARY KEY,
            version BIGINT NOT NULL,
            epoch VARCHAR(64) NOT NULL,
            sha256 CHAR(64) NOT NULL,
            next_id BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "INSERT IGNORE INTO config_head (id, version, epoch, sha256, next_id, updated_at)
            VALUES (1, 0, ?, '', 1, ?)",
        "CREATE TABLE IF NOT EXISTS settings (
            name VARCHAR(64) NOT NULL PRIMARY KEY,
            value TEXT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS namespaces (
            code VARCHAR(64) NOT NULL PRIMARY KEY,
            name VARCHAR(255) NULL,
            description TEXT NULL,
            enabled TINYINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS api_keys (
            id CHAR(12) NOT NULL PRIMARY KEY,
            namespace VARCHAR(64) NOT NULL,
            name VARCHAR(255) NULL,
            sha256 CHAR(64) NOT NULL,
            prefix VARCHAR(32) NULL,
            enabled TINYINT NOT NULL,
            expires_at BIGINT NULL,
            rotated_to CHAR(12) NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            UNIQUE KEY api_keys_sha256 (sha256),
            KEY api_keys_namespace (namespace),
            CONSTRAINT api_keys_namespace_fk FOREIGN KEY (namespace) REFERENCES namespaces (code) ON DELETE CASCADE
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS matchers (
            id BIGINT NOT NULL PRIMARY KEY,
            namespace VARCHAR(64) NOT NULL,
            position INT NOT NULL,
            spec MEDIUMTEXT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            KEY matchers_namespace (namespace),
            CONSTRAINT matchers_namespace_fk FOREIGN KEY (namespace) REFERENCES namespaces (code) ON DELETE CASCADE
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS policies (
            id BIGINT NOT NULL PRIMARY KEY,
            namespace VARCHAR(64) NOT NULL,
            position INT NOT NULL,
            spec MEDIUMTEXT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            KEY policies_namespace (namespace),
            CONSTRAINT policies_namespace_fk FOREIGN KEY (namespace) REFERENCES namespaces (code) ON DELETE CASCADE
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS targets (
            name VARCHAR(255) NOT NULL PRIMARY KEY,
            spec MEDIUMTEXT NOT NULL,
            credential_kind VARCHAR(8) NULL,
            credential TEXT NULL,
            credential_last4 VARCHAR(8) NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS routes (
            name VARCHAR(255) NOT NULL PRIMARY KEY,
            position INT NOT NULL,
            spec MEDIUMTEXT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS config_revisions (
            version BIGINT NOT NULL PRIMARY KEY,
            epoch VARCHAR(64) NOT NULL,
            sha256 CHAR(64) NOT NULL,
            document LONGTEXT NOT NULL,
            state LONGTEXT NOT NULL,
            action VARCHAR(64) NOT NULL,
            actor VARCHAR(255) NOT NULL,
            message TEXT NULL,
            created_at BIGINT NOT NULL,
            published_at BIGINT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS audit_logs (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            at BIGINT NOT NULL,
            actor VARCHAR(255) NOT NULL,
            role VARCHAR(16) NULL,
            action VARCHAR(64) NOT NULL,
            resource VARCHAR(512) NOT NULL,
            version BIGINT NULL,
            ip VARCHAR(64) NOT NULL,
            details MEDIUMTEXT NULL,
            KEY audit_logs_at (at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS admin_users (
            username VARCHAR(64) NOT NULL PRIMARY KEY,
            password_hash VARCHAR(255) NOT NULL,
            role VARCHAR(16) NOT NULL,
            enabled TINYINT NOT NULL,
            failed_logins INT NOT NULL,
            locked_until BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS admin_sessions (
            id_sha256 CHAR(64) NOT NULL PRIMARY KEY,
            username VARCHAR(64) NOT NULL,
            csrf VARCHAR(64) NOT NULL,
            ip VARCHAR(64) NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            KEY admin_sessions_user (username),
            CONSTRAINT admin_sessions_user_fk FOREIGN KEY (username) REFERENCES admin_users (username) ON DELETE CASCADE
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS api_tokens (
            id CHAR(12) NOT NULL PRIMARY KEY,
            sha256 CHAR(64) NOT NULL,
            name VARCHAR(255) NOT NULL,
            username VARCHAR(64) NOT NULL,
            role VARCHAR(16) NOT NULL,
            prefix VARCHAR(16) NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NULL,
            last_used_at BIGINT NULL,
            UNIQUE KEY api_tokens_sha256 (sha256),
            CONSTRAINT api_tokens_user_fk FOREIGN KEY (username) REFERENCES admin_users (username) ON DELETE CASCADE
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS login_failures (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            ip VARCHAR(64) NOT NULL,
            at BIGINT NOT NULL,
            KEY login_failures_ip (ip, at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    ],
), (
    2,
    "settings rows",
    // Every setting has its row from the start: a write stores a changed setting as an
    // UPDATE of its row (`core::admin::tables`), which changes nothing when the row is
    // missing (the setting would be lost, and workers reading the tables would disagree).
    &["INSERT IGNORE INTO settings (name, value) VALUES ('unmatched_status', '401')"],
), (
    3,
    "usage and access logs",
    // One row per request (`core::access_log::record`), partitioned by unix day so that
    // retention drops whole partitions (`runtime::access_log::store` adds the days ahead
    // and drops the days past; `pmax` stays empty but for clocks far ahead). Rows are
    // clustered by time (keyset pages read in key order); the request id is unique per day
    // (a record is always in its own day's partition), which makes ingestion idempotent.
    // The aggregates are what the usage API and the dashboard read: the full grain, and a
    // summary by namespace and model alone (key_id and target empty, status_class 0), small
    // enough for months by hour.
    &[
        "CREATE TABLE IF NOT EXISTS access_logs (
            day INT NOT NULL,
            ts BIGINT NOT NULL,
            request_id VARCHAR(64) NOT NULL,
            node VARCHAR(64) NOT NULL,
            namespace VARCHAR(64) NOT NULL,
            key_id VARCHAR(16) NOT NULL,
            model VARCHAR(128) NOT NULL,
            route VARCHAR(64) NOT NULL,
            target VARCHAR(64) NOT NULL,
            status SMALLINT UNSIGNED NOT NULL,
            error VARCHAR(64) NOT NULL,
            latency_ms INT UNSIGNED NOT NULL,
            ttfb_ms INT UNSIGNED NULL,
            prompt_tokens INT UNSIGNED NULL,
            completion_tokens INT UNSIGNED NULL,
            cached_tokens INT UNSIGNED NULL,
            reasoning_tokens INT UNSIGNED NULL,
            usage_source ENUM('unknown', 'provider', 'counted', 'estimated') NOT NULL,
            attempts TINYINT UNSIGNED NOT NULL,
            stream TINYINT NOT NULL,
            PRIMARY KEY (ts, request_id, day),
            UNIQUE KEY access_logs_request (request_id, day),
            KEY access_logs_namespace (namespace, ts)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
        PARTITION BY RANGE (day) (PARTITION pmax VALUES LESS THAN MAXVALUE)",
        usage_table!("usage_hourly", "hour"),
        usage_table!("usage_daily", "day"),
        usage_table!("usage_hourly_summary", "hour"),
        usage_table!("usage_daily_summary", "day"),
    ],
), (
    4,
    "usage latency histogram and minute aggregates",
    // Every aggregate row counts its requests per latency bucket (`core::access_log::latency`)
    // for the usage API's percentiles; the rows of before count none (their percentiles are
    // null). Added as the last columns with a default: instant in MariaDB 10.3+ and MySQL
    // 8.0.12+, whatever the table holds. The minute summary (by namespace and model, as the
    // other summaries) is kept 48 hours (`runtime::access_log::store::maintain`).
    &[
        usage_table!("usage_minutely_summary", "minute"),
        add_latency_histogram!("usage_hourly"),
        add_latency_histogram!("usage_daily"),
        add_latency_histogram!("usage_hourly_summary"),
        add_latency_histogram!("usage_daily_summary"),
        add_latency_histogram!("usage_minutely_summary"),
    ],
)];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::access_log::latency::{BUCKETS, COLUMNS};

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions, (1..=MIGRATIONS.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn every_aggregate_table_gets_the_histogram() {
        let (_, _, statements) = MIGRATIONS[3];
        let alters: Vec<&str> = statements
            .iter()
            .copied()
            .filter(|s| s.starts_with("ALTER TABLE "))
            .collect();
        let tables: Vec<&str> = alters.iter().filter_map(|s| s.split(' ').nth(2)).collect();
        assert_eq!(
            tables,
            [
                "usage_hourly",
                "usage_daily",
                "usage_hourly_summary",
                "usage_daily_summary",
                "usage_minutely_summary"
            ]
        );
        for sql in alters {
            assert_eq!(sql.matches(" ADD COLUMN ").count(), BUCKETS, "{sql}");
            for c in COLUMNS {
                let def = format!(" ADD COLUMN {c} BIGINT UNSIGNED NOT NULL DEFAULT 0");
                assert!(sql.contains(&def), "{sql} lacks {c}");
            }
            assert!(done_before(sql, 1060));
            assert!(!done_before(sql, 1054));
        }
        assert!(statements[0].starts_with("CREATE TABLE IF NOT EXISTS usage_minutely_summary"));
        assert!(!done_before(statements[0], 1060));
    }
}
