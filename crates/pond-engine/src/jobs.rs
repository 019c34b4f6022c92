//! The engine as the host of `pond-jobs` (continuous queries): internal
//! connections, the check of a job's statement against its owner's current
//! grants (the same sandbox as every session), the database an INSERT
//! writes, and the query cache's note that rows changed.

use std::sync::{Arc, Weak};

use pond_auth::Identity;

use crate::engine::Inner;
use crate::error::{Error, Result};
use crate::Engine;

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

    /// `CREATE/DROP CONTINUOUS QUERY`, `SHOW CONTINUOUS QUERIES`.
    pub(crate) fn job_statement(&self, text: &str, identity: &Identity, database: &str, schema: &str) -> Result<arrow_array::RecordBatch> {
        let jobs =
            self.inner.jobs.get().ok_or_else(|| Error::Unavailable("continuous queries did not start (see the server log)".into()))?;
        let caller = pond_jobs::Caller {
            user: identity.user.clone(),
            superuser: identity.effective_superuser(),
            database: database.to_string(),
            schema: schema.to_string(),
        };
        jobs.execute(text, &caller).map_err(|e| match e {
            pond_jobs::Error::PermissionDenied(m) => Error::PermissionDenied(m),
            pond_jobs::Error::NotFound(_) => Error::NotFound(e.to_string()),
            other => Error::InvalidRequest(other.to_string()),
        })
    }
}
