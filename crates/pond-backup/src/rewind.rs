//! `pond restore --until T`: a restored data directory whose lake is set
//! back to the DuckLake snapshot in force at `T`.
//!
//! The backup's lake catalog keeps the snapshots of the original's
//! `--lake-snapshot-retention-secs` window. The snapshot at `T` is the
//! newest one committed at or before it; it must be followed by its direct
//! successor (snapshot ids grow by one), else snapshots around `T` were
//! expired and the state at `T` is unknown: refused. Then, in one DuckLake
//! transaction, every lake table gets exactly its rows at that snapshot
//! (tables made later are emptied; the bookkeeping `_pond_flushed` goes back
//! too, so replay starts from the generation flushed at `T`). The ingest
//! log keeps only records that arrived at or before `T` (each record holds
//! its arrival time).
//!
//! What this gives: the lake as queries saw it at `T`, plus the logged
//! writes of the backup that arrived by `T`. Writes acknowledged before `T`
//! but flushed after it (at most one flush interval's worth) are in neither
//! the snapshot nor, once flushed, the log: they are not restored.
//! Ordinary database files are the backup's (no history is kept for them).

use std::path::Path;

use crate::{Error, Result};

/// What a rewind did.
#[derive(Debug, Clone)]
pub struct Rewound {
    /// The snapshot the lake was set back to, and when it was committed.
    pub snapshot_id: i64,
    pub snapshot_time: String,
    pub tables: usize,
    pub log_records_kept: usize,
    pub log_records_dropped: usize,
}

/// Parses `--until`: RFC 3339 (`2026-12-08T01:00:00Z`, any offset) or
/// `YYYY-MM-DD HH:MM:SS[.fff]` read as UTC. Nanoseconds since the epoch.
pub fn parse_until(text: &str) -> Result<i64> {
    let t = text.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(t).map(|d| d.with_timezone(&chrono::Utc)).or_else(|_| {
        chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"))
            .map(|n| n.and_utc())
    });
    let at = parsed.map_err(|_| {
        Error::InvalidTarget(format!("--until '{t}': give a time such as 2026-12-08T01:00:00Z or '2026-12-08 01:00:00' (UTC)"))
    })?;
    at.timestamp_nanos_opt().ok_or_else(|| Error::InvalidTarget(format!("--until '{t}' is out of range")))
}

/// Sets the lake under data directory `root` back to its snapshot at
/// `until_ns` and drops the log records that arrived later. `ducklake` is
/// loaded from `extension_dir`.
pub fn rewind(root: &Path, until_ns: i64, extension_dir: &Path) -> Result<Rewound> {
    let catalog = root.join("lake").join("catalog.ducklake");
    if !catalog.exists() {
        return Err(Error::InvalidTarget(
            "--until: the backup holds no local lake catalog (a lake whose catalog is in PostgreSQL is rewound there, not by restore)"
                .into(),
        ));
    }
    let conn = duckdb::Connection::open_in_memory().map_err(engine)?;
    conn.execute_batch(&format!("SET extension_directory = {}", literal(&extension_dir.display().to_string()))).map_err(engine)?;
    pond_engine::extensions::load_all(&conn, extension_dir, &["ducklake".to_string()], false)
        .map_err(|e| Error::Engine(format!("--until needs the ducklake extension: {e}")))?;
    let data = root.join("lake").join("data");
    conn.execute_batch(&format!(
        "ATTACH {} AS l (DATA_PATH {}, OVERRIDE_DATA_PATH true)",
        literal(&format!("ducklake:{}", catalog.display())),
        literal(&format!("{}/", data.display()))
    ))
    .map_err(engine)?;
    let (snapshot_id, snapshot_time): (Option<i64>, Option<String>) = conn
        .query_row(
            "SELECT snapshot_id, strftime(snapshot_time::TIMESTAMP, '%Y-%m-%dT%H:%M:%S.%fZ') FROM ducklake_snapshots('l') \
             WHERE epoch_ns(snapshot_time::TIMESTAMP) <= ? ORDER BY snapshot_id DESC LIMIT 1",
            [until_ns],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .or_else(|e| if matches!(e, duckdb::Error::QueryReturnedNoRows) { Ok((None, None)) } else { Err(e) })
        .map_err(engine)?;
    let oldest: Option<String> = conn
        .query_row("SELECT strftime(min(snapshot_time)::TIMESTAMP, '%Y-%m-%dT%H:%M:%S.%fZ') FROM ducklake_snapshots('l')", [], |r| r.get(0))
        .map_err(engine)?;
    let (Some(snapshot_id), Some(snapshot_time)) = (snapshot_id, snapshot_time) else {
        return Err(Error::NotFound(format!(
            "--until: the backup's lake keeps no snapshot that old (the oldest is from {}); keep more history with \
             --lake-snapshot-retention-secs",
            oldest.unwrap_or_else(|| "nowhere".into())
        )));
    };
    let next: Option<i64> = conn
        .query_row("SELECT min(snapshot_id) FROM ducklake_snapshots('l') WHERE snapshot_id > ?", [snapshot_id], |r| r.get(0))
        .map_err(engine)?;
    if next.is_some_and(|n| n != snapshot_id + 1) {
        return Err(Error::NotFound(format!(
            "--until: the lake's snapshots after {snapshot_time} were expired, so its state at the time given is not known \
             (the oldest kept is from {}); keep more history with --lake-snapshot-retention-secs",
            oldest.unwrap_or_default()
        )));
    }
    let mut stmt =
        conn.prepare("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'l' ORDER BY 1, 2").map_err(engine)?;
    let tables: Vec<(String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(engine)?.collect::<Result<_, _>>().map_err(engine)?;
    if next.is_some() {
        conn.execute_batch("BEGIN TRANSACTION").map_err(engine)?;
        let done = (|| -> Result<()> {
            for (schema, table) in &tables {
                let t = format!("l.{}.{}", ident(schema), ident(table));
                let kept = conn
                    .execute_batch(&format!("CREATE OR REPLACE TEMP TABLE pond_rewind AS SELECT * FROM {t} AT (VERSION => {snapshot_id})"));
                conn.execute_batch(&format!("DELETE FROM {t}")).map_err(engine)?;
                match kept {
                    Ok(()) => conn.execute_batch(&format!("INSERT INTO {t} BY NAME SELECT * FROM pond_rewind")).map_err(engine)?,
                    // Made after the snapshot: it stays, empty (its view in the database still names it).
                    Err(e) if e.to_string().contains("does not exist") => {}
                    Err(e) => return Err(engine(e)),
                }
            }
            Ok(())
        })();
        match done {
            Ok(()) => conn.execute_batch("COMMIT").map_err(engine)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    let (log_records_kept, log_records_dropped) = pond_ingest::wal::keep_only(&root.join("ingest"), |r| r.default_time <= until_ns)
        .map_err(|e| Error::Engine(format!("cannot filter the ingest log: {e}")))?;
    Ok(Rewound { snapshot_id, snapshot_time, tables: tables.len(), log_records_kept, log_records_dropped })
}

fn engine(e: duckdb::Error) -> Error {
    Error::Engine(e.to_string())
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_accepts_rfc3339_and_plain_utc() {
        assert_eq!(parse_until("1970-01-01T00:00:01Z").ok(), Some(1_000_000_000));
        assert_eq!(parse_until("1970-01-01 00:00:01.5").ok(), Some(1_500_000_000));
        assert_eq!(parse_until("1970-01-01T02:00:00+02:00").ok(), Some(0));
        let e = parse_until("yesterday").unwrap_err().to_string();
        assert!(e.contains("--until 'yesterday'"), "{e}");
    }
}
