//! The initial copy: DuckDB's postgres_scanner (parallel binary COPY from
//! PostgreSQL) in a private DuckDB instance whose PostgreSQL transaction
//! adopts the snapshot the replication slot exported, so the copy holds
//! exactly what the slot's stream does not. Batches cross to the engine's
//! connection through DuckDB's appender, inside the caller's transaction.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use duckdb::arrow::record_batch::RecordBatch;

use crate::conn::Source;
use crate::error::{Error, Result};
use crate::schema::{duck_ident, pg_ident, pg_literal, Table};

/// Names the copier uses for the source in its private instance.
const SRC: &str = "pond_link_src";

/// Copies `tables` into `db` on `target` (which has an open transaction).
/// `snapshot` is the exported snapshot to read at (logical mode) or None (the
/// caller's own consistency rules apply). Returns rows copied.
pub fn copy_tables(
    source: &Source,
    snapshot: Option<&str>,
    tables: &[Table],
    target: &duckdb::Connection,
    db: &str,
    scanner: &Path,
    progress: &AtomicU64,
) -> Result<u64> {
    // `None` marks the end: a channel that closes without it means the copier died.
    let (tx, rx) = mpsc::sync_channel::<Result<Option<(usize, RecordBatch)>>>(16);
    let libpq = source.libpq();
    let scanner = scanner.to_path_buf();
    let snapshot = snapshot.map(str::to_string);
    let queries: Vec<String> = tables.iter().map(select_sql).collect();
    let shown = source.to_string();
    let shown_panic = shown.clone();
    let libpq_panic = libpq.clone();
    let source_copy = source.clone();
    let source_panic = source.clone();
    let producer = std::thread::Builder::new()
        .name("pond-link-copy".into())
        .spawn(move || {
            let run = || -> Result<()> {
                let copier = duckdb::Connection::open_in_memory()?;
                copier
                    .execute_batch(&format!("LOAD {}", pg_literal(&scanner.display().to_string())))
                    .map_err(|e| Error::Internal(format!("cannot load DuckDB's postgres_scanner extension for the copy: {e}")))?;
                copier
                    .execute_batch(&format!("ATTACH {} AS {SRC} (TYPE postgres, READ_ONLY)", pg_literal(&libpq)))
                    .map_err(|e| Error::Source(format!("PostgreSQL at {shown}: {}", scrub(&e.to_string(), &libpq, &source_copy))))?;
                copier.execute_batch("BEGIN")?;
                if let Some(s) = &snapshot {
                    let inner = format!("SET TRANSACTION SNAPSHOT {}", pg_literal(s));
                    copier.execute_batch(&format!("CALL postgres_execute('{SRC}', {})", pg_literal(&inner))).map_err(|e| {
                        Error::Source(format!(
                            "cannot read at the replication slot's snapshot: {}",
                            scrub(&e.to_string(), &libpq, &source_copy)
                        ))
                    })?;
                }
                for (i, q) in queries.iter().enumerate() {
                    let mut stmt = copier.prepare(q).map_err(|e| Error::Duck(scrub(&e.to_string(), &libpq, &source_copy)))?;
                    // Streamed: the table is never held whole in the copier.
                    let batches = stmt.stream_arrow([]).map_err(|e| Error::Duck(scrub(&e.to_string(), &libpq, &source_copy)))?;
                    for b in batches {
                        if tx.send(Ok(Some((i, b)))).is_err() {
                            return Ok(());
                        }
                    }
                }
                copier.execute_batch("COMMIT")?;
                let _ = tx.send(Ok(None));
                Ok(())
            };
            // duckdb's Arrow stream panics when fetching fails mid-way (the source went away).
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = tx.send(Err(e));
                }
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "the copy stopped".into());
                    let _ = tx.send(Err(Error::Source(format!(
                        "reading from PostgreSQL at {shown_panic} failed: {}",
                        scrub(&what, &libpq_panic, &source_panic)
                    ))));
                }
            }
        })
        .map_err(|e| Error::Internal(format!("cannot start the copy thread: {e}")))?;

    let mut rows = 0u64;
    let mut current: Option<(usize, duckdb::Appender<'_>)> = None;
    let result = (|| -> Result<()> {
        let mut finished = false;
        for item in rx {
            let Some((i, batch)) = item? else {
                finished = true;
                break;
            };
            if current.as_ref().map(|(c, _)| *c) != Some(i) {
                if let Some((_, mut a)) = current.take() {
                    a.flush()?;
                }
                let t = &tables[i];
                current = Some((i, target.appender_to_catalog_and_db(&t.name, db, t.duck_schema())?));
            }
            let n = batch.num_rows() as u64;
            current.as_mut().expect("set above").1.append_record_batch(batch)?;
            rows += n;
            progress.fetch_add(n, Ordering::Relaxed);
        }
        if let Some((_, mut a)) = current.take() {
            a.flush()?;
        }
        if !finished {
            return Err(Error::Internal("the copy ended before every table was read".into()));
        }
        Ok(())
    })();
    let _ = producer.join();
    result.map(|()| rows)
}

/// The copier's query for one table: native columns through the scanner,
/// the rest as PostgreSQL text converted like a replicated change.
fn select_sql(t: &Table) -> String {
    let all_native = t.columns.iter().all(|c| c.mapped.native);
    let exprs: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let col = duck_ident(&c.name);
            if c.mapped.duck == "INTERVAL" {
                // Through text: the Arrow hand-off loses NULL intervals (they arrive as garbage).
                format!("CAST(CAST({col} AS INTERVAL) AS VARCHAR)")
            } else if c.mapped.native {
                format!("CAST({col} AS {})", c.mapped.duck)
            } else {
                c.mapped.duck_from_text(&col)
            }
        })
        .collect();
    if all_native {
        return format!("SELECT {} FROM {SRC}.{}.{}", exprs.join(", "), duck_ident(&t.schema), duck_ident(&t.name));
    }
    let pg_cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let q = pg_ident(&c.name);
            if c.mapped.native {
                q
            } else {
                format!("{} AS {q}", c.mapped.pg_text_expr(&q))
            }
        })
        .collect();
    let inner = format!("SELECT {} FROM {}", pg_cols.join(", "), t.source_name());
    format!("SELECT {} FROM postgres_query('{SRC}', {})", exprs.join(", "), pg_literal(&inner))
}

/// Removes the connection string and password from an error text (the scanner may echo them).
fn scrub(text: &str, libpq: &str, source: &Source) -> String {
    source.scrub(&text.replace(libpq, "<connection>"))
}
