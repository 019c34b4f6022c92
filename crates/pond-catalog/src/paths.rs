//! Hive's partition names and directory names: `k1=v1/k2=v2`, with the
//! characters Hive escapes in path components written as `%XX`.

/// Whether Hive escapes this character in a partition path component.
fn needs_escape(c: char) -> bool {
    (c as u32) < 0x20 || c == '\u{7f}' || matches!(c, '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^')
}

/// A key or value as Hive writes it in a partition name or directory.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if needs_escape(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The inverse of [`escape`]; a `%` not followed by two hex digits stays as is.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `k1=v1/k2=v2` for these keys and values.
pub fn partition_name(keys: &[&str], values: &[&str]) -> String {
    keys.iter().zip(values).map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect::<Vec<_>>().join("/")
}

/// The values of a partition name, in key order, or None if it does not name
/// exactly these keys.
pub fn parse_partition_name(name: &str, keys: &[&str]) -> Option<Vec<String>> {
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() != keys.len() {
        return None;
    }
    parts
        .iter()
        .zip(keys)
        .map(|(part, key)| {
            let (k, v) = part.split_once('=')?;
            unescape(k).eq_ignore_ascii_case(key).then(|| unescape(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        for s in ["plain", "a/b", "x=y", "50%", "a:b c", "q?'\"#*", "tab\there", "ünï"] {
            assert_eq!(unescape(&escape(s)), s, "{s}");
        }
        assert_eq!(escape("a/b:c"), "a%2Fb%3Ac");
        assert_eq!(escape("a b"), "a b");
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("%zz"), "%zz");
    }

    #[test]
    fn partition_names() {
        let name = partition_name(&["dt", "path"], &["2024-01-02", "a/b"]);
        assert_eq!(name, "dt=2024-01-02/path=a%2Fb");
        assert_eq!(parse_partition_name(&name, &["dt", "path"]).unwrap(), vec!["2024-01-02", "a/b"]);
        assert_eq!(parse_partition_name(&name, &["dt"]), None);
        assert_eq!(parse_partition_name("dt=1/x=2", &["dt", "h"]), None);
    }
}
