//! Export jobs: a named `COPY (query) TO 'file' (FORMAT …)` run on a
//! schedule, or on demand, by a superuser's job.
//!
//! ```sql
//! CREATE EXPORT JOB hourly_cpu EVERY INTERVAL '1 hour'
//!     AS COPY (SELECT * FROM cpu WHERE time >= now() - INTERVAL 1 HOUR)
//!        TO 's3://bucket/cpu/{run_time}.parquet' (FORMAT parquet);
//! RUN EXPORT JOB hourly_cpu;          -- once, now
//! SHOW EXPORT JOBS;
//! DROP EXPORT JOB hourly_cpu;
//! ```
//!
//! `{run_time}` in the statement becomes the run's time (`20240101T130000Z`:
//! the schedule's boundary, or the moment of a RUN), `{job}` the job's name
//! and `{run_id}` the run's id. Runs of EVERY jobs start on the boundaries of
//! the interval's grid (aligned like `time_bucket`); a boundary passed while
//! the server was down is run once at start, and one that comes while the
//! previous run is still going is skipped. Definitions live in the hidden
//! table `pond_system._pond_jobs.exports`, so they survive restarts (and are
//! in backups with the audit log). Each run checks that its owner is still a
//! superuser; files go where DuckDB may write (`--allowed-paths`, or S3 with
//! a Pond secret of TYPE s3).

use crate::cq::{self, Cursor};
use crate::{Error, Result};

/// A parsed export statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Create { name: String, if_not_exists: bool, every: Option<String>, copy: String },
    Drop { name: String, if_exists: bool },
    Run { name: String },
    Show,
}

/// Whether the words start an export statement.
pub fn is_statement(words: &[&str]) -> bool {
    matches!(
        words,
        ["create", "export", "job", ..] | ["drop", "export", "job", ..] | ["run", "export", "job", ..] | ["show", "export", "jobs", ..]
    )
}

pub fn parse(text: &str) -> Result<Statement> {
    let usage = "CREATE EXPORT JOB [IF NOT EXISTS] name [EVERY INTERVAL '1 hour'] AS COPY (SELECT …) TO '…' (FORMAT parquet)";
    let mut c = Cursor { s: text, i: 0 };
    if c.word("show") {
        c.expect("export", "EXPORT")?;
        c.expect("jobs", "JOBS")?;
        if !c.rest().is_empty() {
            return Err(Error::Syntax("nothing may follow SHOW EXPORT JOBS".into()));
        }
        return Ok(Statement::Show);
    }
    if c.word("drop") || c.word("run") {
        let drop = text.trim_start().to_ascii_lowercase().starts_with("drop");
        c.expect("export", "EXPORT")?;
        c.expect("job", "JOB")?;
        let if_exists = drop && c.word("if") && {
            c.expect("exists", "EXISTS after IF")?;
            true
        };
        let name = c.ident().ok_or_else(|| Error::Syntax("expected the export job's name".into()))?;
        if !c.rest().is_empty() {
            return Err(Error::Syntax(format!("nothing may follow the name {name}")));
        }
        return Ok(if drop { Statement::Drop { name, if_exists } } else { Statement::Run { name } });
    }
    c.expect("create", "CREATE")?;
    c.expect("export", "EXPORT")?;
    c.expect("job", "JOB")?;
    let if_not_exists = c.word("if") && {
        c.expect("not", "NOT after IF")?;
        c.expect("exists", "EXISTS after IF NOT")?;
        true
    };
    let name = c.ident().ok_or_else(|| Error::Syntax(format!("expected a name: {usage}")))?;
    if name.is_empty() || name.len() > 128 {
        return Err(Error::Invalid("an export job's name has 1 to 128 characters".into()));
    }
    let every = if c.word("every") { Some(c.interval("EVERY")?) } else { None };
    c.expect("as", &format!("AS before the COPY: {usage}"))?;
    let copy = c.rest().to_string();
    let first = copy.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
    if first != "copy" || copy_target(&copy).is_none() {
        return Err(Error::Invalid(format!("the body of an export job is COPY (query) TO 'file' (options): {usage}")));
    }
    Ok(Statement::Create { name, if_not_exists, every, copy })
}

/// The file a COPY writes: the string after its top-level `TO`.
pub fn copy_target(copy: &str) -> Option<String> {
    let b = copy.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() && !(b[i] == q && b.get(i + 1) != Some(&q)) {
                    i += if b[i] == q { 2 } else { 1 };
                }
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b't' | b'T'
                if depth == 0
                    && i > 0
                    && !b[i - 1].is_ascii_alphanumeric()
                    && b[i - 1] != b'_'
                    && b.get(i + 1).is_some_and(|c| c.eq_ignore_ascii_case(&b'o'))
                    && b.get(i + 2).is_some_and(|c| !c.is_ascii_alphanumeric() && *c != b'_') =>
            {
                let mut c = Cursor { s: copy, i: i + 2 };
                return c.string();
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The statement of one run: placeholders replaced.
pub fn expand(copy: &str, name: &str, run_time_us: i64, run_id: u64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(run_time_us).map(|t| t.format("%Y%m%dT%H%M%SZ").to_string()).unwrap_or_default();
    copy.replace("{run_time}", &t).replace("{job}", name).replace("{run_id}", &run_id.to_string())
}

/// The last boundary of the EVERY grid at or before `now_us`.
pub fn due(now_us: i64, every_us: i64) -> i64 {
    cq::window_end(now_us, every_us, 0)
}

/// Bytes of what a run wrote, when it is a local file or directory.
pub fn local_bytes(target: &str) -> u64 {
    if target.contains("://") {
        return 0;
    }
    let p = std::path::Path::new(target);
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
            .unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_statements_parse() {
        let s = parse("CREATE EXPORT JOB IF NOT EXISTS e EVERY INTERVAL '1 hour' AS COPY (SELECT 'to' AS x) TO '/tmp/{run_time}.parquet' (FORMAT parquet);")
            .expect("create");
        assert_eq!(
            s,
            Statement::Create {
                name: "e".into(),
                if_not_exists: true,
                every: Some("1 hour".into()),
                copy: "COPY (SELECT 'to' AS x) TO '/tmp/{run_time}.parquet' (FORMAT parquet)".into()
            }
        );
        let Statement::Create { copy, .. } = s else { unreachable!() };
        assert_eq!(copy_target(&copy).as_deref(), Some("/tmp/{run_time}.parquet"));
        assert_eq!(
            expand(&copy, "e", 1_704_114_000_000_000, 7),
            "COPY (SELECT 'to' AS x) TO '/tmp/20240101T130000Z.parquet' (FORMAT parquet)"
        );
        assert_eq!(parse("run export job e").expect("run"), Statement::Run { name: "e".into() });
        assert_eq!(parse("DROP EXPORT JOB IF EXISTS e").expect("drop"), Statement::Drop { name: "e".into(), if_exists: true });
        assert_eq!(parse("show export jobs").expect("show"), Statement::Show);
        assert!(parse("CREATE EXPORT JOB e AS SELECT 1").is_err());
    }
}
