//! Redaction: replacing secret values by [`REDACTED`] in any text Pond shows or
//! logs (errors, EXPLAIN output, audit entries), and finding the password inside
//! a PostgreSQL connection string.

use std::collections::BTreeSet;

use crate::normalize::is_sensitive;
use crate::store::Secret;

/// What a redacted value is replaced by.
pub const REDACTED: &str = "<redacted>";

/// Replaces every sensitive value of `secrets` in `text` by [`REDACTED`]: the
/// values of sensitive options (see [`is_sensitive`]) as given, as written in a
/// SQL string literal and as written in a JSON string, the private key inside a
/// `SERVICE_ACCOUNT_JSON`, and the password (not the rest) of a
/// `CONNECTION_STRING`.
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut values = BTreeSet::new();
    for secret in secrets {
        values.extend(sensitive_values(secret));
    }
    replace_all(text, &values.into_iter().collect::<Vec<_>>())
}

/// A PostgreSQL connection string (URI or keyword=value form) with its
/// passwords replaced by [`REDACTED`], for showing which server a secret points
/// to.
pub fn redact_connection_string(conn: &str) -> String {
    replace_all(conn, &connection_string_passwords(conn))
}

/// The strings of one secret that must not appear in any output.
fn sensitive_values(secret: &Secret) -> Vec<String> {
    let mut plain = Vec::new();
    for (name, value) in &secret.options {
        if name == "CONNECTION_STRING" {
            plain.extend(connection_string_passwords(value));
            continue;
        }
        if !is_sensitive(name) {
            continue;
        }
        plain.push(value.clone());
        if name == "SERVICE_ACCOUNT_JSON" {
            if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(value) {
                for field in ["private_key", "private_key_id"] {
                    if let Some(serde_json::Value::String(s)) = fields.get(field) {
                        plain.push(s.clone());
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for value in plain {
        // As it appears in a SQL literal ('' for ') and in a JSON string.
        out.push(value.replace('\'', "''"));
        if let Ok(json) = serde_json::to_string(&value) {
            out.push(json[1..json.len() - 1].to_string());
        }
        out.push(value);
    }
    out.retain(|v| !v.is_empty());
    out
}

/// Replaces every occurrence of any of `values` in one pass, longest match
/// first, so a value that is part of another (or of the marker) is not
/// replaced twice.
fn replace_all(text: &str, values: &[String]) -> String {
    let mut values: Vec<&str> = values.iter().map(String::as_str).filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return text.to_string();
    }
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if let Some(v) = values.iter().find(|v| rest.starts_with(**v)) {
            out.push_str(REDACTED);
            i += v.len();
        } else if let Some(c) = rest.chars().next() {
            out.push(c);
            i += c.len_utf8();
        } else {
            break;
        }
    }
    out
}

/// The passwords in a PostgreSQL connection string, as written and decoded:
/// the URI's `user:password@` part and `password=`/`sslpassword=` parameters,
/// or the `password`/`sslpassword` keywords of the keyword=value form.
pub(crate) fn connection_string_passwords(conn: &str) -> Vec<String> {
    let mut out = Vec::new();
    let trimmed = conn.trim_start();
    let lower = trimmed.to_ascii_lowercase();
    let scheme_len = ["postgresql://", "postgres://"].iter().find(|s| lower.starts_with(**s)).map(|s| s.len());
    if let Some(scheme_len) = scheme_len {
        let rest = &trimmed[scheme_len..];
        // Like libpq: the user info ends at the first '@' before any '/'.
        if let Some(at) = rest.find(['@', '/']).filter(|&p| rest.as_bytes()[p] == b'@') {
            if let Some((_, password)) = rest[..at].split_once(':') {
                out.push(password.to_string());
                out.push(percent_decode(password));
            }
        }
        if let Some((_, query)) = rest.split_once('?') {
            for pair in query.split('&') {
                if let Some((key, value)) = pair.split_once('=') {
                    if is_password_keyword(&percent_decode(key)) {
                        out.push(value.to_string());
                        out.push(percent_decode(value));
                    }
                }
            }
        }
    } else if let Some(pairs) = parse_keyword_values(conn) {
        for (key, raw, value) in pairs {
            if is_password_keyword(&key) {
                out.push(raw);
                out.push(value);
            }
        }
    }
    out.retain(|v| !v.is_empty());
    out.dedup();
    out
}

fn is_password_keyword(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses libpq's keyword=value form (`host=h password='a b'`): returns
/// (lower-case keyword, value as written, value unescaped) per pair, or `None`
/// when the text is not in that form.
pub(crate) fn parse_keyword_values(conn: &str) -> Option<Vec<(String, String, String)>> {
    let chars: Vec<char> = conn.chars().collect();
    let mut pairs = Vec::new();
    let mut i = 0;
    let skip_space = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_space(&mut i);
        if i == chars.len() {
            return Some(pairs);
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if i == start {
            return None;
        }
        let key: String = chars[start..i].iter().collect::<String>().to_ascii_lowercase();
        skip_space(&mut i);
        if chars.get(i) != Some(&'=') {
            return None;
        }
        i += 1;
        skip_space(&mut i);
        let value_start = i;
        let mut value = String::new();
        if chars.get(i) == Some(&'\'') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return None,
                    Some('\'') => break,
                    Some('\\') => {
                        value.push(*chars.get(i + 1)?);
                        i += 2;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
            i += 1;
        } else {
            while let Some(&c) = chars.get(i) {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    value.push(*chars.get(i + 1)?);
                    i += 2;
                } else {
                    value.push(c);
                    i += 1;
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        pairs.push((key, chars[value_start..i].iter().collect(), value));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn secret(secret_type: &str, options: &[(&str, &str)]) -> Secret {
        Secret {
            name: "s".into(),
            secret_type: secret_type.into(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn sensitive_values_are_replaced_everywhere_and_others_kept() {
        let s3 = secret("s3", &[("KEY_ID", "AKIAEXAMPLE"), ("SECRET", "wJalr/it's"), ("SESSION_TOKEN", "tok123")]);
        let text = "error: access denied for AKIAEXAMPLE with wJalr/it's (token tok123); SQL: SECRET 'wJalr/it''s'; \
                    json: {\"secret\":\"wJalr/it's\"}";
        let out = redact(text, &[&s3]);
        assert!(!out.contains("wJalr") && !out.contains("tok123"), "{out}");
        assert!(out.contains("AKIAEXAMPLE"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 4, "{out}");
    }

    #[test]
    fn overlapping_values_and_values_inside_the_marker() {
        let a = secret("postgres", &[("HOST", "h"), ("PASSWORD", "red")]);
        let b = secret("s3", &[("KEY_ID", "k"), ("SECRET", "redpanda")]);
        let out = redact("redpanda red <x>", &[&a, &b]);
        assert_eq!(out, "<redacted> <redacted> <x>");
        assert_eq!(redact("nothing here", &[]), "nothing here");
    }

    #[test]
    fn json_escaped_and_private_key_forms_are_redacted() {
        let json = r#"{"client_email":"a@b","private_key":"-----BEGIN KEY-----\nABC\n-----END KEY-----\n","token_uri":"u"}"#;
        let gcp = secret("gcp", &[("SERVICE_ACCOUNT_JSON", json)]);
        let out = redact("key was -----BEGIN KEY-----\nABC\n-----END KEY-----\n and doc {json}", &[&gcp]);
        assert!(!out.contains("ABC"), "{out}");
        let escaped = redact(r#"escaped: "-----BEGIN KEY-----\nABC\n-----END KEY-----\n""#, &[&gcp]);
        assert!(!escaped.contains("ABC"), "{escaped}");
    }

    #[test]
    fn connection_string_keeps_everything_but_the_password() {
        let uri = "postgresql://alice:p%40ss@db.example:5432/sales?sslmode=require&sslpassword=k3y";
        assert_eq!(
            redact_connection_string(uri),
            "postgresql://alice:<redacted>@db.example:5432/sales?sslmode=require&sslpassword=<redacted>"
        );
        let pg = secret("postgres", &[("CONNECTION_STRING", uri)]);
        // The decoded password, as a driver might echo it, too.
        assert_eq!(redact("auth failed for alice with p@ss at db.example", &[&pg]), "auth failed for alice with <redacted> at db.example");

        let kv = r"host=db user=bob password='it\'s secret' dbname=x";
        assert_eq!(redact_connection_string(kv), "host=db user=bob password=<redacted> dbname=x");
        let pg = secret("postgres", &[("CONNECTION_STRING", kv)]);
        assert_eq!(redact("password it's secret rejected", &[&pg]), "password <redacted> rejected");
        assert_eq!(redact_connection_string("host=db password=plain"), "host=db password=<redacted>");
        assert_eq!(redact_connection_string("postgres://bob@db/x"), "postgres://bob@db/x");
    }

    #[test]
    fn keyword_value_parsing() {
        let pairs = parse_keyword_values(r"host = h port=5432 password='a b\\c'").unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[2], ("password".into(), r"'a b\\c'".into(), r"a b\c".into()));
        assert!(parse_keyword_values("host=h password='x").is_none());
        assert!(parse_keyword_values("just words").is_none());
        assert!(parse_keyword_values("host=").is_none());
    }
}
