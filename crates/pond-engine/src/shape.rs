//! The shape of a statement: its text with literal values taken out, so that
//! `… WHERE aid = 17` and `… WHERE aid = 9042` share one sandbox verdict.
//!
//! A verdict may be shared only if the two texts differ in nothing that can
//! change what the statement touches. Hence, conservatively:
//! - only plain DML and queries (SELECT, WITH, FROM, VALUES, INSERT, UPDATE,
//!   DELETE) have a shape; SET, PRAGMA, CALL and the rest are keyed by their
//!   exact text;
//! - only two kinds of literal are abstracted: unsigned decimal numbers
//!   standing alone (not part of a name, `t1`, `x.1`, `1e5`, `0x1f`, `1_000`),
//!   and quoted strings right after a comparison operator (`= 'a'`, `<> 'b'`,
//!   `>= '2024-01-01'`), where a string is a value and never a table, file
//!   or function name (the sandbox allows no table function that reads files,
//!   and names a table only after FROM/JOIN);
//! - the text is scanned here, not with a general SQL tokenizer, and any text
//!   where this scanner and DuckDB's could disagree about where a string,
//!   name or comment ends has no shape: backslashes, `$`, comments, backticks,
//!   control characters other than tab and newline, and non-ASCII text.

/// Stands for an abstracted literal (a control character, which no shaped text contains).
const HOLE: char = '\u{1}';

/// The shape of `sql`, or `None` when it must be keyed by its exact text.
pub(crate) fn shape(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    if b.iter().any(|&c| !(c == b'\t' || c == b'\n' || (0x20..0x7f).contains(&c)) || matches!(c, b'\\' | b'$' | b'`'))
        || sql.contains("--")
        || sql.contains("/*")
    {
        return None;
    }
    let first: String = sql.trim_start().chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    if !["select", "with", "from", "values", "insert", "update", "delete"].iter().any(|k| first.eq_ignore_ascii_case(k)) {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let mut abstracted = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                let end = quoted_end(b, i)?;
                let after_comparison = c == b'\'' && matches!(out.trim_end().as_bytes().last(), Some(b'=' | b'<' | b'>'));
                if after_comparison {
                    out.push(HOLE);
                    abstracted = true;
                } else {
                    out.push_str(&sql[i..end]);
                }
                i = end;
            }
            b'0'..=b'9' => {
                let mut end = i;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if end + 1 < b.len() && b[end] == b'.' && b[end + 1].is_ascii_digit() {
                    end += 1;
                    while end < b.len() && b[end].is_ascii_digit() {
                        end += 1;
                    }
                }
                let joined_before = i > 0 && is_name_byte(b[i - 1]);
                let joined_after = end < b.len() && (is_name_byte(b[end]) || matches!(b[end], b'\'' | b'"'));
                if joined_before || joined_after {
                    out.push_str(&sql[i..end]);
                } else {
                    out.push(HOLE);
                    abstracted = true;
                }
                i = end;
            }
            _ => {
                // Copy a run of other bytes (names, keywords, operators) at once.
                let mut end = i + 1;
                if is_name_byte(c) {
                    while end < b.len() && is_name_byte(b[end]) {
                        end += 1;
                    }
                }
                out.push_str(&sql[i..end]);
                i = end;
            }
        }
    }
    abstracted.then_some(out)
}

/// A byte that continues a name or number: a digit next to one of these is not a literal on its own.
fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

/// The end (exclusive) of the quoted string or name starting at `start`;
/// a doubled quote stands for itself. `None` if it never ends.
fn quoted_end(b: &[u8], start: usize) -> Option<usize> {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::shape;

    fn same(a: &str, b: &str) -> bool {
        matches!((shape(a), shape(b)), (Some(x), Some(y)) if x == y)
    }

    #[test]
    fn values_share_a_shape() {
        assert!(same("SELECT abalance FROM pgbench_accounts WHERE aid = 17;", "SELECT abalance FROM pgbench_accounts WHERE aid = 90421;"));
        assert!(same("SELECT * FROM t WHERE x >= 1.5 LIMIT 10", "SELECT * FROM t WHERE x >= 22.25 LIMIT 3"));
        assert!(same("SELECT * FROM t WHERE host = 'a' AND d > '2024-01-01'", "SELECT * FROM t WHERE host = 'it''s' AND d > '1999-12-31'"));
        assert!(same("INSERT INTO t VALUES (1, 2)", "INSERT INTO t VALUES (3, 4)"));
        assert!(same("UPDATE t SET v = 'x' WHERE id = 1", "UPDATE t SET v = 'y' WHERE id = 2"));
    }

    #[test]
    fn names_and_structure_stay() {
        assert!(!same("SELECT * FROM t1 WHERE x = 1", "SELECT * FROM t2 WHERE x = 1"));
        assert!(!same("SELECT * FROM t WHERE x = 1", "SELECT * FROM u WHERE x = 1"));
        assert!(!same("SELECT * FROM db1.t WHERE x = 1", "SELECT * FROM db2.t WHERE x = 1"));
        assert!(!same("SELECT 'a' FROM t WHERE x = 1", "SELECT 'b' FROM t WHERE x = 1"), "strings outside comparisons stay");
        assert!(!same("SELECT * FROM 'a.csv' WHERE x = 1", "SELECT * FROM 'b.csv' WHERE x = 1"));
        assert!(!same("SELECT * FROM \"t1\" WHERE x = 1", "SELECT * FROM \"t2\" WHERE x = 1"));
        assert!(!same("SELECT * FROM t WHERE x = 1e5", "SELECT * FROM t WHERE x = 1e6"));
        assert!(!same("SELECT s.1 FROM t WHERE x = 1", "SELECT s.2 FROM t WHERE x = 1"));
    }

    #[test]
    fn ambiguous_texts_have_no_shape() {
        for sql in [
            "SELECT * FROM t WHERE x = 'a\\' UNION SELECT * FROM secret --'",
            "SELECT * FROM t WHERE x = 1 -- comment",
            "SELECT * FROM t WHERE x = 1 /* c */",
            "SELECT * FROM t WHERE x = $$a$$",
            "SELECT * FROM t WHERE x = 1\r; SELECT 2",
            "SELECT * FROM t WHERE x = 'é'",
            "SELECT * FROM t WHERE x = 'never ends",
            "SET threads = 4",
            "PRAGMA memory_limit = 1",
            "SELECT * FROM t",
        ] {
            assert_eq!(shape(sql), None, "{sql}");
        }
    }
}
