//! Applying changes to DuckDB. Changes are gathered per table and collapsed
//! by key (the last change of a key wins; a key change deletes the old key;
//! an unchanged TOAST value is taken from the newest earlier version, in the
//! batch or in DuckDB), then applied set-wise: staged rows, one DELETE of
//! every touched key, one INSERT of the new versions. Tables with REPLICA
//! IDENTITY FULL and no key are applied change by change (rows may repeat);
//! tables without any identity only receive inserts. All of it runs inside
//! the caller's DuckDB transaction.

use std::collections::HashMap;

use duckdb::{appender_params_from_iter, params_from_iter};

use crate::error::{Error, Result};
use crate::pgoutput::{Message, RelColumn, Relation, Value};
use crate::schema::{duck_ident, target_name, Catalog, Column, Table};
use crate::types::{to_duck_text, Mapped};

/// A linked table as DuckDB holds it now.
struct Target {
    schema: String,
    name: String,
    /// Quoted `db.schema.table`.
    quoted: String,
    columns: Vec<Column>,
    /// Indexes of the key columns in `columns` (empty: no key).
    key: Vec<usize>,
    /// REPLICA IDENTITY FULL without a key: apply in order, row by row.
    full: bool,
    stage: Option<String>,
}

enum Entry {
    Upsert { row: Vec<Value>, fill_from: Option<Vec<Value>> },
    Delete,
}

#[derive(Default)]
struct Pending {
    /// Keyed tables: key → final change, in first-touched order.
    order: Vec<Vec<Value>>,
    entries: HashMap<Vec<Value>, Entry>,
    /// Tables without a key: rows to insert, in order.
    inserts: Vec<Vec<Value>>,
}

pub struct Applier {
    db: String,
    targets: Vec<Target>,
    /// pgoutput relation id → index in `targets`, with the relation's column order.
    relations: HashMap<u32, (usize, Vec<usize>)>,
    pending: HashMap<usize, Pending>,
    pending_count: usize,
    applied: u64,
    stage_counter: usize,
}

impl Applier {
    /// Logical mode: keyless tables with REPLICA IDENTITY FULL are applied row by row.
    pub fn new(db: &str, tables: &[Table]) -> Applier {
        Self::make(db, tables, false)
    }

    /// Trigger mode: every change carries whole rows, so every keyless table is applied row by row.
    pub fn new_full(db: &str, tables: &[Table]) -> Applier {
        Self::make(db, tables, true)
    }

    fn make(db: &str, tables: &[Table], all_full: bool) -> Applier {
        let targets = tables
            .iter()
            .map(|t| {
                let key: Vec<usize> = t.key.iter().filter_map(|k| t.columns.iter().position(|c| &c.name == k)).collect();
                Target {
                    schema: t.schema.clone(),
                    name: t.name.clone(),
                    quoted: target_name(db, &t.schema, &t.name),
                    columns: t.columns.clone(),
                    full: key.is_empty() && (all_full || t.identity == 'f'),
                    key,
                    stage: None,
                }
            })
            .collect();
        Applier {
            db: db.to_string(),
            targets,
            relations: HashMap::new(),
            pending: HashMap::new(),
            pending_count: 0,
            applied: 0,
            stage_counter: 0,
        }
    }

    /// Changes waiting to be applied.
    pub fn pending(&self) -> usize {
        self.pending_count
    }

    /// Changes applied since the applier was made.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// A relation message: learn its column order, and follow added or
    /// dropped columns. Any other change of shape is an error that says what to do.
    pub fn relation(&mut self, conn: &duckdb::Connection, catalog: &mut Catalog, rel: Relation) -> Result<()> {
        let Some(ti) = self.targets.iter().position(|t| t.schema == rel.schema && t.name == rel.name) else {
            return Ok(()); // not a linked table
        };
        let current: Vec<String> = self.targets[ti].columns.iter().map(|c| c.name.clone()).collect();
        let incoming: Vec<&RelColumn> = rel.columns.iter().collect();
        let changed_type = incoming.iter().find_map(|c| {
            let known = self.targets[ti].columns.iter().find(|k| k.name == c.name)?;
            (known.type_oid != c.type_oid || known.typmod != c.typmod).then(|| c.name.clone())
        });
        if let Some(col) = changed_type {
            return Err(Error::Unsupported(format!(
                "column {col} of {}.{} changed type on the source; UNLINK DATABASE {} and LINK it again to copy the table anew",
                rel.schema, rel.name, self.db
            )));
        }
        let added: Vec<&&RelColumn> = incoming.iter().filter(|c| !current.contains(&c.name)).collect();
        let dropped: Vec<String> = current.iter().filter(|n| !incoming.iter().any(|c| &c.name == *n)).cloned().collect();
        if !added.is_empty() || !dropped.is_empty() {
            self.flush_table(conn, ti)?;
            let quoted = self.targets[ti].quoted.clone();
            for name in &dropped {
                conn.execute_batch(&format!("ALTER TABLE {quoted} DROP COLUMN {}", duck_ident(name)))?;
                self.targets[ti].columns.retain(|c| &c.name != name);
            }
            for c in added {
                let mapped = catalog.map_type(c.type_oid, c.typmod)?;
                // Rows that existed before the column read its default (PostgreSQL keeps it
                // in the catalog, not in the rows, so no change carries it).
                let default = match catalog.missing_value(&rel.schema, &rel.name, &c.name)? {
                    Some(v) => {
                        let text = to_duck_text(&mapped.text, &v)?;
                        format!(" DEFAULT {}", mapped.duck_from_text(&format!("'{}'", text.replace('\'', "''"))))
                    }
                    None => String::new(),
                };
                conn.execute_batch(&format!("ALTER TABLE {quoted} ADD COLUMN {} {}{default}", duck_ident(&c.name), mapped.duck))?;
                self.targets[ti].columns.push(Column { name: c.name.clone(), type_oid: c.type_oid, typmod: c.typmod, mapped });
            }
            let t = &mut self.targets[ti];
            let key_names: Vec<String> = rel.columns.iter().filter(|c| c.key).map(|c| c.name.clone()).collect();
            if !t.full && !t.key.is_empty() {
                t.key = key_names.iter().filter_map(|k| t.columns.iter().position(|c| &c.name == k)).collect();
            }
            if let Some(stage) = t.stage.take() {
                conn.execute_batch(&format!("DROP TABLE IF EXISTS {stage}"))?;
            }
        }
        let t = &self.targets[ti];
        let order: Vec<usize> =
            rel.columns.iter().map(|c| t.columns.iter().position(|k| k.name == c.name).expect("columns were reconciled above")).collect();
        self.relations.insert(rel.id, (ti, order));
        Ok(())
    }

    /// Reorders a tuple from the relation's column order to the target's.
    fn reorder(&self, ti: usize, order: &[usize], values: Vec<Value>) -> Vec<Value> {
        let mut out = vec![Value::Null; self.targets[ti].columns.len()];
        for (v, &i) in values.into_iter().zip(order) {
            out[i] = v;
        }
        out
    }

    fn key_of(&self, ti: usize, row: &[Value]) -> Vec<Value> {
        self.targets[ti].key.iter().map(|&i| row[i].clone()).collect()
    }

    /// Gathers one change; applies nothing yet (except row-by-row tables).
    pub fn change(&mut self, conn: &duckdb::Connection, msg: Message) -> Result<()> {
        let rel = match &msg {
            Message::Insert { rel, .. } | Message::Update { rel, .. } | Message::Delete { rel, .. } => *rel,
            Message::Truncate { rels } => return self.truncate(conn, rels),
            _ => return Ok(()),
        };
        let Some((ti, order)) = self.relations.get(&rel).cloned() else {
            return Ok(()); // a table that is not linked
        };
        self.pending_count += 1;
        if self.targets[ti].full {
            return self.change_in_order(conn, ti, &order, msg);
        }
        let keyed = !self.targets[ti].key.is_empty();
        match msg {
            Message::Insert { new, .. } => {
                let row = self.reorder(ti, &order, new);
                if keyed {
                    let key = self.key_of(ti, &row);
                    self.put(ti, key, Entry::Upsert { row, fill_from: None });
                } else {
                    self.pending.entry(ti).or_default().inserts.push(row);
                }
            }
            Message::Update { old, new, .. } if keyed => {
                let mut row = self.reorder(ti, &order, new);
                let new_key = self.key_of(ti, &row);
                let old_key = match old {
                    Some(o) => {
                        let o = self.reorder(ti, &order, o);
                        self.key_of(ti, &o)
                    }
                    None => new_key.clone(),
                };
                // Unchanged TOAST values: from the newest version in this batch, else from DuckDB.
                let mut fill_from = None;
                if row.contains(&Value::Unchanged) {
                    let earlier = self.pending.get(&ti).and_then(|p| p.entries.get(&old_key));
                    match earlier {
                        Some(Entry::Upsert { row: prev, fill_from: prev_fill }) => {
                            for (v, p) in row.iter_mut().zip(prev) {
                                if *v == Value::Unchanged {
                                    *v = p.clone();
                                }
                            }
                            if row.contains(&Value::Unchanged) {
                                fill_from = prev_fill.clone();
                            }
                        }
                        _ => fill_from = Some(old_key.clone()),
                    }
                }
                if old_key != new_key {
                    self.put(ti, old_key, Entry::Delete);
                }
                self.put(ti, new_key, Entry::Upsert { row, fill_from });
            }
            Message::Delete { old, .. } if keyed => {
                let o = self.reorder(ti, &order, old);
                let key = self.key_of(ti, &o);
                self.put(ti, key, Entry::Delete);
            }
            _ => {} // updates and deletes of a table without identity are not published
        }
        Ok(())
    }

    fn put(&mut self, ti: usize, key: Vec<Value>, entry: Entry) {
        let p = self.pending.entry(ti).or_default();
        if p.entries.insert(key.clone(), entry).is_none() {
            p.order.push(key);
        }
    }

    fn truncate(&mut self, conn: &duckdb::Connection, rels: &[u32]) -> Result<()> {
        for rel in rels {
            let Some((ti, _)) = self.relations.get(rel).cloned() else { continue };
            self.pending.remove(&ti);
            conn.execute_batch(&format!("DELETE FROM {}", self.targets[ti].quoted))?;
            self.applied += 1;
        }
        Ok(())
    }

    /// REPLICA IDENTITY FULL without a key: one statement per update or delete.
    fn change_in_order(&mut self, conn: &duckdb::Connection, ti: usize, order: &[usize], msg: Message) -> Result<()> {
        match msg {
            Message::Insert { new, .. } => {
                let row = self.reorder(ti, order, new);
                self.pending.entry(ti).or_default().inserts.push(row);
            }
            Message::Update { old, new, .. } => {
                self.flush_table(conn, ti)?;
                let old = old
                    .map(|o| self.reorder(ti, order, o))
                    .ok_or_else(|| Error::Internal("an update of a REPLICA IDENTITY FULL table came without its old row".into()))?;
                let mut new = self.reorder(ti, order, new);
                for (v, o) in new.iter_mut().zip(&old) {
                    if *v == Value::Unchanged {
                        *v = o.clone();
                    }
                }
                self.delete_one(conn, ti, &old)?;
                self.pending.entry(ti).or_default().inserts.push(new);
                self.flush_table(conn, ti)?;
            }
            Message::Delete { old, .. } => {
                self.flush_table(conn, ti)?;
                let old = self.reorder(ti, order, old);
                self.delete_one(conn, ti, &old)?;
                self.applied += 1;
            }
            _ => {}
        }
        Ok(())
    }

    fn delete_one(&self, conn: &duckdb::Connection, ti: usize, old: &[Value]) -> Result<()> {
        let t = &self.targets[ti];
        let mut conds = Vec::new();
        let mut params: Vec<Option<String>> = Vec::new();
        for (c, v) in t.columns.iter().zip(old) {
            match v {
                Value::Null => conds.push(format!("{} IS NULL", duck_ident(&c.name))),
                Value::Text(s) => {
                    conds.push(format!("{} IS NOT DISTINCT FROM {}", duck_ident(&c.name), c.mapped.duck_from_text("?")));
                    params.push(Some(to_duck_text(&c.mapped.text, s)?));
                }
                Value::Unchanged => {}
            }
        }
        let sql = format!(
            "DELETE FROM {q} WHERE rowid = (SELECT rowid FROM {q} WHERE {} LIMIT 1)",
            if conds.is_empty() { "true".to_string() } else { conds.join(" AND ") },
            q = t.quoted
        );
        conn.execute(&sql, params_from_iter(params))?;
        Ok(())
    }

    /// Applies every gathered change (inside the caller's transaction).
    pub fn flush(&mut self, conn: &duckdb::Connection) -> Result<()> {
        let mut tables: Vec<usize> = self.pending.keys().copied().collect();
        tables.sort_unstable();
        for ti in tables {
            self.flush_table(conn, ti)?;
        }
        self.pending_count = 0;
        Ok(())
    }

    fn stage_table(&mut self, conn: &duckdb::Connection, ti: usize) -> Result<String> {
        if let Some(s) = &self.targets[ti].stage {
            return Ok(s.clone());
        }
        self.stage_counter += 1;
        let name = format!("temp.main.\"__pond_link_stage_{}\"", self.stage_counter);
        let t = &self.targets[ti];
        let mut cols = vec!["__seq BIGINT".to_string(), "__op VARCHAR".to_string(), "__u VARCHAR".to_string()];
        cols.extend((0..t.key.len()).map(|k| format!("__f{k} VARCHAR")));
        cols.extend((0..t.columns.len()).map(|i| format!("c{i} VARCHAR")));
        conn.execute_batch(&format!("CREATE OR REPLACE TEMP TABLE \"__pond_link_stage_{}\" ({})", self.stage_counter, cols.join(", ")))?;
        self.targets[ti].stage = Some(name.clone());
        Ok(name)
    }

    fn flush_table(&mut self, conn: &duckdb::Connection, ti: usize) -> Result<()> {
        let Some(p) = self.pending.remove(&ti) else { return Ok(()) };
        if p.entries.is_empty() && p.inserts.is_empty() {
            return Ok(());
        }
        let stage = self.stage_table(conn, ti)?;
        let t = &self.targets[ti];
        let text = |m: &Mapped, v: &Value| -> Result<Option<String>> {
            match v {
                Value::Text(s) => Ok(Some(to_duck_text(&m.text, s)?)),
                _ => Ok(None),
            }
        };
        let mut any_fill = false;
        {
            let stage_name = stage.trim_start_matches("temp.main.").trim_matches('"').to_string();
            let mut app = conn.appender_to_catalog_and_db(&stage_name, "temp", "main")?;
            let mut seq = 0i64;
            let width = 3 + t.key.len() + t.columns.len();
            let mut push = |op: &str, unchanged: Option<String>, fill: Option<&Vec<Value>>, row: &[Value]| -> Result<()> {
                let mut vals: Vec<Option<String>> = Vec::with_capacity(width);
                vals.push(Some(seq.to_string()));
                vals.push(Some(op.to_string()));
                vals.push(unchanged);
                for (k, &ci) in t.key.iter().enumerate() {
                    let _ = k;
                    vals.push(match fill {
                        Some(f) => text(&t.columns[ci].mapped, &f[k])?,
                        None => None,
                    });
                }
                for (c, v) in t.columns.iter().zip(row) {
                    vals.push(text(&c.mapped, v)?);
                }
                app.append_row(appender_params_from_iter(vals))?;
                seq += 1;
                Ok(())
            };
            for row in &p.inserts {
                push("I", None, None, row)?;
            }
            for key in &p.order {
                match &p.entries[key] {
                    Entry::Delete => {
                        let mut row = vec![Value::Null; t.columns.len()];
                        for (k, &ci) in t.key.iter().enumerate() {
                            row[ci] = key[k].clone();
                        }
                        push("D", None, None, &row)?;
                    }
                    Entry::Upsert { row, fill_from } => {
                        let unchanged: Vec<String> =
                            row.iter().enumerate().filter(|(_, v)| **v == Value::Unchanged).map(|(i, _)| format!(",{i},")).collect();
                        let unchanged = (!unchanged.is_empty()).then(|| unchanged.concat());
                        any_fill |= unchanged.is_some();
                        push("U", unchanged, if fill_from.is_some() { fill_from.as_ref() } else { None }, row)?;
                    }
                }
            }
            app.flush()?;
        }
        let n = p.inserts.len() + p.entries.len();
        let cols: Vec<String> = t.columns.iter().map(|c| duck_ident(&c.name)).collect();
        let mut sql = String::new();
        if any_fill {
            // Old versions of rows whose unchanged TOAST values come from DuckDB, read before the delete.
            let on: Vec<String> = t
                .key
                .iter()
                .enumerate()
                .map(|(k, &ci)| format!("t.{} = {}", cols[ci], t.columns[ci].mapped.duck_from_text(&format!("s.__f{k}"))))
                .collect();
            sql.push_str(&format!(
                "CREATE OR REPLACE TEMP TABLE __pond_link_fill AS SELECT s.__seq AS __seq, t.* FROM {stage} s JOIN {q} t ON {} WHERE s.__u IS NOT NULL;",
                on.join(" AND "),
                q = t.quoted
            ));
        }
        if !t.key.is_empty() {
            let on: Vec<String> = t
                .key
                .iter()
                .map(|&ci| format!("{q}.{c} = {}", t.columns[ci].mapped.duck_from_text(&format!("s.c{ci}")), q = t.quoted, c = cols[ci]))
                .collect();
            sql.push_str(&format!("DELETE FROM {q} USING {stage} s WHERE {};", on.join(" AND "), q = t.quoted));
        }
        let exprs: Vec<String> = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let v = c.mapped.duck_from_text(&format!("s.c{i}"));
                if any_fill {
                    format!("CASE WHEN contains(s.__u, ',{i},') THEN f.{} ELSE {v} END", cols[i])
                } else {
                    v
                }
            })
            .collect();
        let from = if any_fill { format!("{stage} s LEFT JOIN __pond_link_fill f ON f.__seq = s.__seq") } else { format!("{stage} s") };
        sql.push_str(&format!(
            "INSERT INTO {q} ({}) SELECT {} FROM {from} WHERE s.__op <> 'D' ORDER BY s.__seq; DELETE FROM {stage};",
            cols.join(", "),
            exprs.join(", "),
            q = t.quoted
        ));
        conn.execute_batch(&sql).map_err(|e| Error::Duck(format!("applying changes to {}.{}: {e}", t.schema, t.name)))?;
        self.applied += n as u64;
        Ok(())
    }
}
