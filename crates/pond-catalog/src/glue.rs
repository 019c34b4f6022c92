//! The AWS Glue Data Catalog provider: [`Provider`] over the AWS SDK's Glue
//! client, translating Glue's structures into the model.
//!
//! - Listings page with `NextToken`; a whole table's partitions are read in
//!   parallel `Segment`s with `ExcludeColumnSchema` (the columns are the
//!   table's); partitions are de-duplicated by their values, so a service that
//!   ignores `Segment` (moto does) still gives each partition once.
//! - Conditions on partition keys go to `GetPartitions` as an `Expression`
//!   (string, integer and date keys); partitions known by value are fetched with
//!   `BatchGetPartition`.
//! - Failures carry Glue's error code; throttling, 5xx, timeouts and connection
//!   failures are retryable (the framework retries them with backoff; the SDK's
//!   own retries are off so the two do not multiply).
//! - A table that disappears between a listing and its `GetTable` is a
//!   `NotFound` for that table only.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_glue::config::{Credentials, ProvideCredentials, Region};
use aws_sdk_glue::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_glue::types as glue;

use crate::aws::{AwsAuth, AwsSettings, StorageAccess};
use crate::error::{Error, Result};
use crate::model::{Column, Partition, Storage, Table};
use crate::predicate::Dialect;
use crate::provider::Provider;
use crate::rt;

/// Parallel segments for a whole table's partitions (Glue allows 1–10).
const SEGMENTS: i32 = 4;
/// `BatchGetPartition` takes at most 1,000 values lists; smaller batches keep answers small.
const BATCH_GET: usize = 100;

pub struct GlueProvider {
    catalog: String,
    settings: AwsSettings,
    client: aws_sdk_glue::Client,
    credentials: Option<aws_sdk_glue::config::SharedCredentialsProvider>,
    timeout: Duration,
}

impl GlueProvider {
    /// Builds the client (no network call: credentials and the service are
    /// reached on first use, so a restart with AWS unreachable still starts).
    pub fn new(catalog: &str, settings: AwsSettings, timeout: Duration) -> Result<Self> {
        let s = settings.clone();
        let (client, credentials) = rt::wait(async move { build_client(&s, timeout).await });
        Ok(GlueProvider { catalog: catalog.to_string(), settings, client, credentials, timeout })
    }

    fn error<E>(&self, operation: &'static str, target: &str, e: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (retryable, message) = match &e {
            SdkError::TimeoutError(_) => (true, format!("no answer within {:?}", self.timeout)),
            SdkError::DispatchFailure(d) => {
                let why = if d.is_timeout() {
                    "timed out connecting".to_string()
                } else if d.is_io() {
                    "could not connect".to_string()
                } else {
                    "request not sent".to_string()
                };
                (true, format!("{why} to {}: {}", self.endpoint(), source_chain(&e)))
            }
            SdkError::ResponseError(_) => (true, format!("unreadable answer: {}", source_chain(&e))),
            SdkError::ServiceError(se) => {
                let code = se.err().code().unwrap_or("unknown error").to_string();
                let status = se.raw().status().as_u16();
                let msg = se.err().message().unwrap_or("").to_string();
                if code == "EntityNotFoundException" {
                    return Error::NotFound { catalog: self.catalog.clone(), what: target.trim_start_matches(" for ").to_string() };
                }
                let retryable = status >= 500
                    || matches!(
                        code.as_str(),
                        "ThrottlingException"
                            | "Throttling"
                            | "TooManyRequestsException"
                            | "RequestLimitExceeded"
                            | "InternalServiceException"
                            | "OperationTimeoutException"
                            | "ServiceUnavailableException"
                    );
                (retryable, if msg.is_empty() { code } else { format!("{code}: {msg}") })
            }
            SdkError::ConstructionFailure(_) => (false, format!("request not built: {}", source_chain(&e))),
            _ => (false, source_chain(&e)),
        };
        Error::Provider { catalog: self.catalog.clone(), provider: "glue", operation, target: target.to_string(), retryable, message }
    }

    fn table_target(table: &Table) -> String {
        format!(" for table {}", table.qualified())
    }

    /// Pages through `GetPartitions` (one segment, an optional expression).
    async fn partitions_segment(
        client: aws_sdk_glue::Client,
        catalog_id: Option<String>,
        table: (String, String),
        expression: Option<String>,
        segment: Option<(i32, i32)>,
    ) -> std::result::Result<Vec<glue::Partition>, SdkError<aws_sdk_glue::operation::get_partitions::GetPartitionsError>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = client
                .get_partitions()
                .set_catalog_id(catalog_id.clone())
                .database_name(&table.0)
                .table_name(&table.1)
                .set_expression(expression.clone())
                .exclude_column_schema(true)
                .set_next_token(token.take());
            if let Some((n, total)) = segment {
                let seg = glue::Segment::builder().segment_number(n).total_segments(total).build().expect("segment fields are set");
                req = req.segment(seg);
            }
            let page = req.send().await?;
            out.extend(page.partitions().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }
}

async fn build_client(
    s: &AwsSettings,
    timeout: Duration,
) -> (aws_sdk_glue::Client, Option<aws_sdk_glue::config::SharedCredentialsProvider>) {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider as Tls};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Tls::Rustls(CryptoMode::Ring)).build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(s.region.clone()))
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::disabled());
    match &s.auth {
        AwsAuth::Static { key_id, secret, session_token } => {
            loader = loader.credentials_provider(Credentials::new(key_id, secret, session_token.clone(), None, "pond-secret"));
        }
        AwsAuth::Chain { profile: Some(p) } => loader = loader.profile_name(p),
        AwsAuth::Chain { profile: None } => {}
    }
    if let Some(e) = &s.glue_endpoint {
        loader = loader.endpoint_url(e);
    }
    let mut config = loader.load().await;
    if let Some(role) = &s.role_arn {
        let mut assume = aws_config::sts::AssumeRoleProvider::builder(role).session_name("pond");
        if let Some(x) = &s.external_id {
            assume = assume.external_id(x);
        }
        let provider = assume.configure(&config).build().await;
        config = config.into_builder().credentials_provider(aws_sdk_glue::config::SharedCredentialsProvider::new(provider)).build();
    }
    let credentials = config.credentials_provider();
    (aws_sdk_glue::Client::new(&config), credentials)
}

/// An error and its causes on one line (the SDK's Display is only the outermost).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = s.source();
    }
    text
}

fn columns(cols: &[glue::Column]) -> Vec<Column> {
    cols.iter()
        .map(|c| Column {
            name: c.name().to_string(),
            catalog_type: c.r#type().unwrap_or_default().to_string(),
            comment: c.comment().filter(|x| !x.is_empty()).map(str::to_string),
        })
        .collect()
}

fn storage(sd: Option<&glue::StorageDescriptor>) -> Storage {
    let Some(sd) = sd else { return Storage::default() };
    let serde = sd.serde_info();
    Storage {
        location: sd.location().filter(|l| !l.is_empty()).map(str::to_string),
        input_format: sd.input_format().map(str::to_string),
        output_format: sd.output_format().map(str::to_string),
        serde: serde.and_then(|s| s.serialization_library()).map(str::to_string),
        serde_params: serde
            .and_then(|s| s.parameters())
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }
}

fn partition(p: &glue::Partition) -> Partition {
    Partition { values: p.values().to_vec(), location: storage(p.storage_descriptor()).location }
}

impl Provider for GlueProvider {
    fn kind(&self) -> &'static str {
        "glue"
    }

    fn endpoint(&self) -> String {
        match &self.settings.glue_endpoint {
            Some(e) => e.clone(),
            None => format!("glue.{}.amazonaws.com", self.settings.region),
        }
    }

    fn filter_dialect(&self) -> Dialect {
        Dialect::Glue
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        let (client, id) = (self.client.clone(), self.settings.catalog_id.clone());
        let got = rt::wait(async move {
            let mut names = Vec::new();
            let mut token = None;
            loop {
                let page = client.get_databases().set_catalog_id(id.clone()).set_next_token(token.take()).send().await?;
                names.extend(page.database_list().iter().map(|d| d.name().to_string()));
                match page.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => return Ok(names),
                }
            }
        });
        got.map_err(|e| self.error("GetDatabases", "", e))
    }

    fn tables(&self, namespace: &str) -> Result<Vec<String>> {
        let (client, id, ns) = (self.client.clone(), self.settings.catalog_id.clone(), namespace.to_string());
        let got = rt::wait(async move {
            let mut names = Vec::new();
            let mut token = None;
            loop {
                let page = client.get_tables().set_catalog_id(id.clone()).database_name(&ns).set_next_token(token.take()).send().await?;
                names.extend(page.table_list().iter().map(|t| t.name().to_string()));
                match page.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => return Ok(names),
                }
            }
        });
        got.map_err(|e| self.error("GetTables", &format!(" for database {namespace}"), e))
    }

    fn table(&self, namespace: &str, table: &str) -> Result<Table> {
        let (client, id) = (self.client.clone(), self.settings.catalog_id.clone());
        let (ns, name) = (namespace.to_string(), table.to_string());
        let target = format!(" for table {namespace}.{table}");
        let got = rt::wait(async move { client.get_table().set_catalog_id(id).database_name(ns).name(name).send().await })
            .map_err(|e| self.error("GetTable", &target, e))?;
        let t = got.table().ok_or_else(|| Error::NotFound { catalog: self.catalog.clone(), what: format!("table {namespace}.{table}") })?;
        let sd = t.storage_descriptor();
        // Glue keeps the Iceberg marker (`table_type=ICEBERG`) in the parameters, as Hive does.
        let params: BTreeMap<String, String> =
            t.parameters().map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        let table_type = t.table_type().unwrap_or_default().to_string();
        Ok(Table {
            namespace: t.database_name().unwrap_or(namespace).to_string(),
            name: t.name().to_string(),
            columns: columns(sd.map(|s| s.columns()).unwrap_or_default()),
            partition_keys: columns(t.partition_keys()),
            storage: storage(sd),
            params,
            table_type,
        })
    }

    fn partitions(&self, table: &Table) -> Result<Vec<Partition>> {
        let (client, id) = (self.client.clone(), self.settings.catalog_id.clone());
        let key = (table.namespace.clone(), table.name.clone());
        let got = rt::wait(async move {
            let tasks: Vec<_> = (0..SEGMENTS)
                .map(|n| tokio::spawn(Self::partitions_segment(client.clone(), id.clone(), key.clone(), None, Some((n, SEGMENTS)))))
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await.expect("a partitions segment task panicked")?);
            }
            Ok(all)
        })
        .map_err(|e| self.error("GetPartitions", &Self::table_target(table), e))?;
        let mut seen = HashSet::new();
        Ok(got.iter().flatten().filter(|p| seen.insert(p.values().to_vec())).map(partition).collect())
    }

    fn partitions_by_filter(&self, table: &Table, filter: &str) -> Result<Option<Vec<Partition>>> {
        let (client, id) = (self.client.clone(), self.settings.catalog_id.clone());
        let key = (table.namespace.clone(), table.name.clone());
        let expression = Some(filter.to_string());
        let got = rt::wait(Self::partitions_segment(client, id, key, expression, None));
        match got {
            Ok(parts) => {
                let mut seen = HashSet::new();
                Ok(Some(parts.iter().filter(|p| seen.insert(p.values().to_vec())).map(partition).collect()))
            }
            Err(e) => match self.error("GetPartitions", &Self::table_target(table), e) {
                // Glue refused the expression (InvalidInputException): filter locally instead.
                Error::Provider { retryable: false, message, .. } if message.starts_with("InvalidInput") => {
                    tracing::debug!(catalog = %self.catalog, %filter, %message, "Glue refused the expression");
                    Ok(None)
                }
                e => Err(e),
            },
        }
    }

    fn prefers_point_lookups(&self) -> bool {
        true
    }

    fn partition_names(&self, _table: &Table) -> Result<Option<Vec<String>>> {
        // Glue has no names-only listing; a whole listing without column schemas is as cheap.
        Ok(None)
    }

    fn partition_names_with_prefix(&self, _table: &Table, _values: &[String]) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    fn partitions_by_names(&self, table: &Table, names: &[String]) -> Result<Vec<Partition>> {
        let keys: Vec<&str> = table.partition_keys.iter().map(|k| k.name.as_str()).collect();
        let mut lists = Vec::with_capacity(names.len());
        for n in names {
            let values = crate::paths::parse_partition_name(n, &keys).ok_or_else(|| Error::Provider {
                catalog: self.catalog.clone(),
                provider: "glue",
                operation: "BatchGetPartition",
                target: Self::table_target(table),
                retryable: false,
                message: format!("partition name '{n}' does not name the keys {}", keys.join(", ")),
            })?;
            lists.push(glue::PartitionValueList::builder().set_values(Some(values)).build().expect("values are set"));
        }
        let (client, id) = (self.client.clone(), self.settings.catalog_id.clone());
        let key = (table.namespace.clone(), table.name.clone());
        let got = rt::wait(async move {
            let mut out = Vec::new();
            for batch in lists.chunks(BATCH_GET) {
                let mut pending = batch.to_vec();
                // Unprocessed keys (throttled inside the batch) are asked for again, a bounded number of times.
                for _ in 0..5 {
                    let r = client
                        .batch_get_partition()
                        .set_catalog_id(id.clone())
                        .database_name(&key.0)
                        .table_name(&key.1)
                        .set_partitions_to_get(Some(pending))
                        .send()
                        .await?;
                    out.extend(r.partitions().iter().cloned());
                    pending = r.unprocessed_keys().to_vec();
                    if pending.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok(out)
        })
        .map_err(|e| self.error("BatchGetPartition", &Self::table_target(table), e))?;
        Ok(got.iter().map(partition).collect())
    }

    fn storage_access(&self) -> Result<Option<StorageAccess>> {
        let Some(provider) = self.credentials.clone() else {
            return Err(Error::Provider {
                catalog: self.catalog.clone(),
                provider: "glue",
                operation: "credentials",
                target: String::new(),
                retryable: false,
                message: "no AWS credentials provider is configured".into(),
            });
        };
        let creds = rt::wait(async move { provider.provide_credentials().await }).map_err(|e| Error::Provider {
            catalog: self.catalog.clone(),
            provider: "glue",
            operation: "credentials",
            target: String::new(),
            retryable: false,
            message: format!("no AWS credentials: {}", source_chain(&e)),
        })?;
        let (endpoint, use_ssl) = self.settings.s3_endpoint_for_duckdb();
        Ok(Some(StorageAccess {
            key_id: creds.access_key_id().to_string(),
            secret: creds.secret_access_key().to_string(),
            session_token: creds.session_token().map(str::to_string),
            region: self.settings.region.clone(),
            endpoint,
            url_style: self.settings.s3_url_style.clone(),
            use_ssl,
            expires: creds.expiry(),
        }))
    }
}
