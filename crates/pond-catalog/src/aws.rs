//! AWS settings of a catalog, resolved in one place: ATTACH options first,
//! then the Pond secret named by `SECRET` (TYPE aws or s3), then the SDK's
//! default chain (environment, profile/SSO, web identity, container, instance
//! metadata). The Glue client and the storage layer (DuckDB's httpfs reading
//! the tables' `s3://` files) both take what this returns, so credentials,
//! region and endpoints are validated once and never diverge.

use std::time::SystemTime;

use pond_secrets::Secret;

use crate::error::{Error, Result};

/// Where a catalog's AWS credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum AwsAuth {
    /// Keys from a Pond secret.
    Static { key_id: String, secret: String, session_token: Option<String> },
    /// The SDK's default chain, optionally with a named profile.
    Chain { profile: Option<String> },
}

/// Never shows key material.
impl std::fmt::Debug for AwsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AwsAuth::Static { key_id, .. } => write!(f, "Static {{ key_id: {}…, .. }}", key_id.chars().take(4).collect::<String>()),
            AwsAuth::Chain { profile } => write!(f, "Chain {{ profile: {profile:?} }}"),
        }
    }
}

/// Everything a Glue catalog needs to reach AWS and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: String,
    pub auth: AwsAuth,
    /// Assume this role with the credentials above (STS AssumeRole).
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// Glue's endpoint, when not AWS's own (tests, VPC endpoints).
    pub glue_endpoint: Option<String>,
    /// S3's endpoint for the tables' files (`host:port` or a URL).
    pub s3_endpoint: Option<String>,
    /// `path` or `vhost`.
    pub s3_url_style: Option<String>,
    /// The Glue catalog (account id); None = the caller's account.
    pub catalog_id: Option<String>,
}

/// Credentials for reading the tables' files, as DuckDB's httpfs takes them.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageAccess {
    pub key_id: String,
    pub secret: String,
    pub session_token: Option<String>,
    pub region: String,
    /// `host:port`, without the scheme.
    pub endpoint: Option<String>,
    pub url_style: Option<String>,
    pub use_ssl: bool,
    /// When temporary credentials stop working.
    pub expires: Option<SystemTime>,
}

impl std::fmt::Debug for StorageAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageAccess")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("url_style", &self.url_style)
            .field("use_ssl", &self.use_ssl)
            .finish_non_exhaustive()
    }
}

/// Resolves a Glue catalog's settings. `options` are the ATTACH options
/// (upper-case names); `secret` is the Pond secret that `SECRET` names, if any.
pub fn resolve(options: &std::collections::BTreeMap<String, String>, secret: Option<&Secret>) -> Result<AwsSettings> {
    let opt = |k: &str| options.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let from_secret = |k: &str| secret.and_then(|s| s.get(k)).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if let Some(s) = secret {
        if !matches!(s.secret_type.as_str(), "aws" | "s3") {
            return Err(Error::InvalidOption(format!(
                "secret '{}' is of TYPE {}; a Glue catalog needs a secret of TYPE aws (or s3)",
                s.name, s.secret_type
            )));
        }
    }
    let region = opt("REGION")
        .or_else(|| from_secret("REGION"))
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok().filter(|r| !r.is_empty()))
        .ok_or_else(|| Error::InvalidOption("a Glue catalog needs a REGION (ATTACH option, the secret's REGION, or AWS_REGION)".into()))?;
    if !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(Error::InvalidOption(format!("REGION '{region}' is not an AWS region name (e.g. eu-west-1)")));
    }
    let auth = match (from_secret("KEY_ID"), from_secret("SECRET")) {
        (Some(key_id), Some(secret_key)) => AwsAuth::Static { key_id, secret: secret_key, session_token: from_secret("SESSION_TOKEN") },
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::InvalidOption(format!(
                "secret '{}' has only one of KEY_ID and SECRET; give both, or neither to use the default credential chain",
                secret.map(|s| s.name.as_str()).unwrap_or_default()
            )))
        }
        (None, None) => AwsAuth::Chain { profile: from_secret("PROFILE") },
    };
    let url_style = opt("S3_URL_STYLE").or_else(|| from_secret("URL_STYLE")).map(|s| s.to_ascii_lowercase());
    if let Some(style) = &url_style {
        if style != "path" && style != "vhost" {
            return Err(Error::InvalidOption(format!("S3_URL_STYLE must be path or vhost, not '{style}'")));
        }
    }
    let glue_endpoint = opt("ENDPOINT").map(|e| with_scheme(&e));
    for (name, value) in [("ENDPOINT", &glue_endpoint)] {
        if let Some(v) = value {
            check_url(name, v)?;
        }
    }
    let s3_endpoint = opt("S3_ENDPOINT").or_else(|| from_secret("ENDPOINT"));
    if let Some(v) = &s3_endpoint {
        check_url("S3_ENDPOINT", &with_scheme(v))?;
    }
    Ok(AwsSettings {
        region,
        auth,
        role_arn: opt("ROLE_ARN").or_else(|| from_secret("ROLE_ARN")),
        external_id: from_secret("EXTERNAL_ID"),
        glue_endpoint,
        s3_endpoint,
        s3_url_style: url_style,
        catalog_id: opt("CATALOG_ID"),
    })
}

/// `host:port` becomes `https://host:port`; URLs stay as they are.
fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    }
}

fn check_url(name: &str, url: &str) -> Result<()> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOption(format!("{name} '{url}' is not an http(s) endpoint")))
    }
}

impl StorageAccess {
    /// The options of a DuckDB `CREATE SECRET` (`TYPE s3, KEY_ID '…', …`)
    /// giving DuckDB these credentials for `scope` (e.g. `s3://bucket`).
    pub fn duckdb_secret_options(&self, scope: &str) -> String {
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let mut parts = vec![
            "TYPE s3".to_string(),
            format!("KEY_ID {}", lit(&self.key_id)),
            format!("SECRET {}", lit(&self.secret)),
            format!("REGION {}", lit(&self.region)),
            format!("USE_SSL {}", self.use_ssl),
            format!("SCOPE {}", lit(scope)),
        ];
        if let Some(t) = &self.session_token {
            parts.push(format!("SESSION_TOKEN {}", lit(t)));
        }
        if let Some(e) = &self.endpoint {
            parts.push(format!("ENDPOINT {}", lit(e)));
        }
        if let Some(u) = &self.url_style {
            parts.push(format!("URL_STYLE {}", lit(u)));
        }
        parts.join(", ")
    }

    /// `text` with every piece of key material replaced by `***` (for
    /// errors that may quote a statement back).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.secret, "***").replace(&self.key_id, "***");
        if let Some(t) = self.session_token.as_deref().filter(|t| !t.is_empty()) {
            out = out.replace(t, "***");
        }
        out
    }
}

impl AwsSettings {
    /// The S3 endpoint as DuckDB takes it (`host:port`) and whether it uses TLS.
    pub fn s3_endpoint_for_duckdb(&self) -> (Option<String>, bool) {
        match &self.s3_endpoint {
            None => (None, true),
            Some(e) => {
                if let Some(rest) = e.strip_prefix("http://") {
                    (Some(rest.trim_end_matches('/').to_string()), false)
                } else {
                    (Some(e.strip_prefix("https://").unwrap_or(e).trim_end_matches('/').to_string()), true)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn secret(ty: &str, pairs: &[(&str, &str)]) -> Secret {
        Secret { name: "s".into(), secret_type: ty.into(), options: opts(pairs) }
    }

    #[test]
    fn options_win_over_the_secret_and_keys_come_from_the_secret() {
        let s = secret("aws", &[("KEY_ID", "AKIA1"), ("SECRET", "shh"), ("REGION", "us-east-1"), ("ENDPOINT", "http://127.0.0.1:5000")]);
        let r = resolve(&opts(&[("REGION", "eu-west-1"), ("ENDPOINT", "http://127.0.0.1:5000")]), Some(&s)).unwrap();
        assert_eq!(r.region, "eu-west-1");
        assert_eq!(r.auth, AwsAuth::Static { key_id: "AKIA1".into(), secret: "shh".into(), session_token: None });
        assert_eq!(r.s3_endpoint_for_duckdb(), (Some("127.0.0.1:5000".into()), false));
        assert!(!format!("{r:?}").contains("shh"), "Debug never shows the secret key");
    }

    #[test]
    fn storage_secrets_quote_and_scrub() {
        let a = StorageAccess {
            key_id: "AKIA1".into(),
            secret: "it's".into(),
            session_token: Some("tok".into()),
            region: "eu-west-1".into(),
            endpoint: Some("127.0.0.1:5000".into()),
            url_style: Some("path".into()),
            use_ssl: false,
            expires: None,
        };
        let o = a.duckdb_secret_options("s3://bk");
        assert!(o.starts_with("TYPE s3, KEY_ID 'AKIA1', SECRET 'it''s'"), "{o}");
        assert!(o.contains("SCOPE 's3://bk'") && o.contains("USE_SSL false") && o.contains("SESSION_TOKEN 'tok'"), "{o}");
        assert_eq!(a.scrub("bad AKIA1 it's tok"), "bad *** *** ***");
    }

    #[test]
    fn without_keys_the_default_chain_is_used() {
        let r = resolve(&opts(&[("REGION", "eu-west-1")]), None).unwrap();
        assert_eq!(r.auth, AwsAuth::Chain { profile: None });
        assert_eq!(r.s3_endpoint_for_duckdb(), (None, true));
    }

    #[test]
    fn bad_settings_are_named() {
        let e = |o: &[(&str, &str)], s: Option<&Secret>| resolve(&opts(o), s).unwrap_err().to_string();
        assert!(e(&[("REGION", "eu west")], None).contains("REGION 'eu west'"));
        assert!(e(&[("REGION", "r"), ("S3_URL_STYLE", "sideways")], None).contains("S3_URL_STYLE"));
        assert!(e(&[("REGION", "r"), ("ENDPOINT", "ftp://x")], None).contains("ENDPOINT 'ftp://x'"));
        assert!(e(&[("REGION", "r")], Some(&secret("gcp", &[]))).contains("TYPE gcp"));
        let half = secret("aws", &[("KEY_ID", "AKIA1")]);
        let msg = e(&[("REGION", "r")], Some(&half));
        assert!(msg.contains("only one of KEY_ID and SECRET") && !msg.contains("AKIA1"), "{msg}");
    }
}
