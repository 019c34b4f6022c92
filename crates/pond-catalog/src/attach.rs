//! `ATTACH '<uri>' AS name (TYPE hive, …)`: the options of an attached catalog,
//! validated in one place, and the [`Catalog`] they open. What is persisted is
//! the [`AttachSpec`] as the user wrote it (provider, URI, options), so a restart
//! opens the same catalog.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::catalog::{Catalog, CatalogOptions};
use crate::error::{Error, Result};
use crate::hive::{HiveConfig, HiveProvider, Transport};

/// Providers Pond can attach.
pub const PROVIDERS: &[&str] = &[
    "hive",
    #[cfg(feature = "glue")]
    "glue",
    #[cfg(feature = "dataproc")]
    "dataproc",
];

/// Looks up a Pond secret by name (the engine's secret store).
pub type SecretLookup<'a> = &'a dyn Fn(&str) -> Option<pond_secrets::Secret>;

/// An attached catalog as written: `provider` is `hive`; option names are
/// upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachSpec {
    pub provider: String,
    pub uri: String,
    pub options: BTreeMap<String, String>,
}

/// Options every provider takes.
const COMMON: &[&str] = &["CACHE_TTL", "MAX_PARTITIONS", "TIMEOUT", "READ_ONLY"];
const HIVE: &[&str] = &["TRANSPORT"];
const DATAPROC: &[&str] = &["SECRET", "API_ENDPOINT", "TRANSPORT"];
const GLUE: &[&str] = &["REGION", "CATALOG_ID", "ENDPOINT", "S3_ENDPOINT", "S3_URL_STYLE", "SECRET", "ROLE_ARN"];

impl AttachSpec {
    /// From the options of an ATTACH statement: `TYPE hive`, or `TYPE
    /// metastore, PROVIDER hive`. Returns None when the TYPE is not an
    /// external catalog (a DuckDB ATTACH).
    pub fn from_attach(uri: &str, mut options: BTreeMap<String, String>) -> Option<Result<AttachSpec>> {
        let ty = options.get("TYPE")?.to_ascii_lowercase();
        let provider = match ty.as_str() {
            "hive" | "glue" | "dataproc" => ty.clone(),
            "metastore" => match options.get("PROVIDER").map(|p| p.to_ascii_lowercase()) {
                Some(p) => p,
                None => return Some(Err(Error::InvalidOption("ATTACH (TYPE metastore) needs PROVIDER hive, glue or dataproc".into()))),
            },
            _ => return None,
        };
        options.remove("TYPE");
        options.remove("PROVIDER");
        let spec = AttachSpec { provider, uri: uri.to_string(), options };
        Some(spec.validate().map(|_| spec))
    }

    /// The options this spec's provider takes besides the common ones.
    fn provider_options(&self) -> &'static [&'static str] {
        match self.provider.as_str() {
            "glue" => GLUE,
            "dataproc" => DATAPROC,
            _ => HIVE,
        }
    }

    /// Every option this spec's provider takes (upper case): the common ones, then its own.
    pub fn allowed_options(&self) -> Vec<&'static str> {
        COMMON.iter().chain(self.provider_options()).copied().collect()
    }

    /// Checks the provider, the URI and every option; the error names what is
    /// wrong. (Credentials are checked when the catalog is opened.)
    pub fn validate(&self) -> Result<()> {
        if !PROVIDERS.contains(&self.provider.as_str()) {
            return Err(Error::InvalidOption(format!("unknown catalog provider '{}' (known: {})", self.provider, PROVIDERS.join(", "))));
        }
        let specific = self.provider_options();
        for (k, v) in &self.options {
            if !COMMON.contains(&k.as_str()) && !specific.contains(&k.as_str()) {
                return Err(Error::InvalidOption(format!(
                    "unknown ATTACH option {k} for a {} catalog (allowed: {})",
                    self.provider,
                    COMMON.iter().chain(specific).cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            if k == "READ_ONLY" && !matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "") {
                return Err(Error::InvalidOption("external catalogs are read-only: READ_ONLY false is not possible".into()));
            }
        }
        match self.provider.as_str() {
            "glue" => {
                if !self.uri.eq_ignore_ascii_case("glue") {
                    return Err(Error::InvalidOption(format!(
                        "a Glue catalog is attached as ATTACH 'glue' AS name (TYPE glue, REGION '…'), not '{}'",
                        self.uri
                    )));
                }
            }
            #[cfg(feature = "dataproc")]
            "dataproc" => {
                crate::dataproc::check_service_name(&self.uri)?;
                self.transport()?;
            }
            _ => {
                self.hive_config()?;
            }
        }
        self.catalog_options()?;
        Ok(())
    }

    /// The Pond secret this catalog names (`SECRET 'name'`), if any.
    pub fn secret_name(&self) -> Option<&str> {
        self.options.get("SECRET").map(|s| s.as_str())
    }

    fn seconds(&self, name: &str, default: f64) -> Result<Duration> {
        match self.options.get(name) {
            None => Ok(Duration::from_secs_f64(default)),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| Error::InvalidOption(format!("{name} must be a number of seconds, not '{v}'"))),
        }
    }

    pub fn catalog_options(&self) -> Result<CatalogOptions> {
        let max_partitions = match self.options.get("MAX_PARTITIONS") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::InvalidOption(format!("MAX_PARTITIONS must be a positive integer, not '{v}'")))?,
            ),
        };
        Ok(CatalogOptions {
            cache_ttl: self.seconds("CACHE_TTL", 60.0)?,
            max_partitions,
            attempts: 3,
            retry_budget: self.seconds("TIMEOUT", 10.0)?,
        })
    }

    pub fn hive_config(&self) -> Result<HiveConfig> {
        let uris: Vec<String> = self.uri.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
        if uris.is_empty() {
            return Err(Error::InvalidOption("the metastore URI is empty (expected 'thrift://host:9083')".into()));
        }
        for u in &uris {
            let rest = u.strip_prefix("thrift://").ok_or_else(|| {
                Error::InvalidOption(format!("metastore URI '{u}' must start with thrift:// (e.g. 'thrift://host:9083')"))
            })?;
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| Error::InvalidOption(format!("metastore URI '{u}' needs a port (e.g. 'thrift://host:9083')")))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(Error::InvalidOption(format!("metastore URI '{u}' needs a host and a port number")));
            }
        }
        Ok(HiveConfig { uris, transport: self.transport()?, timeout: self.timeout()? })
    }

    fn transport(&self) -> Result<Transport> {
        match self.options.get("TRANSPORT").map(|t| t.to_ascii_lowercase()).as_deref() {
            None | Some("buffered") => Ok(Transport::Buffered),
            Some("framed") => Ok(Transport::Framed),
            Some(other) => Err(Error::InvalidOption(format!("TRANSPORT must be buffered or framed, not '{other}'"))),
        }
    }

    fn timeout(&self) -> Result<Duration> {
        let timeout = self.seconds("TIMEOUT", 10.0)?;
        if timeout.is_zero() {
            return Err(Error::InvalidOption("TIMEOUT must be more than 0 seconds".into()));
        }
        Ok(timeout)
    }

    /// Opens the catalog (no network call: providers connect on first use,
    /// so a restart with the service down still starts). `secrets` resolves
    /// the `SECRET` option.
    pub fn open(&self, name: &str, secrets: SecretLookup<'_>) -> Result<Catalog> {
        self.validate()?;
        let secret = match self.secret_name() {
            None => None,
            Some(s) => Some(secrets(s).ok_or_else(|| Error::InvalidOption(format!("secret '{s}' does not exist (CREATE SECRET first)")))?),
        };
        let provider: Box<dyn crate::Provider> = match self.provider.as_str() {
            #[cfg(feature = "glue")]
            "glue" => {
                let settings = crate::aws::resolve(&self.options, secret.as_ref())?;
                Box::new(crate::glue::GlueProvider::new(name, settings, self.timeout()?)?)
            }
            #[cfg(feature = "dataproc")]
            "dataproc" => {
                let auth = match &secret {
                    None => crate::dataproc::GcpAuth::Default,
                    Some(s) if s.secret_type == "gcp" => match (s.get("SERVICE_ACCOUNT_JSON"), s.get("SERVICE_ACCOUNT_FILE")) {
                        (Some(json), _) => crate::dataproc::service_account(json)?,
                        (None, Some(path)) => {
                            let json = std::fs::read_to_string(path).map_err(|e| {
                                Error::InvalidOption(format!("secret '{}': cannot read SERVICE_ACCOUNT_FILE {path}: {e}", s.name))
                            })?;
                            crate::dataproc::service_account(&json)?
                        }
                        (None, None) => {
                            return Err(Error::InvalidOption(format!(
                                "secret '{}' has no SERVICE_ACCOUNT_JSON or SERVICE_ACCOUNT_FILE (a Dataproc catalog needs a service-account key)",
                                s.name
                            )))
                        }
                    },
                    Some(s) => {
                        return Err(Error::InvalidOption(format!(
                            "secret '{}' is of TYPE {}; a Dataproc catalog needs a secret of TYPE gcp",
                            s.name, s.secret_type
                        )))
                    }
                };
                let config = crate::dataproc::DataprocConfig {
                    service: self.uri.clone(),
                    api: self.options.get("API_ENDPOINT").cloned().unwrap_or_else(|| crate::dataproc::DEFAULT_API.to_string()),
                    auth,
                    transport: self.transport()?,
                    timeout: self.timeout()?,
                };
                Box::new(crate::dataproc::DataprocProvider::new(name, config)?)
            }
            _ => Box::new(HiveProvider::new(name, self.hive_config()?)),
        };
        let _ = &secret;
        Ok(Catalog::new(name, provider, self.catalog_options()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn attach_forms() {
        let s = AttachSpec::from_attach("thrift://h:9083", opts(&[("TYPE", "hive")])).unwrap().unwrap();
        assert_eq!(s.provider, "hive");
        let s = AttachSpec::from_attach(
            "thrift://a:1,thrift://b:2",
            opts(&[("TYPE", "metastore"), ("PROVIDER", "hive"), ("TRANSPORT", "framed")]),
        )
        .unwrap()
        .unwrap();
        let c = s.hive_config().unwrap();
        assert_eq!(c.uris, vec!["thrift://a:1", "thrift://b:2"]);
        assert_eq!(c.transport, Transport::Framed);
        assert!(AttachSpec::from_attach("x.duckdb", opts(&[("TYPE", "duckdb")])).is_none());
        assert!(AttachSpec::from_attach("x.duckdb", opts(&[])).is_none());
    }

    #[test]
    fn bad_options_are_named() {
        let err = |uri: &str, o: &[(&str, &str)]| AttachSpec::from_attach(uri, opts(o)).unwrap().unwrap_err().to_string();
        assert!(err("http://h:1", &[("TYPE", "hive")]).contains("must start with thrift://"));
        assert!(err("thrift://h", &[("TYPE", "hive")]).contains("needs a port"));
        assert!(err("thrift://h:1", &[("TYPE", "hive"), ("CACHE_TTL", "soon")]).contains("CACHE_TTL must be a number"));
        assert!(err("thrift://h:1", &[("TYPE", "hive"), ("MAX_PARTITIONS", "0")]).contains("MAX_PARTITIONS"));
        assert!(err("thrift://h:1", &[("TYPE", "hive"), ("TRANSPORT", "http")]).contains("TRANSPORT must be"));
        assert!(err("thrift://h:1", &[("TYPE", "hive"), ("COLOUR", "red")]).contains("unknown ATTACH option COLOUR"));
        assert!(err("thrift://h:1", &[("TYPE", "metastore"), ("PROVIDER", "nessie")]).contains("unknown catalog provider 'nessie'"));
        assert!(err("thrift://h:1", &[("TYPE", "glue")]).contains("ATTACH 'glue' AS name"));
        assert!(err("glue", &[("TYPE", "glue"), ("TRANSPORT", "framed")]).contains("unknown ATTACH option TRANSPORT for a glue catalog"));
        assert!(err("thrift://h:1", &[("TYPE", "hive"), ("READ_ONLY", "false")]).contains("read-only"));
    }
}
