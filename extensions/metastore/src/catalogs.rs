//! From a function's arguments to an open [`Catalog`]: the provider (from
//! `type :=` or the URI's form), the options (named parameters, validated by
//! pond-catalog's [`AttachSpec`], the same code that validates the server's
//! `ATTACH … (TYPE hive, …)`), and credentials from DuckDB's secret manager.
//!
//! Catalogs are kept per database and per (provider, URI, options, secret),
//! so their metadata cache (`cache_ttl`) and connections outlive one query.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;
use pond_catalog::{AttachSpec, Catalog};
use pond_secrets::Secret;

use crate::duck::Conn;

/// Named parameters every function takes, and the `AttachSpec` option each
/// stands for (`endpoint` is Glue's API endpoint, or Dataproc's admin API).
pub const OPTION_PARAMETERS: &[&str] = &[
    "type",
    "region",
    "endpoint",
    "cache_ttl",
    "timeout",
    "max_partitions",
    "transport",
    "secret",
    "catalog_id",
    "s3_endpoint",
    "s3_url_style",
    "role_arn",
];

/// The options of one call, as written.
#[derive(Debug, Default, Clone)]
pub struct CallOptions {
    pub uri: String,
    /// Named parameters given (lower case name → value), besides `filter`/`database`.
    pub named: BTreeMap<String, String>,
}

/// The catalogs opened in one database.
#[derive(Default)]
pub struct Catalogs {
    open: Mutex<HashMap<u64, Arc<Catalog>>>,
    /// DuckDB secrets the extension made from a catalog's own credentials:
    /// name → fingerprint of what it holds.
    pub made_secrets: Mutex<HashMap<String, u64>>,
}

/// The provider a URI names when `type :=` is not given.
fn provider_of(uri: &str) -> Result<String, String> {
    let u = uri.trim();
    if u.starts_with("thrift://") {
        Ok("hive".into())
    } else if u.eq_ignore_ascii_case("glue") {
        Ok("glue".into())
    } else if u.starts_with("projects/") {
        Ok("dataproc".into())
    } else {
        Err(format!(
            "cannot tell the catalog type of '{u}': use 'thrift://host:9083' (Hive Metastore), 'glue' (AWS Glue) or \
             'projects/<project>/locations/<region>/services/<service>' (Dataproc Metastore), or give type := 'hive' | 'glue' | 'dataproc'"
        ))
    }
}

impl CallOptions {
    /// The spec these options describe (not yet checked).
    fn spec(&self, secret: Option<&str>) -> Result<AttachSpec, String> {
        let provider = match self.named.get("type") {
            Some(t) => t.trim().to_ascii_lowercase(),
            None => provider_of(&self.uri)?,
        };
        let mut options = BTreeMap::new();
        for (k, v) in &self.named {
            let key = match (k.as_str(), provider.as_str()) {
                ("type" | "secret", _) => continue,
                ("endpoint", "dataproc") => "API_ENDPOINT".to_string(),
                _ => k.to_ascii_uppercase(),
            };
            options.insert(key, v.clone());
        }
        if let Some(s) = secret {
            options.insert("SECRET".into(), s.to_string());
        }
        let spec = AttachSpec { provider, uri: self.uri.trim().to_string(), options };
        // Name the function's parameters (lower case), not ATTACH options.
        if let Some(bad) = spec.options.keys().find(|k| !spec.allowed_options().contains(&k.as_str())) {
            let allowed: Vec<String> = spec
                .allowed_options()
                .iter()
                .filter(|o| **o != "READ_ONLY")
                .map(|o| if *o == "API_ENDPOINT" { "endpoint".to_string() } else { o.to_ascii_lowercase() })
                .chain(["type".to_string()])
                .chain((spec.provider != "hive").then(|| "secret".to_string()))
                .collect();
            let name = if bad == "API_ENDPOINT" { "endpoint".to_string() } else { bad.to_ascii_lowercase() };
            return Err(format!("parameter {name} does not apply to a {} catalog (it takes: {})", spec.provider, allowed.join(", ")));
        }
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }
}

impl Catalogs {
    /// The catalog these options open (cached), resolving credentials on `conn`.
    pub fn open(&self, conn: &Conn, call: &CallOptions) -> Result<Arc<Catalog>, String> {
        let provisional = call.spec(None)?;
        let secret = match call.named.get("secret").map(|s| s.trim()) {
            // `secret := ''`: no DuckDB secret, the provider's default chain.
            Some("") => None,
            Some(name) => Some(duckdb_secret(conn, name, true)?),
            None if provisional.provider == "glue" => default_aws_secret(conn)?,
            None => None,
        };
        let spec = call.spec(secret.as_ref().map(|s| s.name.as_str()))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&spec.provider, &spec.uri, &spec.options).hash(&mut h);
        if let Some(s) = &secret {
            (&s.secret_type, &s.options).hash(&mut h);
        }
        let key = h.finish();
        if let Some(c) = self.open.lock().get(&key) {
            return Ok(c.clone());
        }
        let catalog = Arc::new(spec.open(&spec.uri, &|_| secret.clone()).map_err(|e| e.to_string())?);
        self.open.lock().insert(key, catalog.clone());
        Ok(catalog)
    }
}

/// The DuckDB secret of this name, as pond-catalog takes secrets (option
/// names upper case). `explicit`: the user named it (a missing one is an error).
fn duckdb_secret(conn: &Conn, name: &str, explicit: bool) -> Result<Secret, String> {
    let sql = |redact: bool| {
        format!("SELECT type, secret_string FROM duckdb_secrets(redact := {redact}) WHERE name = $1 ORDER BY persistent LIMIT 1",)
    };
    let (rows, redacted) = match conn.rows(&sql(false), &[name]) {
        Ok(rows) => (rows, false),
        // DuckDB shows secret values only to databases opened with allow_unredacted_secrets.
        Err(e) if e.contains("unredacted") => (conn.rows(&sql(true), &[name])?, true),
        Err(e) => return Err(format!("cannot read DuckDB's secrets: {e}")),
    };
    let Some(row) = rows.into_iter().next() else {
        return Err(format!(
            "DuckDB secret '{name}' does not exist (CREATE SECRET {name} (TYPE s3, KEY_ID '…', SECRET '…', REGION '…') first)"
        ));
    };
    let secret_type = row.first().cloned().flatten().unwrap_or_default().to_ascii_lowercase();
    let options = parse_secret_string(row.get(1).cloned().flatten().as_deref().unwrap_or(""));
    if redacted && options.get("SECRET").is_some_and(|v| v == "redacted") {
        let how = if explicit { "secret := ''" } else { "secret := '' (or name another secret)" };
        return Err(format!(
            "DuckDB secret '{name}' applies, but DuckDB does not show its key to extensions unless the database is opened with \
             allow_unredacted_secrets = true (Python: duckdb.connect(config={{'allow_unredacted_secrets': True}})); \
             or pass {how} to use the AWS default credential chain"
        ));
    }
    Ok(Secret { name: name.to_string(), secret_type, options })
}

/// The S3 secret DuckDB would use for any `s3://` path, if there is one.
fn default_aws_secret(conn: &Conn) -> Result<Option<Secret>, String> {
    let name = conn.value("SELECT name FROM which_secret('s3://', 's3')", &[]).unwrap_or(None);
    name.map(|n| duckdb_secret(conn, &n, false)).transpose()
}

/// `name=s;type=s3;…;key_id=…;secret=…` → upper-case option names. A value
/// may itself contain `;`: a piece without `key=` continues the previous value.
/// DuckDB's `endpoint` has no scheme; `use_ssl=false` makes it `http://`.
fn parse_secret_string(s: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for piece in s.split(';') {
        match piece.split_once('=') {
            Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                let key = k.to_ascii_uppercase();
                out.insert(key.clone(), v.to_string());
                last = Some(key);
            }
            _ => {
                if let Some(v) = last.as_ref().and_then(|k| out.get_mut(k)) {
                    v.push(';');
                    v.push_str(piece);
                }
            }
        }
    }
    for k in ["NAME", "TYPE", "PROVIDER", "SERIALIZABLE", "SCOPE"] {
        out.remove(k);
    }
    let plain_http = out.get("USE_SSL").is_some_and(|v| v.eq_ignore_ascii_case("false"));
    match out.remove("ENDPOINT") {
        Some(e) if e.contains("://") => {
            out.insert("ENDPOINT".into(), e);
        }
        Some(e) if !e.is_empty() => {
            out.insert("ENDPOINT".into(), format!("{}://{e}", if plain_http { "http" } else { "https" }));
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_strings() {
        let o = parse_secret_string(
            "name=s;type=s3;provider=config;serializable=true;scope=s3://,s3n://;endpoint=127.0.0.1:5000;key_id=AK;region=eu-west-1;secret=sh;hh;use_ssl=false",
        );
        assert_eq!(o.get("SECRET").map(String::as_str), Some("sh;hh"));
        assert_eq!(o.get("ENDPOINT").map(String::as_str), Some("http://127.0.0.1:5000"));
        assert_eq!(o.get("KEY_ID").map(String::as_str), Some("AK"));
        assert!(!o.contains_key("SCOPE") && !o.contains_key("NAME"));
    }

    #[test]
    fn providers_and_parameters() {
        let call = |uri: &str, named: &[(&str, &str)]| CallOptions {
            uri: uri.into(),
            named: named.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert_eq!(call("thrift://h:9083", &[]).spec(None).unwrap().provider, "hive");
        assert_eq!(call("glue", &[("region", "eu-west-1")]).spec(None).unwrap().provider, "glue");
        let e = call("http://h", &[]).spec(None).unwrap_err();
        assert!(e.contains("cannot tell the catalog type of 'http://h'"), "{e}");
        let e = call("thrift://h:9083", &[("region", "x")]).spec(None).unwrap_err();
        assert!(e.contains("parameter region does not apply to a hive catalog"), "{e}");
        let e = call("thrift://h:9083", &[("cache_ttl", "soon")]).spec(None).unwrap_err();
        assert!(e.contains("CACHE_TTL must be a number"), "{e}");
        let s = call("projects/p/locations/l/services/s", &[("endpoint", "http://127.0.0.1:1")]).spec(None).unwrap();
        assert_eq!(s.options.get("API_ENDPOINT").map(String::as_str), Some("http://127.0.0.1:1"));
    }
}
