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
//! across truncations: the last one applied to each database is stored in
//! that database (see `writer.rs`), so replay skips what is already there.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
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

/// The open log file.
pub struct Wal {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Wal {
    /// Opens (creating) `<dir>/ingest.wal` and returns it with the records it holds.
    pub fn open(dir: &Path) -> Result<(Self, Vec<Record>)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("ingest.wal");
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(|e| Error::io(&path, e))?;
        let records = decode_all(&data);
        let len = data.len() as u64;
        file.seek(SeekFrom::End(0)).map_err(|e| Error::io(&path, e))?;
        Ok((Self { path, file, len }, records))
    }

    /// Appends encoded records (not yet synced).
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).map_err(|e| Error::io(&self.path, e))?;
        self.len += bytes.len() as u64;
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

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the log; call only when every record in it is committed to DuckDB.
    pub fn truncate(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(|e| Error::io(&self.path, e))?;
        self.file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        self.len = 0;
        Ok(())
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
        wal.append(&buf).unwrap();
        // A torn third record.
        let mut third = Vec::new();
        rec(3).encode_into(&mut third);
        wal.append(&third[..third.len() - 3]).unwrap();
        wal.sync(SyncMode::Fdatasync).unwrap();
        drop(wal);
        let (wal, recs) = Wal::open(dir.path()).unwrap();
        assert_eq!(recs, vec![rec(1), rec(2)]);
        drop(wal);
        // A flipped bit stops reading at that record.
        let path = dir.path().join("ingest.wal");
        let mut data = std::fs::read(&path).unwrap();
        let second = buf.len() / 2 + 10;
        data[second] ^= 0xff;
        assert_eq!(decode_all(&data), vec![rec(1)]);
    }

    #[test]
    fn truncate_empties_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        let mut buf = Vec::new();
        rec(1).encode_into(&mut buf);
        wal.append(&buf).unwrap();
        wal.truncate().unwrap();
        assert!(wal.is_empty());
        drop(wal);
        let (_, recs) = Wal::open(dir.path()).unwrap();
        assert!(recs.is_empty());
    }
}
