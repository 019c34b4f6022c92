//! pgoutput (protocol version 1) messages other than Begin and Commit, which
//! the replication client already reports: relations, row changes, truncates.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelColumn {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    /// Part of the replica identity (the primary key, or every column with REPLICA IDENTITY FULL).
    pub key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub schema: String,
    pub name: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub identity: u8,
    pub columns: Vec<RelColumn>,
}

/// One column of a tuple.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Null,
    /// A TOASTed value the update did not change (not sent).
    Unchanged,
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Value>,
    },
    /// `old` is the old key (`K`) or the whole old row (`O`) when the key
    /// changed or the table has REPLICA IDENTITY FULL.
    Update {
        rel: u32,
        old: Option<Vec<Value>>,
        new: Vec<Value>,
    },
    Delete {
        rel: u32,
        old: Vec<Value>,
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// Type, origin and anything else the link does not act on.
    Other,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bad(what: &str) -> Error {
        Error::Internal(format!("malformed pgoutput message: {what}"))
    }

    fn u8(&mut self) -> Result<u8> {
        let (&v, rest) = self.b.split_first().ok_or_else(|| Self::bad("truncated"))?;
        self.b = rest;
        Ok(v)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Self::bad("truncated"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn cstr(&mut self) -> Result<String> {
        let end = self.b.iter().position(|&c| c == 0).ok_or_else(|| Self::bad("unterminated string"))?;
        let s = String::from_utf8_lossy(&self.b[..end]).into_owned();
        self.b = &self.b[end + 1..];
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Vec<Value>> {
        let n = self.u16()? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    let bytes = self.take(len)?;
                    Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| Self::bad("text value is not UTF-8"))?)
                }
                b'b' => return Err(Self::bad("binary tuple values were not requested")),
                other => return Err(Self::bad(&format!("tuple value kind {:?}", other as char))),
            });
        }
        Ok(out)
    }
}

pub fn decode(data: &[u8]) -> Result<Message> {
    let mut r = Reader { b: data };
    let tag = r.u8()?;
    Ok(match tag {
        b'R' => {
            let id = r.u32()?;
            let schema = r.cstr()?;
            let name = r.cstr()?;
            let identity = r.u8()?;
            let n = r.u16()? as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8()?;
                let name = r.cstr()?;
                let type_oid = r.u32()?;
                let typmod = r.u32()? as i32;
                columns.push(RelColumn { name, type_oid, typmod, key: flags & 1 == 1 });
            }
            Message::Relation(Relation { id, schema, name, identity, columns })
        }
        b'I' => {
            let rel = r.u32()?;
            if r.u8()? != b'N' {
                return Err(Reader::bad("insert without a new tuple"));
            }
            Message::Insert { rel, new: r.tuple()? }
        }
        b'U' => {
            let rel = r.u32()?;
            let mut kind = r.u8()?;
            let mut old = None;
            if kind == b'K' || kind == b'O' {
                old = Some(r.tuple()?);
                kind = r.u8()?;
            }
            if kind != b'N' {
                return Err(Reader::bad("update without a new tuple"));
            }
            Message::Update { rel, old, new: r.tuple()? }
        }
        b'D' => {
            let rel = r.u32()?;
            let kind = r.u8()?;
            if kind != b'K' && kind != b'O' {
                return Err(Reader::bad("delete without an old tuple"));
            }
            Message::Delete { rel, old: r.tuple()? }
        }
        b'T' => {
            let n = r.u32()? as usize;
            let _options = r.u8()?;
            let mut rels = Vec::with_capacity(n);
            for _ in 0..n {
                rels.push(r.u32()?);
            }
            Message::Truncate { rels }
        }
        _ => Message::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut b = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.push(b'n'),
                Some("<u>") => b.push(b'u'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as u32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn relation_and_changes() {
        let mut m = vec![b'R'];
        m.extend(7u32.to_be_bytes());
        m.extend(b"public\0items\0");
        m.push(b'd');
        m.extend(2u16.to_be_bytes());
        m.push(1);
        m.extend(b"id\0");
        m.extend(23u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        m.push(0);
        m.extend(b"body\0");
        m.extend(25u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        let Message::Relation(rel) = decode(&m).unwrap() else { panic!() };
        assert_eq!((rel.schema.as_str(), rel.name.as_str(), rel.identity), ("public", "items", b'd'));
        assert!(rel.columns[0].key && !rel.columns[1].key);

        let mut u = vec![b'U'];
        u.extend(7u32.to_be_bytes());
        u.push(b'K');
        u.extend(tuple(&[Some("1"), None]));
        u.push(b'N');
        u.extend(tuple(&[Some("2"), Some("<u>")]));
        assert_eq!(
            decode(&u).unwrap(),
            Message::Update {
                rel: 7,
                old: Some(vec![Value::Text("1".into()), Value::Null]),
                new: vec![Value::Text("2".into()), Value::Unchanged]
            }
        );
        let mut t = vec![b'T'];
        t.extend(2u32.to_be_bytes());
        t.push(0);
        t.extend(7u32.to_be_bytes());
        t.extend(9u32.to_be_bytes());
        assert_eq!(decode(&t).unwrap(), Message::Truncate { rels: vec![7, 9] });
        assert!(decode(&[b'I', 0, 0]).is_err());
    }
}
