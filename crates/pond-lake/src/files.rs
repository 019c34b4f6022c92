//! The flush writer: Parquet files in the lake's layout, registered with
//! DuckLake.
//!
//! A measurement's rows of one flush become one zstd Parquet file per UTC
//! day at `<table dir>/year=Y/month=M/day=D/pond-<gen>-<uuid>.parquet` — the
//! hive layout DuckLake itself writes for `PARTITIONED BY (year(time),
//! month(time), day(time))` — made durable (file and directory synced), then
//! registered in the flush's one DuckLake transaction with
//! `ducklake_add_data_files(…, hive_partitioning => true)`: DuckLake takes
//! the partition values from the path and the column statistics (min/max,
//! nulls) from the file's footer, so a query over one hour reads only that
//! day's files, and it owns the files from then on (compaction, retention,
//! cleanup). A file written but not registered when Pond dies is no file of
//! the lake: [`remove_orphans`] deletes it at the next start, before the
//! log is replayed and the rows written again.
//!
//! Files are encoded by arrow-rs (`parquet`) on up to two worker threads
//! at a lower CPU priority than the request path (see BENCHMARKS.md for the
//! measurement against DuckDB's `COPY`, which `pond-ingest` keeps for data
//! paths on S3).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::{quote_literal, Error, Lake, Result, TIME_COLUMN};

/// The Arrow type Pond stores a DuckDB column type as (hot rows and files).
pub fn arrow_type(ty: &str) -> DataType {
    match ty {
        "DOUBLE" => DataType::Float64,
        "BIGINT" => DataType::Int64,
        "UBIGINT" => DataType::UInt64,
        "BOOLEAN" => DataType::Boolean,
        "INTEGER" => DataType::Int32,
        "TIMESTAMP_NS" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        _ => DataType::Utf8,
    }
}

/// The schema of a measurement's files: its columns (name, DuckDB type), `time` first and never NULL.
pub fn file_schema(columns: &[(String, String)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns.iter().map(|(n, ty)| Field::new(n, arrow_type(ty), !n.eq_ignore_ascii_case(TIME_COLUMN))).collect::<Vec<_>>(),
    ))
}

/// `batch` with exactly the columns of `schema`: by name, cast where the
/// type differs, NULLs for columns the batch predates.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let n = batch.num_rows();
    let own = batch.schema();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        cols.push(match own.index_of(f.name()) {
            Ok(i) if batch.column(i).data_type() == f.data_type() => batch.column(i).clone(),
            Ok(i) => arrow::compute::cast(batch.column(i), f.data_type())?,
            Err(_) => arrow_array::new_null_array(f.data_type(), n),
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// One file to write: where, with which columns, which rows.
pub struct FileJob {
    pub path: PathBuf,
    pub schema: SchemaRef,
    pub slices: Vec<RecordBatch>,
}

/// A written, durable file.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

/// The name of a new file of flush generation `gen` in `day`'s directory of `table_dir`.
pub fn day_file_path(table_dir: &Path, day: i64, gen: u64) -> PathBuf {
    table_dir.join(crate::days::partition_dir(day)).join(format!("pond-{gen:020}-{}.parquet", uuid::Uuid::new_v4().simple()))
}

fn writer_properties(schema: &Schema) -> WriterProperties {
    // zstd level 1; dictionaries only for strings (tags repeat; numbers rarely
    // do and the failed dictionary attempt costs a copy per page).
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_dictionary_enabled(false);
    for f in schema.fields() {
        if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
            b = b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
        }
    }
    b.build()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

/// Syncs a directory (a new entry in it survives a crash).
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Creates `dir` and its missing parents up to an existing one, syncing each
/// parent of a created directory.
fn create_dirs_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for d in missing.iter().rev() {
        if let Some(p) = d.parent() {
            sync_dir(p)?;
        }
    }
    Ok(())
}

/// Encodes one file with arrow-rs and makes it durable.
pub fn write_file(job: &FileJob) -> Result<WrittenFile> {
    let parent = job.path.parent().ok_or_else(|| Error::Invalid(format!("{} has no directory", job.path.display())))?;
    create_dirs_durably(parent)?;
    let file = File::create(&job.path).map_err(io(&job.path))?;
    let perr = |e: parquet::errors::ParquetError| Error::Parquet { path: job.path.display().to_string(), message: e.to_string() };
    let mut w = ArrowWriter::try_new(file, job.schema.clone(), Some(writer_properties(&job.schema))).map_err(perr)?;
    let mut rows = 0u64;
    for s in &job.slices {
        let b = conform(s, &job.schema)?;
        rows += b.num_rows() as u64;
        w.write(&b).map_err(perr)?;
    }
    let file = w.into_inner().map_err(perr)?;
    file.sync_all().map_err(io(&job.path))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    sync_dir(parent)?;
    Ok(WrittenFile { path: job.path.clone(), rows, bytes })
}

/// Lowers the calling thread's CPU priority (Linux: per-thread nice), so the
/// request path wins the cores whenever it has work.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// Writes every job, on up to `workers` threads (each at a lower priority
/// than the request path). On error, files already written are left for
/// [`remove_orphans`] (they are not registered).
pub fn write_files(jobs: Vec<FileJob>, workers: usize) -> Result<Vec<WrittenFile>> {
    if jobs.len() <= 1 || workers <= 1 {
        return jobs.iter().map(write_file).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let jobs = &jobs;
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.min(jobs.len()))
            .map(|_| {
                s.spawn(|| {
                    lower_priority();
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        out.push((i, write_file(job)));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect::<Vec<_>>()
    });
    let mut written: Vec<Option<WrittenFile>> = vec![None; jobs.len()];
    for (i, r) in results {
        written[i] = Some(r?);
    }
    written.into_iter().map(|w| w.ok_or_else(|| Error::Invalid("a Parquet writer thread panicked".into()))).collect()
}

/// The directory DuckLake keeps a table's files in (`<data path><schema
/// path><table path>`, from DuckLake's metadata).
pub fn table_dir(conn: &duckdb::Connection, lake: &Lake, data_path: &str, table: &str) -> Result<String> {
    let meta = lake.metadata_catalog();
    let found: Option<(String, bool, String, bool)> = conn
        .query_row(
            &format!(
                "SELECT s.path, s.path_is_relative, t.path, t.path_is_relative FROM {meta}.ducklake_table t \
                 JOIN {meta}.ducklake_schema s ON s.schema_id = t.schema_id \
                 WHERE s.schema_name = ? AND t.table_name = ? AND s.end_snapshot IS NULL AND t.end_snapshot IS NULL"
            ),
            duckdb::params![lake.schema, table],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map(Some)
        .or_else(|e| if matches!(e, duckdb::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })?;
    let Some((spath, srel, tpath, trel)) = found else {
        return Err(Error::Invalid(format!("lake table {}.{table} does not exist", lake.schema)));
    };
    let schema_dir = if srel { format!("{}{spath}", with_slash(data_path)) } else { spath };
    Ok(if trel { format!("{}{tpath}", with_slash(&schema_dir)) } else { tpath })
}

fn with_slash(p: &str) -> String {
    if p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

/// Registers written files with a lake table (inside the caller's
/// transaction): partition values from the hive path, statistics from the
/// footers. Columns the table gained after a file was planned read as NULL.
pub fn register(conn: &duckdb::Connection, lake: &Lake, table: &str, paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let list = paths.iter().map(|p| quote_literal(p)).collect::<Vec<_>>().join(", ");
    conn.execute_batch(&format!(
        "CALL ducklake_add_data_files({}, {}, [{list}], schema => {}, hive_partitioning => true, allow_missing => true)",
        quote_literal(&lake.catalog),
        quote_literal(table),
        quote_literal(&lake.schema)
    ))?;
    Ok(())
}

/// Deletes every file under the lake's data path that no snapshot refers to
/// (a flush's files written before a crash stopped their registration).
/// With `older_than_secs` `None` every such file goes: only at start, while
/// nothing else writes to the lake. Nodes sharing the lake pass an age:
/// another node's files are unregistered for the moment between their write
/// and its commit, so only files older than that are orphans. Returns their paths.
pub fn remove_orphans(conn: &duckdb::Connection, catalog: &str, older_than_secs: Option<u64>) -> Result<Vec<String>> {
    let which = match older_than_secs {
        None => "cleanup_all => true".to_string(),
        Some(s) => format!("older_than => now() - to_seconds({s})"),
    };
    let mut stmt = conn.prepare(&format!("CALL ducklake_delete_orphaned_files({}, {which})", quote_literal(catalog)))?;
    let paths = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow_array::{Float64Array, StringArray, TimestampNanosecondArray};

    #[test]
    fn files_hold_conformed_rows_with_nulls_for_missing_columns() {
        let dir = tempfile::tempdir().unwrap();
        let schema =
            file_schema(&[("time".into(), "TIMESTAMP_NS".into()), ("host".into(), "VARCHAR".into()), ("v".into(), "DOUBLE".into())]);
        let old = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
                Field::new("host", DataType::Utf8, true),
            ])),
            vec![Arc::new(TimestampNanosecondArray::from(vec![1, 2])), Arc::new(StringArray::from(vec!["a", "b"]))],
        )
        .unwrap();
        let new = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![3])),
                Arc::new(StringArray::from(vec!["c"])),
                Arc::new(Float64Array::from(vec![1.5])),
            ],
        )
        .unwrap();
        let path = day_file_path(&dir.path().join("t"), 0, 7);
        let w = write_files(vec![FileJob { path: path.clone(), schema: schema.clone(), slices: vec![old, new] }], 2).unwrap();
        assert_eq!(w[0].rows, 3);
        assert!(path.to_string_lossy().contains("/t/year=1970/month=1/day=1/pond-00000000000000000007-"));
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let (n, nulls, t): (i64, i64, String) = conn
            .query_row(
                &format!("SELECT count(*), count(*) - count(v), typeof(any_value(time)) FROM read_parquet('{}')", path.display()),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((n, nulls, t.as_str()), (3, 2, "TIMESTAMP_NS"));
    }
}
