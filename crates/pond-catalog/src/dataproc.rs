//! The Google Dataproc Metastore provider: the service's admin API
//! (`services.get`) says where its Hive Metastore listens, and the Hive
//! provider does the rest over Thrift.
//!
//! - Credentials: a Pond secret of TYPE gcp (a service-account JSON: the OAuth2
//!   JWT-assertion flow against the JSON's `token_uri`), else Application
//!   Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, the
//!   metadata server). `gcp_auth` signs, caches and refreshes the tokens.
//! - Discovery happens on first use (a restart with the API down still
//!   starts) and again after a metastore connection failure, since a service
//!   can move. The service must be ACTIVE and speak THRIFT; a gRPC endpoint is
//!   refused with what to do instead.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::hive::{HiveConfig, HiveProvider, Transport};
use crate::model::{Partition, Table};
use crate::provider::Provider;
use crate::rt;

/// Google's API endpoint for Dataproc Metastore.
pub const DEFAULT_API: &str = "https://metastore.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Where the provider's OAuth2 tokens come from.
#[derive(Clone)]
pub enum GcpAuth {
    /// A service-account JSON (from a Pond secret).
    ServiceAccount(Arc<gcp_auth::CustomServiceAccount>),
    /// Application Default Credentials, found on first use.
    Default,
}

/// How to reach the service.
#[derive(Clone)]
pub struct DataprocConfig {
    /// `projects/P/locations/L/services/S`.
    pub service: String,
    pub api: String,
    pub auth: GcpAuth,
    pub transport: Transport,
    pub timeout: Duration,
}

/// Checks the shape of a service name; the error says what is expected.
pub fn check_service_name(name: &str) -> Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    let ok = parts.len() == 6
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "services"
        && [parts[1], parts[3], parts[5]]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOption(format!(
            "a Dataproc Metastore service is named 'projects/<project>/locations/<region>/services/<service>', not '{name}'"
        )))
    }
}

/// Parses a service-account JSON (the secret's SERVICE_ACCOUNT_JSON).
pub fn service_account(json: &str) -> Result<GcpAuth> {
    gcp_auth::CustomServiceAccount::from_json(json)
        .map(|sa| GcpAuth::ServiceAccount(Arc::new(sa)))
        .map_err(|e| Error::InvalidOption(format!("the secret's SERVICE_ACCOUNT_JSON is not a service-account key: {}", first_line(&e))))
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

pub struct DataprocProvider {
    catalog: String,
    config: DataprocConfig,
    http: reqwest::Client,
    /// The discovered endpoint and the Hive provider talking to it.
    hive: Mutex<Option<(String, Arc<HiveProvider>)>>,
    /// The Application Default Credentials provider, found once.
    adc: Arc<tokio::sync::OnceCell<Arc<dyn gcp_auth::TokenProvider>>>,
}

impl DataprocProvider {
    pub fn new(catalog: &str, config: DataprocConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::InvalidOption(format!("cannot build an HTTP client: {e}")))?;
        Ok(DataprocProvider {
            catalog: catalog.to_string(),
            config,
            http,
            hive: Mutex::new(None),
            adc: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    fn error(&self, operation: &'static str, retryable: bool, message: String) -> Error {
        Error::Provider { catalog: self.catalog.clone(), provider: "dataproc", operation, target: String::new(), retryable, message }
    }

    /// The Hive provider for the service's endpoint, discovering it if needed.
    fn hive(&self) -> Result<Arc<HiveProvider>> {
        if let Some((_, h)) = self.hive.lock().as_ref() {
            return Ok(h.clone());
        }
        let endpoint = self.discover()?;
        let hive = Arc::new(HiveProvider::new(
            &self.catalog,
            HiveConfig { uris: vec![endpoint.clone()], transport: self.config.transport, timeout: self.config.timeout },
        ));
        *self.hive.lock() = Some((endpoint, hive.clone()));
        Ok(hive)
    }

    /// Runs a call on the Hive provider; a transport failure forgets the
    /// endpoint so the next call asks the API again.
    fn with<T>(&self, f: impl FnOnce(&HiveProvider) -> Result<T>) -> Result<T> {
        let hive = self.hive()?;
        let r = f(&hive);
        if matches!(&r, Err(Error::Provider { retryable: true, .. })) {
            *self.hive.lock() = None;
        }
        r
    }

    /// `services.get`: the endpoint of an ACTIVE service that speaks Thrift.
    fn discover(&self) -> Result<String> {
        let url = format!("{}/v1/{}", self.config.api.trim_end_matches('/'), self.config.service);
        // The I/O runtime takes owned data only.
        let task = self.clone_for_task();
        let token = rt::wait(async move { task.token().await })?;
        let http = self.http.clone();
        let sent = rt::wait(async move {
            let r = http.get(&url).bearer_auth(token).send().await?;
            let status = r.status();
            let body = r.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        });
        let (status, body) = sent.map_err(|e| {
            let retryable = e.is_connect() || e.is_timeout() || e.is_request();
            self.error("services.get", retryable, format!("{} unreachable: {}", self.config.api, first_line(&e)))
        })?;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let detail = json.pointer("/error/message").and_then(|m| m.as_str()).unwrap_or("").to_string();
            let retryable = status.as_u16() == 429 || status.is_server_error();
            return Err(self.error("services.get", retryable, format!("{} for {}: {detail}", status, self.config.service)));
        }
        let state = json.get("state").and_then(|s| s.as_str()).unwrap_or("STATE_UNSPECIFIED");
        if state != "ACTIVE" {
            return Err(self.error(
                "services.get",
                matches!(state, "CREATING" | "UPDATING"),
                format!("service {} is {state}, not ACTIVE", self.config.service),
            ));
        }
        let protocol = json
            .pointer("/hiveMetastoreConfig/endpointProtocol")
            .or_else(|| json.get("endpointProtocol"))
            .and_then(|p| p.as_str())
            .unwrap_or("THRIFT");
        if protocol == "GRPC" {
            return Err(self.error(
                "services.get",
                false,
                format!(
                    "service {} serves its metastore over gRPC; Pond speaks the Thrift protocol: set the service's \
                     endpoint protocol to THRIFT, or run a Thrift proxy in front of it and ATTACH 'thrift://host:9083' (TYPE hive)",
                    self.config.service
                ),
            ));
        }
        let endpoint = json.get("endpointUri").and_then(|e| e.as_str()).unwrap_or_default();
        if !endpoint.starts_with("thrift://") {
            return Err(self.error(
                "services.get",
                false,
                format!("service {} has no Thrift endpoint ('{endpoint}')", self.config.service),
            ));
        }
        tracing::info!(catalog = %self.catalog, service = %self.config.service, %endpoint, "Dataproc Metastore endpoint found");
        Ok(endpoint.to_string())
    }

    /// What a task on the I/O runtime needs to fetch a token.
    fn clone_for_task(&self) -> TokenTask {
        TokenTask { catalog: self.catalog.clone(), auth: self.config.auth.clone(), adc: self.adc.clone() }
    }
}

/// The token half of the provider, owned so it can run on the I/O runtime.
struct TokenTask {
    catalog: String,
    auth: GcpAuth,
    adc: Arc<tokio::sync::OnceCell<Arc<dyn gcp_auth::TokenProvider>>>,
}

impl TokenTask {
    fn error(&self, operation: &'static str, retryable: bool, message: String) -> Error {
        Error::Provider { catalog: self.catalog.clone(), provider: "dataproc", operation, target: String::new(), retryable, message }
    }

    async fn token(&self) -> Result<String> {
        let scopes = &[SCOPE];
        let got = match &self.auth {
            GcpAuth::ServiceAccount(sa) => gcp_auth::TokenProvider::token(sa.as_ref(), scopes).await,
            GcpAuth::Default => {
                let provider = self
                    .adc
                    .get_or_try_init(gcp_auth::provider)
                    .await
                    .map_err(|e| self.error("credentials", false, format!("no Google credentials found: {}", first_line(&e))))?;
                provider.token(scopes).await
            }
        };
        got.map(|t| t.as_str().to_string())
            .map_err(|e| self.error("token", true, format!("no access token from Google's token endpoint: {}", first_line(&e))))
    }
}

impl Provider for DataprocProvider {
    fn kind(&self) -> &'static str {
        "dataproc"
    }

    fn endpoint(&self) -> String {
        match self.hive.lock().as_ref() {
            Some((e, _)) => format!("{} ({e})", self.config.service),
            None => self.config.service.clone(),
        }
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        self.with(|h| h.namespaces())
    }

    fn tables(&self, namespace: &str) -> Result<Vec<String>> {
        self.with(|h| h.tables(namespace))
    }

    fn table(&self, namespace: &str, table: &str) -> Result<Table> {
        self.with(|h| h.table(namespace, table))
    }

    fn partitions(&self, table: &Table) -> Result<Vec<Partition>> {
        self.with(|h| h.partitions(table))
    }

    fn partitions_by_filter(&self, table: &Table, filter: &str) -> Result<Option<Vec<Partition>>> {
        self.with(|h| h.partitions_by_filter(table, filter))
    }

    fn partition_names(&self, table: &Table) -> Result<Option<Vec<String>>> {
        self.with(|h| h.partition_names(table))
    }

    fn partition_names_with_prefix(&self, table: &Table, values: &[String]) -> Result<Option<Vec<String>>> {
        self.with(|h| h.partition_names_with_prefix(table, values))
    }

    fn partitions_by_names(&self, table: &Table, names: &[String]) -> Result<Vec<Partition>> {
        self.with(|h| h.partitions_by_names(table, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_checked() {
        assert!(check_service_name("projects/p-1/locations/europe-west1/services/hms").is_ok());
        for bad in ["thrift://h:9083", "projects/p/locations/l", "projects//locations/l/services/s", "projects/p/regions/l/services/s"] {
            let e = check_service_name(bad).unwrap_err().to_string();
            assert!(e.contains("projects/<project>/locations/<region>/services/<service>") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_bad_key_is_named_without_its_content() {
        let e = match service_account(r#"{"type": "service_account", "private_key": "not a key"}"#) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted a bad key"),
        };
        assert!(e.contains("SERVICE_ACCOUNT_JSON") && !e.contains("not a key"), "{e}");
    }
}
