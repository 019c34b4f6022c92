//! Pond secrets in the engine: `CREATE SECRET`, `DROP SECRET` and `SHOW
//! SECRETS` (superusers only; the sandbox refuses them to everyone else), stored
//! sealed by `pond-secrets`. Secrets of TYPE s3 and aws are also given to
//! DuckDB (in memory only) so the storage layer reads `s3://` locations of
//! external tables with them; nothing else sees their values.

use std::sync::Arc;

use pond_secrets::{CreateSecret, MasterKey, Secret, SecretStore};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::sql::{quote_ident, quote_literal};

/// Opens the secret store: the master key from `POND_MASTER_KEY` or the key
/// file, re-sealing records of `POND_MASTER_KEY_PREVIOUS` if it is set.
pub(crate) fn open_store(config: &crate::EngineConfig, meta: Arc<pond_meta::MetaStore>) -> Result<SecretStore> {
    let env = std::env::var(pond_secrets::MASTER_KEY_ENV).ok();
    let key = MasterKey::load(&config.data_dir, env.as_deref()).map_err(secret_error)?;
    let store = SecretStore::new(meta, key);
    if let Ok(previous) = std::env::var(pond_secrets::MASTER_KEY_PREVIOUS_ENV) {
        let previous = MasterKey::parse(&previous, pond_secrets::MASTER_KEY_PREVIOUS_ENV).map_err(secret_error)?;
        let n = store.rotate(&previous).map_err(secret_error)?;
        tracing::info!(resealed = n, key_id = %store.key_id(), "secrets re-sealed with the new master key");
    }
    Ok(store)
}

pub(crate) fn secret_error(e: pond_secrets::Error) -> Error {
    match e {
        pond_secrets::Error::NotFound { .. } => Error::NotFound(e.to_string().trim_end_matches(" does not exist").to_string()),
        pond_secrets::Error::Exists { .. } => Error::InvalidRequest(e.to_string()),
        pond_secrets::Error::Meta(m) => Error::Meta(m),
        other => Error::InvalidRequest(other.to_string()),
    }
}

/// DuckDB's in-memory secret for an s3/aws Pond secret (None for other types).
fn duckdb_secret_sql(s: &Secret) -> Option<String> {
    if !matches!(s.secret_type.as_str(), "s3" | "aws") {
        return None;
    }
    let mut parts = vec!["TYPE s3".to_string()];
    for (option, duck) in [
        ("KEY_ID", "KEY_ID"),
        ("SECRET", "SECRET"),
        ("SESSION_TOKEN", "SESSION_TOKEN"),
        ("REGION", "REGION"),
        ("ENDPOINT", "ENDPOINT"),
        ("URL_STYLE", "URL_STYLE"),
        ("SCOPE", "SCOPE"),
    ] {
        if let Some(v) = s.get(option) {
            parts.push(format!("{duck} {}", quote_literal(v)));
        }
    }
    if let Some(v) = s.get("USE_SSL") {
        parts.push(format!("USE_SSL {}", v.eq_ignore_ascii_case("true")));
    }
    Some(format!("CREATE OR REPLACE SECRET {} ({})", quote_ident(&format!("pond_{}", s.name)), parts.join(", ")))
}

impl Engine {
    fn secrets(&self) -> &SecretStore {
        &self.inner.secrets
    }

    /// Gives DuckDB the storage secrets (at start). A secret that cannot be
    /// installed (httpfs not loaded) is logged by name, never by value.
    pub(crate) fn install_storage_secrets(&self) {
        let Ok(all) = self.secrets().all() else { return };
        for s in &all {
            self.install_storage_secret(s);
        }
    }

    fn install_storage_secret(&self, s: &Secret) {
        let Some(sql) = duckdb_secret_sql(s) else { return };
        if let Err(e) = self.inner.root.lock().execute_batch(&sql) {
            let message = pond_secrets::redact(&e.to_string(), &[s]);
            tracing::warn!(secret = %s.name, error = %message, "secret not given to DuckDB (is httpfs loaded?)");
        }
    }

    /// `CREATE SECRET`.
    pub fn create_secret(&self, c: &CreateSecret) -> Result<()> {
        match self.secrets().create(&c.name, &c.secret_type, c.options.clone(), c.or_replace) {
            Err(pond_secrets::Error::Exists { .. }) if c.if_not_exists => return Ok(()),
            r => r.map_err(secret_error)?,
        }
        let s = self.secrets().get(&c.name).map_err(secret_error)?;
        self.install_storage_secret(&s);
        tracing::info!(secret = %s.name, secret_type = %s.secret_type, "secret created");
        Ok(())
    }

    /// `DROP SECRET`.
    pub fn drop_secret(&self, name: &str, if_exists: bool) -> Result<()> {
        let existed = self.secrets().get(name).ok();
        self.secrets().drop(name, if_exists).map_err(secret_error)?;
        if let Some(s) = existed.filter(|s| duckdb_secret_sql(s).is_some()) {
            let _ = self.inner.root.lock().execute_batch(&format!("DROP SECRET IF EXISTS {}", quote_ident(&format!("pond_{}", s.name))));
        }
        Ok(())
    }

    /// `SHOW SECRETS`: names, types and creation times; never values.
    pub fn list_secrets(&self) -> Vec<(String, String, String)> {
        self.secrets().list()
    }

    /// A secret's values, for a provider that needs them (one resolution point).
    pub fn secret(&self, name: &str) -> Result<Secret> {
        self.secrets().get(name).map_err(secret_error)
    }
}
