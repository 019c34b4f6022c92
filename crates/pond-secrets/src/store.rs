//! [`SecretStore`]: secrets sealed in Pond's metadata, and [`Secret`], one
//! opened secret.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pond_meta::{MetaStore, SecretRecord};

use crate::key::MasterKey;
use crate::normalize::{is_sensitive, normalize, normalize_name, normalize_type};
use crate::redact::{redact_connection_string, REDACTED};
use crate::{Error, Result};

/// One secret, opened: its name (lower case), type and normalised options
/// (upper-case names). `Debug` shows option names, never values.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub name: String,
    pub secret_type: String,
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("secret_type", &self.secret_type)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secret {
    /// The value of an option (name matched case-insensitively).
    pub fn get(&self, option: &str) -> Option<&str> {
        self.options.get(&option.to_ascii_uppercase()).map(String::as_str)
    }

    /// The options as they may be shown (EXPLAIN, diagnostics): sensitive values
    /// replaced by [`REDACTED`], a `CONNECTION_STRING` with only its password
    /// replaced.
    pub fn redacted_options(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .map(|(name, value)| {
                let shown = match name.as_str() {
                    "CONNECTION_STRING" => redact_connection_string(value),
                    _ if is_sensitive(name) => REDACTED.to_string(),
                    _ => value.clone(),
                };
                (name.clone(), shown)
            })
            .collect()
    }
}

/// Pond's secrets, sealed in the system metadata ([`pond_meta::SystemMeta::secrets`])
/// under the instance's [`MasterKey`]. Every change is one atomic metadata write.
pub struct SecretStore {
    meta: Arc<MetaStore>,
    key: MasterKey,
}

impl SecretStore {
    pub fn new(meta: Arc<MetaStore>, key: MasterKey) -> Self {
        Self { meta, key }
    }

    /// The fingerprint of the current master key.
    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    /// Validates ([`normalize`]) and stores a secret. An existing secret of that
    /// name is replaced when `or_replace`, otherwise the result is
    /// [`Error::Exists`] (for `IF NOT EXISTS`, treat that error as success).
    pub fn create(&self, name: &str, secret_type: &str, options: BTreeMap<String, String>, or_replace: bool) -> Result<()> {
        let name = normalize_name(name)?;
        let secret_type = normalize_type(secret_type)?;
        let options = normalize(&secret_type, options)?;
        let record = seal(&self.key, &name, &secret_type, pond_meta::now_rfc3339(), &options)?;
        self.meta.update(|meta| {
            match meta.secrets.iter_mut().find(|r| r.name == name) {
                Some(_) if !or_replace => return Err(Error::Exists { name: name.clone() }),
                Some(existing) => *existing = record,
                None => meta.secrets.push(record),
            }
            Ok(())
        })
    }

    /// Removes a secret; a missing one is [`Error::NotFound`] unless `if_exists`.
    pub fn drop(&self, name: &str, if_exists: bool) -> Result<()> {
        let name = normalize_name(name)?;
        self.meta.update(|meta| {
            let before = meta.secrets.len();
            meta.secrets.retain(|r| r.name != name);
            if meta.secrets.len() == before && !if_exists {
                return Err(Error::NotFound { name: name.clone() });
            }
            Ok(())
        })
    }

    /// `(name, type, created_at)` of every secret, by name. Never values.
    pub fn list(&self) -> Vec<(String, String, String)> {
        let mut out: Vec<_> = self.meta.snapshot().secrets.into_iter().map(|r| (r.name, r.secret_type, r.created_at)).collect();
        out.sort();
        out
    }

    /// One secret, decrypted.
    pub fn get(&self, name: &str) -> Result<Secret> {
        let name = normalize_name(name)?;
        let meta = self.meta.snapshot();
        let record = meta.secrets.iter().find(|r| r.name == name).ok_or(Error::NotFound { name })?;
        open(&self.key, record)
    }

    /// Every secret, decrypted, by name (for example to redact a text against
    /// all of them).
    pub fn all(&self) -> Result<Vec<Secret>> {
        let mut records = self.meta.snapshot().secrets;
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records.iter().map(|r| open(&self.key, r)).collect()
    }

    /// Re-seals with the current key every record sealed by `previous` (the
    /// value of `POND_MASTER_KEY_PREVIOUS`), in one atomic metadata write, and
    /// returns how many. Records sealed by other keys are left alone. Run at
    /// start; see the crate documentation for the rotation procedure.
    pub fn rotate(&self, previous: &MasterKey) -> Result<usize> {
        if previous.key_id() == self.key.key_id() {
            return Ok(0);
        }
        self.meta.update(|meta| {
            let mut count = 0;
            for record in meta.secrets.iter_mut().filter(|r| r.key_id == previous.key_id()) {
                let secret = open(previous, record)?;
                *record = seal(&self.key, &secret.name, &secret.secret_type, record.created_at.clone(), &secret.options)?;
                count += 1;
            }
            Ok(count)
        })
    }
}

/// Binds the ciphertext to the record's name and type.
fn aad(name: &str, secret_type: &str) -> Vec<u8> {
    format!("pond-secret\0{name}\0{secret_type}").into_bytes()
}

fn seal(key: &MasterKey, name: &str, secret_type: &str, created_at: String, options: &BTreeMap<String, String>) -> Result<SecretRecord> {
    let plaintext = serde_json::to_vec(options).map_err(|_| Error::Crypto("encoding the options failed"))?;
    let (nonce, ciphertext) = key.seal(&aad(name, secret_type), &plaintext)?;
    Ok(SecretRecord {
        name: name.to_string(),
        secret_type: secret_type.to_string(),
        created_at,
        key_id: key.key_id().to_string(),
        nonce_b64: BASE64.encode(nonce),
        ciphertext_b64: BASE64.encode(ciphertext),
    })
}

fn open(key: &MasterKey, record: &SecretRecord) -> Result<Secret> {
    if record.key_id != key.key_id() {
        return Err(Error::UnknownKey { name: record.name.clone(), needed: record.key_id.clone(), current: key.key_id().to_string() });
    }
    let undecryptable = || Error::Undecryptable { name: record.name.clone(), key_id: record.key_id.clone() };
    let nonce = BASE64.decode(&record.nonce_b64).map_err(|_| undecryptable())?;
    let ciphertext = BASE64.decode(&record.ciphertext_b64).map_err(|_| undecryptable())?;
    let plaintext = key.open(&nonce, &aad(&record.name, &record.secret_type), &ciphertext)?.ok_or_else(undecryptable)?;
    let options: BTreeMap<String, String> = serde_json::from_slice(&plaintext).map_err(|_| undecryptable())?;
    Ok(Secret { name: record.name.clone(), secret_type: record.secret_type.clone(), options })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path, key: MasterKey) -> SecretStore {
        SecretStore::new(Arc::new(MetaStore::open(&dir.join("system")).unwrap()), key)
    }

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn s3() -> BTreeMap<String, String> {
        opts(&[("key_id", "AKIA1"), ("secret", "very-secret-value"), ("region", "eu-west-1")])
    }

    #[test]
    fn create_get_list_drop() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate().unwrap();
        let secrets = store(dir.path(), key.clone());
        secrets.create("S3_Prod", "S3", s3(), false).unwrap();
        let got = secrets.get("s3_prod").unwrap();
        assert_eq!(got.name, "s3_prod");
        assert_eq!(got.secret_type, "s3");
        assert_eq!(got.get("secret"), Some("very-secret-value"));
        assert_eq!(got.options.keys().collect::<Vec<_>>(), ["KEY_ID", "REGION", "SECRET"]);
        assert!(!format!("{got:?}").contains("very-secret-value"));
        assert_eq!(got.redacted_options()["SECRET"], REDACTED);
        assert_eq!(got.redacted_options()["REGION"], "eu-west-1");

        // At rest: no value in the metadata file.
        let file = std::fs::read_to_string(dir.path().join("system/pond.json")).unwrap();
        assert!(file.contains("s3_prod") && !file.contains("very-secret-value") && !file.contains("AKIA1"), "{file}");

        let list = secrets.list();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].0.as_str(), list[0].1.as_str()), ("s3_prod", "s3"));

        assert!(matches!(secrets.create("s3_prod", "s3", s3(), false), Err(Error::Exists { .. })));
        secrets.create("s3_prod", "s3", opts(&[("REGION", "us-east-1")]), true).unwrap();
        assert_eq!(secrets.get("s3_prod").unwrap().get("REGION"), Some("us-east-1"));
        assert_eq!(secrets.list().len(), 1);

        // Survives a reopen with the same key.
        let reopened = store(dir.path(), key);
        assert_eq!(reopened.get("s3_prod").unwrap().get("REGION"), Some("us-east-1"));

        reopened.drop("S3_PROD", false).unwrap();
        assert!(matches!(reopened.get("s3_prod"), Err(Error::NotFound { .. })));
        assert!(matches!(reopened.drop("s3_prod", false), Err(Error::NotFound { .. })));
        reopened.drop("s3_prod", true).unwrap();
    }

    #[test]
    fn invalid_secrets_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = store(dir.path(), MasterKey::generate().unwrap());
        assert!(matches!(secrets.create("x", "s3", opts(&[("KEY_ID", "a")]), false), Err(Error::Invalid(_))));
        assert!(matches!(secrets.create("bad-name", "s3", s3(), false), Err(Error::InvalidName { .. })));
        assert!(matches!(secrets.create("x", "ftp", s3(), false), Err(Error::UnknownType { .. })));
        assert!(secrets.list().is_empty());
    }

    #[test]
    fn ciphertext_moved_to_another_record_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = store(dir.path(), MasterKey::generate().unwrap());
        secrets.create("a", "s3", s3(), false).unwrap();
        secrets.create("b", "s3", opts(&[("REGION", "x")]), false).unwrap();
        secrets
            .meta
            .update(|m| {
                let a = m.secrets[0].clone();
                m.secrets[1].nonce_b64 = a.nonce_b64;
                m.secrets[1].ciphertext_b64 = a.ciphertext_b64;
                // Same name, other type: the type is bound too.
                m.secrets[0].secret_type = "aws".into();
                Ok::<_, Error>(())
            })
            .unwrap();
        let err = secrets.get("b").unwrap_err();
        assert!(matches!(err, Error::Undecryptable { .. }), "{err}");
        assert!(err.to_string().contains("'b'"));
        assert!(matches!(secrets.get("a"), Err(Error::Undecryptable { .. })));
    }

    #[test]
    fn tampered_record_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = store(dir.path(), MasterKey::generate().unwrap());
        secrets.create("a", "s3", s3(), false).unwrap();
        secrets
            .meta
            .update(|m| {
                let mut bytes = BASE64.decode(&m.secrets[0].ciphertext_b64).unwrap();
                bytes[3] ^= 0x40;
                m.secrets[0].ciphertext_b64 = BASE64.encode(bytes);
                Ok::<_, Error>(())
            })
            .unwrap();
        assert!(matches!(secrets.get("a"), Err(Error::Undecryptable { .. })));
    }

    #[test]
    fn rotation_reseals_with_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = MasterKey::generate().unwrap();
        let new = MasterKey::generate().unwrap();
        let before = store(dir.path(), old.clone());
        before.create("a", "s3", s3(), false).unwrap();
        before.create("b", "postgres", opts(&[("HOST", "db"), ("PASSWORD", "pw")]), false).unwrap();
        let created_at = before.list()[0].2.clone();
        drop(before);

        let after = store(dir.path(), new.clone());
        let err = after.get("a").unwrap_err();
        assert!(matches!(err, Error::UnknownKey { .. }), "{err}");
        assert_eq!(after.rotate(&old).unwrap(), 2);
        assert_eq!(after.get("a").unwrap().get("SECRET"), Some("very-secret-value"));
        assert_eq!(after.get("b").unwrap().get("PASSWORD"), Some("pw"));
        assert_eq!(after.list()[0].2, created_at);
        assert!(after.meta.snapshot().secrets.iter().all(|r| r.key_id == new.key_id()));
        // A second start with the same variables changes nothing.
        assert_eq!(after.rotate(&old).unwrap(), 0);
        assert_eq!(after.rotate(&new).unwrap(), 0);
        // The old key no longer opens anything.
        let with_old = store(dir.path(), old);
        assert!(matches!(with_old.get("a"), Err(Error::UnknownKey { .. })));
    }

    #[test]
    fn unknown_key_error_names_the_secret_and_the_key_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let sealing = MasterKey::generate().unwrap();
        store(dir.path(), sealing.clone()).create("lake_creds", "s3", s3(), false).unwrap();
        let current = MasterKey::generate().unwrap();
        let other = store(dir.path(), current.clone());
        // A previous key that did not seal it does not help.
        assert_eq!(other.rotate(&MasterKey::generate().unwrap()).unwrap(), 0);
        let msg = other.get("lake_creds").unwrap_err().to_string();
        assert!(msg.contains("'lake_creds'") && msg.contains(sealing.key_id()) && msg.contains(current.key_id()), "{msg}");
        assert!(msg.contains("POND_MASTER_KEY_PREVIOUS"), "{msg}");
        assert!(other.all().is_err());
        assert_eq!(other.list().len(), 1);
    }
}
