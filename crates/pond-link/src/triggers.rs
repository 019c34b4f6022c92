//! Trigger mode, for sources without `wal_level=logical` or the REPLICATION
//! privilege: row triggers write every change into an audit table on the
//! source (values as PostgreSQL's text, with fixed date, interval and float
//! settings). The link claims the committed rows in batches
//! (`UPDATE … SET batch = nextval(…) WHERE batch IS NULL`: exactly the rows
//! committed so far, whatever their transaction ids or serials), applies
//! each batch in id order in one DuckDB transaction recording the batch
//! number, then deletes it on the source. Ordering by id inside the claimed
//! rows is commit-consistent per row: a second writer of a row waits for the
//! first one's commit before its own audit insert draws a later id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::apply::Applier;
use crate::error::{Error, Result};
use crate::link::{copy_at, record_position, LinkConfig, Shared};
use crate::pgoutput::{Message, RelColumn, Relation, Value};
use crate::schema::{pg_ident, Catalog, Table};

const PAGE: i64 = 20_000;

fn schema(cfg: &LinkConfig) -> String {
    pg_ident(&format!("pond_{}", cfg.id))
}

fn trigger_names(cfg: &LinkConfig) -> (String, String) {
    (pg_ident(&format!("pond_{}_capture", cfg.id)), pg_ident(&format!("pond_{}_truncate", cfg.id)))
}

/// Installs the audit table and triggers, then copies every table at a
/// snapshot whose audit rows are deleted in the same source transaction.
pub fn setup_and_copy(
    cfg: &LinkConfig,
    catalog: &mut Catalog,
    tables: &[Table],
    duck: &duckdb::Connection,
    progress: &AtomicU64,
) -> Result<u64> {
    remove(catalog, cfg)?;
    let s = schema(cfg);
    let mut ddl = format!(
        "CREATE SCHEMA {s}; CREATE SEQUENCE {s}.batches; \
         CREATE TABLE {s}.changes (id bigserial PRIMARY KEY, batch bigint, tbl text NOT NULL, op \"char\" NOT NULL, old json, new json); \
         CREATE INDEX ON {s}.changes (batch); \
         CREATE FUNCTION {s}.capture() RETURNS trigger LANGUAGE plpgsql \
           SET \"DateStyle\" = 'ISO' SET \"IntervalStyle\" = 'postgres' SET \"TimeZone\" = 'UTC' SET extra_float_digits = 3 SET bytea_output = 'hex' \
         AS $pond$ BEGIN \
           IF TG_OP = 'TRUNCATE' THEN \
             INSERT INTO {s}.changes (tbl, op) VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'T'); RETURN NULL; \
           END IF; \
           INSERT INTO {s}.changes (tbl, op, old, new) VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, left(TG_OP, 1), \
             CASE WHEN TG_OP <> 'INSERT' THEN (SELECT json_object_agg(key, value) FROM json_each_text(row_to_json(OLD))) END, \
             CASE WHEN TG_OP <> 'DELETE' THEN (SELECT json_object_agg(key, value) FROM json_each_text(row_to_json(NEW))) END); \
           RETURN NULL; \
         END $pond$;"
    );
    let (row_trigger, truncate_trigger) = trigger_names(cfg);
    for t in tables {
        ddl.push_str(&format!(
            "CREATE TRIGGER {row_trigger} AFTER INSERT OR UPDATE OR DELETE ON {n} FOR EACH ROW EXECUTE FUNCTION {s}.capture(); \
             CREATE TRIGGER {truncate_trigger} AFTER TRUNCATE ON {n} FOR EACH STATEMENT EXECUTE FUNCTION {s}.capture();",
            n = t.source_name()
        ));
    }
    catalog.execute("installing the audit triggers", &format!("BEGIN; {ddl} COMMIT;"))?;

    // A snapshot for the copy; in the same transaction, the audit rows it already reflects go.
    let client = catalog.client.clone();
    let shown = catalog.shown.clone();
    let s2 = s.clone();
    let snapshot: String = crate::conn::run(&shown, "starting the copy", Duration::from_secs(60), async move {
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await?;
        let row = client.query_one("SELECT pg_export_snapshot()", &[]).await?;
        client.batch_execute(&format!("DELETE FROM {s2}.changes")).await?;
        Ok(row.get::<_, String>(0))
    })?;
    duck.execute_batch("BEGIN")?;
    let copied = copy_at(cfg, &snapshot, tables, duck, progress, 0);
    let end = if copied.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let source_end = catalog.execute("finishing the copy", end);
    match (copied, source_end) {
        (Ok(rows), Ok(())) => {
            duck.execute_batch("COMMIT")?;
            Ok(rows)
        }
        (Err(e), _) | (Ok(_), Err(e)) => {
            let _ = duck.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Removes the triggers, the audit table and its schema from the source.
pub fn remove(catalog: &Catalog, cfg: &LinkConfig) -> Result<()> {
    let s = schema(cfg);
    let (row_trigger, truncate_trigger) = trigger_names(cfg);
    let rows = catalog.query(
        "finding the audit triggers",
        &format!(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE g.tgname = {}",
            crate::schema::pg_literal(&format!("pond_{}_capture", cfg.id))
        ),
    )?;
    let mut ddl = String::from("BEGIN;");
    for r in rows {
        let table: String = r.get(0);
        ddl.push_str(&format!("DROP TRIGGER IF EXISTS {row_trigger} ON {table}; DROP TRIGGER IF EXISTS {truncate_trigger} ON {table};"));
    }
    ddl.push_str(&format!("DROP SCHEMA IF EXISTS {s} CASCADE; COMMIT;"));
    catalog.execute("removing the audit triggers", &ddl)
}

/// Polls the audit table until stopped.
pub fn poll(
    cfg: &LinkConfig,
    shared: &Arc<Shared>,
    duck: &duckdb::Connection,
    catalog: &mut Catalog,
    tables: &[Table],
    start: u64,
) -> Result<()> {
    let s = schema(cfg);
    let mut applier = Applier::new_full(&cfg.database, tables);
    let rels: Vec<Relation> = tables.iter().enumerate().map(|(i, t)| relation(i as u32 + 1, t)).collect();
    for r in &rels {
        applier.relation(duck, catalog, r.clone())?;
    }
    let mut persisted = start;
    // Claimed batches this link already applied: the source deletes them now.
    catalog.execute("cleaning applied batches", &format!("DELETE FROM {s}.changes WHERE batch <= {persisted}"))?;
    let mut claims: u64 = shared.applied.load(Ordering::Relaxed);
    shared.claims_started.store(claims, Ordering::Relaxed);
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        shared.claims_started.store(claims + 1, Ordering::Relaxed);
        let batch: i64 = catalog
            .query("claiming changes", &format!("SELECT nextval('{}.batches')", s.replace('\'', "''")))?
            .first()
            .map(|r| r.get(0))
            .unwrap_or(0);
        catalog.execute("claiming changes", &format!("UPDATE {s}.changes SET batch = {batch} WHERE batch IS NULL"))?;
        // Every claimed batch above the persisted one, in order (a crash may have left one).
        let mut last = (persisted as i64, 0i64);
        let mut any = false;
        loop {
            let rows = catalog.query(
                "reading changes",
                &format!(
                    "SELECT batch, id, tbl, op::text, old::text, new::text FROM {s}.changes \
                     WHERE batch IS NOT NULL AND (batch, id) > ({}, {}) ORDER BY batch, id LIMIT {PAGE}",
                    last.0, last.1
                ),
            )?;
            if rows.is_empty() {
                break;
            }
            if !any {
                duck.execute_batch("BEGIN")?;
                any = true;
                shared.busy.store(true, Ordering::Relaxed);
            }
            for r in &rows {
                let (b, id, tbl, op): (i64, i64, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
                last = (b, id);
                let Some(ti) = tables.iter().position(|t| format!("{}.{}", t.schema, t.name) == tbl) else { continue };
                let rel = ti as u32 + 1;
                let old: Option<String> = r.get(4);
                let new: Option<String> = r.get(5);
                let msg = match op.as_str() {
                    "T" => Message::Truncate { rels: vec![rel] },
                    "I" => Message::Insert { rel, new: values(catalog, duck, &mut applier, &rels[ti], new.as_deref())? },
                    "U" => Message::Update {
                        rel,
                        old: Some(values(catalog, duck, &mut applier, &rels[ti], old.as_deref())?),
                        new: values(catalog, duck, &mut applier, &rels[ti], new.as_deref())?,
                    },
                    "D" => Message::Delete { rel, old: values(catalog, duck, &mut applier, &rels[ti], old.as_deref())? },
                    _ => continue,
                };
                applier.change(duck, msg)?;
            }
            if applier.pending() >= PAGE as usize {
                applier.flush(duck)?;
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        if any {
            applier.flush(duck)?;
            record_position(duck, &cfg.database, last.0 as u64)?;
            duck.execute_batch("COMMIT")?;
            persisted = last.0 as u64;
            catalog.execute("deleting applied changes", &format!("DELETE FROM {s}.changes WHERE batch <= {persisted}"))?;
            shared.status.lock().applied_changes = applier.applied();
        }
        claims += 1;
        shared.applied.store(claims, Ordering::Relaxed);
        shared.status.lock().position = format!("batch {persisted}");
        shared.busy.store(false, Ordering::Relaxed);
        shared.notify();
        // Sleep until the poll interval passes or SYNC asks for a claim now.
        let mut g = shared.wake_lock.lock();
        let until = std::time::Instant::now() + cfg.poll_interval;
        while !shared.stop.load(Ordering::Relaxed)
            && !shared.sync_requested.swap(false, Ordering::Relaxed)
            && std::time::Instant::now() < until
        {
            shared.wake.wait_for(&mut g, Duration::from_millis(50));
        }
    }
}

fn relation(id: u32, t: &Table) -> Relation {
    Relation {
        id,
        schema: t.schema.clone(),
        name: t.name.clone(),
        identity: b'f',
        columns: t
            .columns
            .iter()
            .map(|c| RelColumn { name: c.name.clone(), type_oid: c.type_oid, typmod: c.typmod, key: t.key.contains(&c.name) })
            .collect(),
    }
}

/// An audit row's JSON (every value as text) in the relation's column order.
/// A row with columns the link does not know yet re-reads the table's columns
/// (ADD/DROP COLUMN on the source) and updates the relation first.
fn values(
    catalog: &mut Catalog,
    duck: &duckdb::Connection,
    applier: &mut Applier,
    rel: &Relation,
    json: Option<&str>,
) -> Result<Vec<Value>> {
    let Some(json) = json else { return Ok(vec![Value::Null; rel.columns.len()]) };
    let obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| Error::Internal(format!("unreadable audit row: {e}")))?;
    let same_shape = obj.len() == rel.columns.len() && rel.columns.iter().all(|c| obj.contains_key(&c.name));
    let rel = if same_shape {
        rel.clone()
    } else {
        let fresh = catalog.tables(&[], &[format!("{}.{}", rel.schema, rel.name)])?;
        let t =
            fresh.into_iter().next().ok_or_else(|| Error::Unsupported(format!("{}.{} is gone from the source", rel.schema, rel.name)))?;
        let r = relation(rel.id, &t);
        applier.flush(duck)?;
        applier.relation(duck, catalog, r.clone())?;
        r
    };
    Ok(rel
        .columns
        .iter()
        .map(|c| match obj.get(&c.name) {
            Some(serde_json::Value::String(s)) => Value::Text(s.clone()),
            Some(serde_json::Value::Null) | None => Value::Null,
            Some(other) => Value::Text(other.to_string()),
        })
        .collect())
}
