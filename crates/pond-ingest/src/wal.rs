//! The write-ahead log: one append-only file of checksummed records, each one
//! accepted request (database id, precision, default time and its good lines).
//!
//! Record: `len: u32 LE | crc32(payload): u32 LE | payload`, payload =
//! `seq: u64 | kind: u8 | default_time: i64 | db_len: u16 | db | body`.
//! `kind` is the line-protocol precision code, with bit 7 set when the body
//! is a MessagePack body (logged as received, decoded again on replay);
//! records written before MessagePack existed read as line protocol.
//! Reading stops at the first short or corrupt record (a torn write at a
//! crash); everything before it is intact. Sequence numbers only grow, also
//! across segments: the lake records the highest one it holds per database
//! (see `lake.rs`), so replay skips what is already there.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use pond_lineproto::Precision;

use crate::{Error, Result};

/// How the log reaches the disk before a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `fsync` (data and metadata).
    Fsync,
    /// `fdatasync` (data; the default).
    #[default]
    Fdatasync,
    /// No sync: the OS writes the log back when it likes (a power loss may lose
    /// acknowledged writes; a process crash does not).
    Async,
}

impl SyncMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fsync" => Some(SyncMode::Fsync),
            "fdatasync" => Some(SyncMode::Fdatasync),
            "async" | "none" => Some(SyncMode::Async),
            _ => None,
        }
    }
}

/// What a logged body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// InfluxDB line protocol: the accepted lines.
    #[default]
    LineProtocol,
    /// An Arc MessagePack body, whole (see `msgpack.rs`).
    MessagePack,
}

const MSGPACK_FLAG: u8 = 0x80;

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub format: Format,
    pub precision: Precision,
    pub default_time: i64,
    /// The database's stable id (its file id), not its name.
    pub database: String,
    pub lines: Vec<u8>,
}

/// Appends one encoded record to `out`.
pub fn encode(seq: u64, precision: Precision, default_time: i64, database: &str, lines: &[u8], out: &mut Vec<u8>) {
    encode_as(seq, Format::LineProtocol, precision, default_time, database, lines, out)
}

/// Appends one encoded record of the given format to `out`.
pub fn encode_as(seq: u64, format: Format, precision: Precision, default_time: i64, database: &str, body: &[u8], out: &mut Vec<u8>) {
    let lines = body;
    let payload_len = 8 + 1 + 8 + 2 + database.len() + lines.len();
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(precision.code() | if format == Format::MessagePack { MSGPACK_FLAG } else { 0 });
    out.extend_from_slice(&default_time.to_le_bytes());
    out.extend_from_slice(&(database.len() as u16).to_le_bytes());
    out.extend_from_slice(database.as_bytes());
    out.extend_from_slice(lines);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

impl Record {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_as(self.seq, self.format, self.precision, self.default_time, &self.database, &self.lines, out);
    }

    fn decode(payload: &[u8]) -> Option<Record> {
        let seq = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
        let kind = *payload.get(8)?;
        let format = if kind & MSGPACK_FLAG != 0 { Format::MessagePack } else { Format::LineProtocol };
        let precision = Precision::from_code(kind & !MSGPACK_FLAG)?;
        let default_time = i64::from_le_bytes(payload.get(9..17)?.try_into().ok()?);
        let db_len = u16::from_le_bytes(payload.get(17..19)?.try_into().ok()?) as usize;
        let database = std::str::from_utf8(payload.get(19..19 + db_len)?).ok()?.to_string();
        let lines = payload.get(19 + db_len..)?.to_vec();
        Some(Record { seq, format, precision, default_time, database, lines })
    }
}

/// Decodes every intact record at the start of `data`.
pub fn decode_all(data: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let Some(payload) = data.get(pos + 8..pos + 8 + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(r) = Record::decode(payload) else { break };
        out.push(r);
        pos += 8 + len;
    }
    out
}

/// Rewrites the log in `dir` (not in use by a server: `pond restore`) as
/// one segment holding only the records `keep` accepts, in order; the old
/// segments are deleted once it is durable. Returns (kept, dropped).
pub fn keep_only(dir: &Path, keep: impl Fn(&Record) -> bool) -> Result<(usize, usize)> {
    let (log, records) = Wal::open(dir)?;
    let old: Vec<PathBuf> = log.closed.iter().map(|(p, _, _)| p.clone()).collect();
    let mut bytes = Vec::new();
    let (mut kept, mut dropped) = (0, 0);
    for r in &records {
        if keep(r) {
            r.encode_into(&mut bytes);
            kept += 1;
        } else {
            dropped += 1;
        }
    }
    let mut log = log;
    let last = records.iter().map(|r| r.seq).max().unwrap_or(0);
    log.append(&bytes, last)?;
    log.sync(SyncMode::Fsync)?;
    for p in old {
        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((kept, dropped))
}

/// The open log file.
/// The log: segment files `wal-<n>.log` (and `ingest.wal` from before
/// segments existed). A segment is closed once it is bigger than the
/// configured size, and deleted once the lake holds every record in it.
pub struct Wal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
    /// Number of the current segment.
    number: u64,
    /// Highest sequence in the current segment.
    max_seq: u64,
    /// Closed segments: path, bytes, highest sequence.
    closed: Vec<(PathBuf, u64, u64)>,
    /// `LOCK` in the directory, held while the log is open: two processes
    /// appending to one log (a log on shared storage given to two nodes)
    /// would interleave and lose records.
    _lock: File,
}

const LOCK: &str = "LOCK";

const LEGACY: &str = "ingest.wal";

fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?.strip_suffix(".log")?.parse().ok()
}

impl Wal {
    /// Opens the log directory and reads every intact record of every
    /// segment, oldest first. Writing goes to a new segment.
    pub fn open(dir: &Path) -> Result<(Self, Vec<Record>)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(LOCK);
        let lock =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::InvalidRequest(format!(
                    "the ingest log {} is in use by another Pond process (each node needs its own --ingest-wal-dir)",
                    dir.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let mut segments: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) = segment_number(&name) {
                segments.push((n, entry.path()));
            }
        }
        segments.sort();
        let legacy = dir.join(LEGACY);
        let mut files: Vec<PathBuf> = Vec::new();
        if legacy.exists() {
            files.push(legacy);
        }
        files.extend(segments.iter().map(|(_, p)| p.clone()));
        let mut records = Vec::new();
        let mut closed = Vec::new();
        for path in files {
            let data = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let recs = decode_all(&data);
            let max = recs.iter().map(|r| r.seq).max().unwrap_or(0);
            records.extend(recs);
            closed.push((path, data.len() as u64, max));
        }
        let number = segments.last().map(|(n, _)| n + 1).unwrap_or(1);
        let (path, file) = Self::create_segment(dir, number)?;
        Ok((Self { dir: dir.to_path_buf(), path, file, len: 0, number, max_seq: 0, closed, _lock: lock }, records))
    }

    fn create_segment(dir: &Path, number: u64) -> Result<(PathBuf, File)> {
        let path = dir.join(format!("wal-{number:020}.log"));
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&path).map_err(|e| Error::io(&path, e))?;
        // The new name must survive a crash as well as the records written into it.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok((path, file))
    }

    /// Appends encoded records whose highest sequence is `last_seq`.
    pub fn append(&mut self, bytes: &[u8], last_seq: u64) -> Result<()> {
        self.file.write_all(bytes).map_err(|e| Error::io(&self.path, e))?;
        self.len += bytes.len() as u64;
        self.max_seq = self.max_seq.max(last_seq);
        Ok(())
    }

    pub fn sync(&self, mode: SyncMode) -> Result<()> {
        let r = match mode {
            SyncMode::Fsync => self.file.sync_all(),
            SyncMode::Fdatasync => self.file.sync_data(),
            SyncMode::Async => Ok(()),
        };
        r.map_err(|e| Error::io(&self.path, e))
    }

    /// Bytes in the current segment.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.closed.is_empty()
    }

    /// Bytes in closed segments (waiting for the lake).
    pub fn closed_bytes(&self) -> u64 {
        self.closed.iter().map(|(_, n, _)| n).sum()
    }

    /// Closes the current segment (after its last group was synced) and starts a new one.
    pub fn rotate(&mut self) -> Result<()> {
        let (path, file) = Self::create_segment(&self.dir, self.number + 1)?;
        let old = std::mem::replace(&mut self.path, path);
        self.file = file;
        self.number += 1;
        self.closed.push((old, self.len, self.max_seq));
        self.len = 0;
        self.max_seq = 0;
        Ok(())
    }

    /// Deletes closed segments whose every record is at or below `upto`.
    pub fn release(&mut self, upto: u64) -> Result<()> {
        let mut keep = Vec::new();
        for (path, len, max) in std::mem::take(&mut self.closed) {
            if max <= upto {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            } else {
                keep.push((path, len, max));
            }
        }
        self.closed = keep;
        Ok(())
    }

    /// Deletes every segment, current one included (everything is in the lake).
    pub fn truncate(&mut self) -> Result<()> {
        self.rotate()?;
        self.release(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(seq: u64) -> Record {
        let format = if seq.is_multiple_of(2) { Format::MessagePack } else { Format::LineProtocol };
        Record { seq, format, precision: Precision::Millisecond, default_time: -7, database: "db".into(), lines: b"m v=1\n".to_vec() }
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, recs) = Wal::open(dir.path()).unwrap();
        assert!(recs.is_empty());
        let mut buf = Vec::new();
        rec(1).encode_into(&mut buf);
        rec(2).encode_into(&mut buf);
        wal.append(&buf, 2).unwrap();
        // A torn third record.
        let mut third = Vec::new();
        rec(3).encode_into(&mut third);
        wal.append(&third[..third.len() - 3], 3).unwrap();
        wal.sync(SyncMode::Fdatasync).unwrap();
        let first = wal.path.clone();
        drop(wal);
        let (mut wal, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs, vec![rec(1), rec(2)]);
        // Later records go to a new segment and are read after the old one's.
        let mut more = Vec::new();
        rec(4).encode_into(&mut more);
        wal.append(&more, 4).unwrap();
        drop(wal);
        let (_, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs, vec![rec(1), rec(2), rec(4)]);
        // A flipped bit stops reading at that record.
        let mut data = std::fs::read(&first).unwrap();
        let second = buf.len() / 2 + 10;
        data[second] ^= 0xff;
        assert_eq!(decode_all(&data), vec![rec(1)]);
    }

    #[test]
    fn segments_are_released_once_flushed_and_the_legacy_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut legacy = Vec::new();
        rec(1).encode_into(&mut legacy);
        std::fs::write(dir.path().join(LEGACY), &legacy).unwrap();
        let (mut wal, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs, vec![rec(1)]);
        let mut buf = Vec::new();
        rec(2).encode_into(&mut buf);
        wal.append(&buf, 2).unwrap();
        wal.rotate().unwrap();
        buf.clear();
        rec(3).encode_into(&mut buf);
        wal.append(&buf, 3).unwrap();
        assert!(wal.closed_bytes() > 0);
        // Up to 1: only the legacy file goes.
        wal.release(1).unwrap();
        assert!(!dir.path().join(LEGACY).exists());
        drop(wal);
        let (mut wal, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs, vec![rec(2), rec(3)]);
        wal.release(2).unwrap();
        drop(wal);
        let (mut wal, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs, vec![rec(3)]);
        wal.truncate().unwrap();
        assert!(wal.is_empty());
        drop(wal);
        let (_, recs) = Wal::open(dir.path()).unwrap();
        assert!(recs.is_empty());
    }
}
