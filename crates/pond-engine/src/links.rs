//! PostgreSQL links in the engine: `LINK / SYNC / UNLINK DATABASE`, `SHOW
//! LINKS`, their metrics, restarting recorded links, and the rule that a
//! linked database is read-only for everyone (its rows belong to the source).
//! The copy and change capture are `pond-link`'s; the connection string is a
//! Pond secret (sealed), handed to `pond-link` only in memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pond_link::{Link, LinkConfig, Mode, Source};
use pond_meta::LinkRecord;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sql::{quote_ident, LinkSource};

/// The live links, by database name.
#[derive(Default)]
pub(crate) struct Links {
    map: parking_lot::Mutex<BTreeMap<String, Arc<Link>>>,
    /// Applied-change counts already added to the metric, per database.
    counted: parking_lot::Mutex<BTreeMap<String, u64>>,
}

impl Links {
    pub(crate) fn is_linked(&self, db: &str) -> bool {
        let map = self.map.lock();
        !map.is_empty() && map.keys().any(|k| k.eq_ignore_ascii_case(db))
    }

    fn any(&self) -> bool {
        !self.map.lock().is_empty()
    }
}

fn link_error(e: pond_link::Error) -> Error {
    match e {
        pond_link::Error::Invalid(m) => Error::InvalidRequest(m),
        other => Error::Internal(other.to_string()),
    }
}

/// One row of `SHOW LINKS`.
pub struct LinkRow {
    pub database: String,
    pub status: pond_link::Status,
}

impl Engine {
    fn link_config(&self, record: &LinkRecord) -> Result<LinkConfig> {
        let secret = self.secret(&record.secret)?;
        let text = postgres_connection(&secret)?;
        let source = Source::parse(&text).map_err(link_error)?;
        let ext = self.config().extension_dir();
        Ok(LinkConfig {
            database: record.database.clone(),
            id: record.id.clone(),
            source,
            schemas: record.schemas.clone(),
            tables: record.tables.clone(),
            mode: Mode::parse(&record.mode).ok(),
            scanner: crate::extensions::extension_path(&ext, "postgres_scanner"),
            poll_interval: Duration::from_secs(1),
        })
    }

    /// `LINK DATABASE`: creates the database (or takes an empty one), copies,
    /// then leaves the link streaming. Returns LINK's one-row answer.
    pub(crate) fn link_database(
        &self,
        name: &str,
        source: &LinkSource,
        options: &BTreeMap<String, String>,
    ) -> Result<(String, String, usize, u64, String)> {
        let name = crate::engine::validate_name(name)?;
        if self.inner.links.is_linked(&name) {
            return Err(Error::InvalidRequest(format!("database {name} is already linked; UNLINK DATABASE {name} first")));
        }
        let split = |key: &str| -> Vec<String> {
            options.get(key).map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
        };
        let mode = options.get("MODE").map(|m| Mode::parse(m)).transpose().map_err(link_error)?;
        let mut schemas = split("SCHEMAS");
        if schemas.is_empty() {
            schemas.push("public".into());
        }
        let tables = split("TABLES");
        // The connection: a secret named in the statement, or one sealed now for this link.
        let (secret, own_secret) = match source {
            LinkSource::Secret(s) => {
                let sec = self.secret(s)?;
                if sec.secret_type != "postgres" {
                    return Err(Error::InvalidRequest(format!("secret {s} is of TYPE {}, not postgres", sec.secret_type)));
                }
                (s.clone(), false)
            }
            LinkSource::Connection(text) => {
                Source::parse(text).map_err(link_error)?;
                let secret = format!("link_{}", name.to_ascii_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
                let mut opts = BTreeMap::new();
                opts.insert("CONNECTION_STRING".to_string(), text.clone());
                self.create_secret(&pond_secrets::CreateSecret {
                    name: secret.clone(),
                    secret_type: "postgres".into(),
                    options: opts,
                    or_replace: true,
                    if_not_exists: false,
                })?;
                (secret, true)
            }
        };
        let created = if self.database_exists(&name) {
            let conn = self.root_clone()?;
            let n: i64 = conn.query_row(
                "SELECT (SELECT count(*) FROM duckdb_tables() WHERE database_name = ?) + (SELECT count(*) FROM duckdb_views() WHERE database_name = ? AND NOT internal)",
                duckdb::params![name, name],
                |r| r.get(0),
            )?;
            if n > 0 {
                if own_secret {
                    let _ = self.drop_secret(&secret, true);
                }
                return Err(Error::InvalidRequest(format!("database {name} exists and is not empty: LINK needs a new or empty database")));
            }
            false
        } else {
            self.create_database(&name, false)?;
            true
        };
        let file_id = self.file_id(&name)?;
        let mut record = LinkRecord {
            database: name.clone(),
            id: file_id.replace(|c: char| !c.is_ascii_alphanumeric(), "_").to_ascii_lowercase(),
            secret: secret.clone(),
            own_secret,
            mode: mode.map(Mode::as_str).unwrap_or("auto").to_string(),
            schemas,
            tables,
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        let cfg = self.link_config(&record)?;
        let conn = self.root_clone()?;
        let undo = |e: Error| -> Error {
            if created {
                let _ = self.drop_database(&name, true);
            }
            if own_secret {
                let _ = self.drop_secret(&secret, true);
            }
            e
        };
        let (link, report) = Link::create(cfg, conn).map_err(|e| undo(link_error(e)))?;
        record.mode = report.mode.as_str().to_string();
        self.inner.meta.update(|m| {
            m.links.retain(|l| l.database != name);
            m.links.push(record.clone());
            Ok::<_, Error>(())
        })?;
        self.inner.links.map.lock().insert(name.clone(), Arc::new(link));
        self.catalog_changed();
        tracing::info!(database = %name, mode = report.mode.as_str(), tables = report.tables, rows = report.rows, "database linked");
        Ok((name, report.mode.as_str().to_string(), report.tables, report.rows, report.message))
    }

    fn file_id(&self, name: &str) -> Result<String> {
        self.inner
            .meta
            .snapshot()
            .databases
            .into_iter()
            .find(|d| d.name == name)
            .map(|d| d.file_id)
            .ok_or_else(|| Error::DatabaseNotFound(name.to_string()))
    }

    fn link(&self, name: &str) -> Result<Arc<Link>> {
        let map = self.inner.links.map.lock();
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, l)| l.clone())
            .ok_or_else(|| Error::InvalidRequest(format!("database {name} is not linked")))
    }

    /// `SYNC DATABASE`: waits until the source's committed changes are applied.
    pub(crate) fn sync_database(&self, name: &str) -> Result<(String, String, f64)> {
        let link = self.link(name)?;
        let r = link.sync().map_err(link_error)?;
        Ok((link.database().to_string(), r.position, r.waited.as_secs_f64() * 1000.0))
    }

    /// `UNLINK DATABASE`: stops and cleans the source; the tables stay as ordinary tables.
    pub(crate) fn unlink_database(&self, name: &str) -> Result<String> {
        let link = self.link(name)?;
        let db = link.database().to_string();
        let left = link.unlink();
        self.inner.links.map.lock().remove(&db);
        let record = self.inner.meta.snapshot().links.into_iter().find(|l| l.database == db);
        self.inner.meta.update(|m| {
            m.links.retain(|l| l.database != db);
            Ok::<_, Error>(())
        })?;
        if let Some(r) = record.filter(|r| r.own_secret) {
            let _ = self.drop_secret(&r.secret, true);
        }
        if self.database_exists(&db) {
            let conn = self.root_clone()?;
            conn.execute_batch(&format!("DROP SCHEMA IF EXISTS {}.{} CASCADE", quote_ident(&db), pond_link::STATE_SCHEMA))?;
        }
        self.catalog_changed();
        tracing::info!(database = %db, "database unlinked");
        Ok(if left.is_empty() { format!("database {db} unlinked; its tables are ordinary tables now") } else { left.join("; ") })
    }

    /// Called before a database is dropped: a link stops and cleans up first.
    pub(crate) fn unlink_if_linked(&self, name: &str) -> Result<()> {
        if self.inner.links.is_linked(name) {
            self.unlink_database(name)?;
        }
        Ok(())
    }

    /// `SHOW LINKS` rows.
    pub fn link_rows(&self) -> Vec<LinkRow> {
        self.inner.links.map.lock().iter().map(|(db, l)| LinkRow { database: db.clone(), status: l.status() }).collect()
    }

    /// At start: every recorded link resumes in the background.
    pub(crate) fn start_recorded_links(&self) {
        for record in self.inner.meta.snapshot().links {
            if !self.database_exists(&record.database) {
                continue;
            }
            let started = (|| -> Result<Link> {
                let cfg = self.link_config(&record)?;
                let mode = Mode::parse(&record.mode).map_err(link_error)?;
                Ok(Link::resume(cfg, mode, self.root_clone()?))
            })();
            match started {
                Ok(link) => {
                    self.inner.links.map.lock().insert(record.database.clone(), Arc::new(link));
                }
                Err(e) => tracing::warn!(database = %record.database, error = %e, "link not resumed"),
            }
        }
    }

    /// Shutdown: link threads stop after their current batch.
    pub(crate) fn stop_links(&self) {
        let links: Vec<Arc<Link>> = self.inner.links.map.lock().values().cloned().collect();
        for l in links {
            l.stop();
        }
    }

    /// Refuses a statement that would change a linked database (for everyone,
    /// superusers too: the next change from the source would overwrite it).
    pub(crate) fn check_linked_write(&self, text: &str, current_db: &str) -> Result<()> {
        if !self.inner.links.any() {
            return Ok(());
        }
        let is_db = |n: &str| self.database_exists(n);
        for db in crate::sandbox::written_databases(text, current_db, &is_db) {
            if self.inner.links.is_linked(&db) {
                return Err(Error::PermissionDenied(format!(
                    "database {db} is linked to PostgreSQL and read-only (its tables follow the source); UNLINK DATABASE {db} to write to it"
                )));
            }
        }
        Ok(())
    }

    /// Link figures into the Prometheus registry (called before each scrape).
    pub fn refresh_link_metrics(&self) {
        for row in self.link_rows() {
            let s = &row.status;
            let mut counted = self.inner.links.counted.lock();
            let before = counted.entry(row.database.clone()).or_insert(0);
            let delta = s.applied_changes.saturating_sub(*before);
            *before = (*before).max(s.applied_changes);
            self.metrics().link(&row.database, s.lag_bytes, s.lag_seconds, delta, s.state == pond_link::State::Error);
        }
    }
}

/// The connection string of a postgres secret (CONNECTION_STRING, or its parts).
pub(crate) fn postgres_connection(s: &pond_secrets::Secret) -> Result<String> {
    if let Some(c) = s.get("CONNECTION_STRING") {
        return Ok(c.to_string());
    }
    let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = Vec::new();
    for (opt, key) in
        [("HOST", "host"), ("PORT", "port"), ("USER", "user"), ("PASSWORD", "password"), ("DATABASE", "dbname"), ("SSLMODE", "sslmode")]
    {
        if let Some(v) = s.get(opt) {
            parts.push(format!("{key}={}", q(v)));
        }
    }
    if parts.is_empty() {
        return Err(Error::InvalidRequest(format!("secret {} holds no PostgreSQL connection", s.name)));
    }
    Ok(parts.join(" "))
}
