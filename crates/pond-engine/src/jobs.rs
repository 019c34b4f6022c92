//! The engine as the host of `pond-jobs` (continuous queries, import and
//! export jobs): internal connections, the check of a job's statement
//! against its owner's current grants (the same sandbox as every session),
//! the database an INSERT writes, the query cache's note that rows changed,
//! sources resolved from Pond secrets (the one place their values are read),
//! and line-protocol writes through the ingest path (`LineWriter`, which
//! `pond-ingest` implements and the server registers at start).

use std::sync::{Arc, Weak};

use pond_auth::Identity;

use crate::engine::Inner;
use crate::error::{Error, Result};
use crate::Engine;

/// How a line-protocol write for a job went wrong.
pub enum LineWriteError {
    /// The ingest queue is full: retry shortly.
    Busy,
    Failed(String),
}

/// Writes line protocol as a user through the time-series ingest path
/// (implemented by `pond-ingest`; registered with [`Engine::set_line_writer`]).
pub trait LineWriter: Send + Sync {
    /// Nanosecond times; all lines or none. `Ok`: refused lines (1-based number, reason).
    fn write_lines(&self, identity: &Identity, database: &str, lines: Vec<u8>) -> Result<Vec<(usize, String)>, LineWriteError>;
}

struct JobHost {
    inner: Weak<Inner>,
}

impl JobHost {
    fn engine(&self) -> Result<Engine, pond_jobs::Error> {
        self.inner.upgrade().map(|inner| Engine { inner }).ok_or_else(|| pond_jobs::Error::Host("server is shutting down".into()))
    }
}

fn job_error(e: Error) -> pond_jobs::Error {
    match e {
        Error::PermissionDenied(m) => pond_jobs::Error::PermissionDenied(m),
        other => pond_jobs::Error::Host(other.to_string()),
    }
}

impl pond_jobs::Host for JobHost {
    fn connection(&self) -> Result<duckdb::Connection, String> {
        self.engine().map_err(|e| e.to_string())?.internal_connection().map_err(|e| e.to_string())
    }

    fn authorize(&self, user: &str, database: &str, schema: &str, sql: &str) -> Result<(), pond_jobs::Error> {
        let engine = self.engine()?;
        let identity = engine.inner.auth.revalidate(&Identity::password_user(user, false)).map_err(|e| job_error(e.into()))?;
        engine.check_linked_write(sql, database).map_err(job_error)?;
        if identity.effective_superuser() {
            return Ok(());
        }
        // The owner's statement, checked as in any of their sessions (not registered, closed on drop).
        let session = engine.open_session(identity, "jobs", Some(database), false).map_err(job_error)?;
        session.use_database_blocking(database, Some(schema)).map_err(job_error)?;
        session.check_only(sql).map_err(job_error)
    }

    fn target_database(&self, sql: &str, database: &str) -> Result<String, pond_jobs::Error> {
        let engine = self.engine()?;
        let written = crate::sandbox::written_databases(sql, database, &|n| engine.database_exists(n));
        let [db] = written.as_slice() else {
            return Err(pond_jobs::Error::Invalid("the INSERT of a continuous query writes one table of a Pond database".into()));
        };
        let db = engine.resolve_database(db).map_err(job_error)?;
        engine.check_linked_write(sql, database).map_err(job_error)?;
        Ok(db)
    }

    fn data_changed(&self, database: &str) {
        if let Ok(engine) = self.engine() {
            engine.data_changed(database);
        }
    }

    fn databases(&self) -> Vec<String> {
        self.engine().map(|e| e.databases().into_iter().map(|d| d.name).collect()).unwrap_or_default()
    }

    fn alive(&self) -> bool {
        self.engine().is_ok_and(|e| !e.is_closed())
    }

    fn is_superuser(&self, user: &str) -> Result<bool, pond_jobs::Error> {
        let engine = self.engine()?;
        let identity = engine.inner.auth.revalidate(&Identity::password_user(user, false)).map_err(|e| job_error(e.into()))?;
        Ok(identity.effective_superuser())
    }

    fn postgres_source(&self, secret: &str) -> Result<pond_jobs::PostgresSource, pond_jobs::Error> {
        let engine = self.engine()?;
        let s = engine.secret(secret).map_err(job_error)?;
        if s.secret_type != "postgres" {
            return Err(pond_jobs::Error::Invalid(format!("secret {secret} is of TYPE {}, not postgres", s.secret_type)));
        }
        let text = crate::links::postgres_connection(&s).map_err(job_error)?;
        let source = pond_link::Source::parse(&text).map_err(|e| pond_jobs::Error::Invalid(format!("secret {secret}: {e}")))?;
        let libpq = source.libpq();
        let ext = engine.config().extension_dir();
        let redact: pond_jobs::Redact = {
            let source = source.clone();
            Arc::new(move |t: &str| pond_secrets::redact(&source.scrub(t), &[&s]))
        };
        Ok(pond_jobs::PostgresSource {
            libpq,
            shown: source.to_string(),
            scanner: crate::extensions::extension_path(&ext, "postgres_scanner"),
            redact,
        })
    }

    fn http_credentials(&self, secret: &str) -> Result<pond_jobs::HttpCredentials, pond_jobs::Error> {
        let engine = self.engine()?;
        let s = engine.secret(secret).map_err(job_error)?;
        if s.secret_type != "http" {
            return Err(pond_jobs::Error::Invalid(format!("secret {secret} is of TYPE {}, not http", s.secret_type)));
        }
        Ok(pond_jobs::HttpCredentials {
            user: s.get("USER").map(str::to_string),
            password: s.get("PASSWORD").map(str::to_string),
            bearer: s.get("BEARER_TOKEN").map(str::to_string),
        })
    }

    fn write_lines(&self, user: &str, database: &str, lines: Vec<u8>) -> Result<Vec<(usize, String)>, pond_jobs::WriteError> {
        let engine = self.engine().map_err(pond_jobs::WriteError::Failed)?;
        let writer = engine.inner.line_writer.read().clone().ok_or_else(|| {
            pond_jobs::WriteError::Failed(pond_jobs::Error::Host("time-series ingest is not running in this server".into()))
        })?;
        let identity = engine
            .inner
            .auth
            .revalidate(&Identity::password_user(user, false))
            .map_err(|e| pond_jobs::WriteError::Failed(job_error(e.into())))?;
        writer.write_lines(&identity, database, lines).map_err(|e| match e {
            LineWriteError::Busy => pond_jobs::WriteError::Busy,
            LineWriteError::Failed(m) => pond_jobs::WriteError::Failed(pond_jobs::Error::Host(m)),
        })
    }

    fn system_catalog(&self) -> String {
        crate::engine::AUDIT_CATALOG.to_string()
    }
}

impl Engine {
    /// Loads the continuous queries and starts their scheduler (a failure is
    /// logged: the server still starts, and SHOW CONTINUOUS QUERIES says so).
    /// Call it once the ingest log has been replayed: a run before that would
    /// see no rows for windows whose rows are still in the log, and move its
    /// watermark past them for good.
    pub fn start_jobs(&self) {
        let host: Arc<dyn pond_jobs::Host> = Arc::new(JobHost { inner: Arc::downgrade(&self.inner) });
        match pond_jobs::Jobs::start(host) {
            Ok(j) => {
                let _ = self.inner.jobs.set(j);
            }
            Err(e) => tracing::error!(error = %e, "cannot start continuous queries"),
        }
    }

    /// Registers the ingest path import jobs write measurements through (once, at start).
    pub fn set_line_writer(&self, writer: Arc<dyn LineWriter>) {
        *self.inner.line_writer.write() = Some(writer);
    }

    pub(crate) fn clear_line_writer(&self) {
        self.inner.line_writer.write().take();
    }

    fn jobs(&self) -> Result<&Arc<pond_jobs::Jobs>> {
        self.inner.jobs.get().ok_or_else(|| Error::Unavailable("background jobs did not start (see the server log)".into()))
    }

    /// Runs of import and export jobs `identity` may see (`GET /api/v1/jobs`),
    /// and the export jobs.
    pub fn job_list(&self, identity: &Identity) -> Result<serde_json::Value> {
        let jobs = self.jobs()?;
        let caller = job_caller(identity, "", "");
        Ok(serde_json::json!({ "jobs": jobs.list(&caller), "export_jobs": jobs.exports(&caller) }))
    }

    /// One run (`GET /api/v1/jobs/{id}`).
    pub fn job_get(&self, identity: &Identity, id: u64) -> Result<serde_json::Value> {
        let run = self.jobs()?.get(&job_caller(identity, "", ""), id).map_err(engine_error)?;
        serde_json::to_value(run).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Cancels a run (`DELETE /api/v1/jobs/{id}`); `false`: it had already ended.
    pub fn job_cancel(&self, identity: &Identity, id: u64) -> Result<bool> {
        self.jobs()?.cancel(&job_caller(identity, "", ""), id).map_err(engine_error)
    }

    /// Starts an import or runs a job statement (`POST /api/v1/jobs`), with
    /// `database` (and its `main` schema) current.
    pub fn job_submit(&self, identity: &Identity, database: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        let identity = self.inner.auth.revalidate(identity)?;
        let db = self.resolve_database(database)?;
        if !identity.effective_superuser() && !self.inner.auth.policy().allows(&identity, &db, None, pond_auth::Privilege::Usage) {
            return Err(Error::PermissionDenied(format!("permission denied for database {db}")));
        }
        self.jobs()?.submit(&job_caller(&identity, &db, "main"), body).map_err(engine_error)
    }

    /// `CREATE/DROP CONTINUOUS QUERY`, `SHOW CONTINUOUS QUERIES`.
    pub(crate) fn job_statement(&self, text: &str, identity: &Identity, database: &str, schema: &str) -> Result<arrow_array::RecordBatch> {
        let jobs = self.jobs()?;
        jobs.execute(text, &job_caller(identity, database, schema)).map_err(engine_error)
    }
}

fn job_caller(identity: &Identity, database: &str, schema: &str) -> pond_jobs::Caller {
    pond_jobs::Caller {
        user: identity.user.clone(),
        superuser: identity.effective_superuser(),
        database: database.to_string(),
        schema: schema.to_string(),
    }
}

fn engine_error(e: pond_jobs::Error) -> Error {
    match e {
        pond_jobs::Error::PermissionDenied(m) => Error::PermissionDenied(m),
        pond_jobs::Error::NotFound(_) | pond_jobs::Error::Missing(_) => Error::NotFound(e.to_string()),
        other => Error::InvalidRequest(other.to_string()),
    }
}
