//! Pond secrets: named credentials that superusers create with SQL
//! (`CREATE SECRET s3_prod (TYPE s3, KEY_ID '…', SECRET '…')`) and that Pond's
//! external catalogs, the PostgreSQL link and the storage layer use to reach
//! other systems.
//!
//! This crate owns:
//! - the one place where credentials are validated and normalised
//!   ([`normalize`]): which secret types exist, which options each accepts, how
//!   option names are spelled (upper case) and which values are sensitive
//!   ([`is_sensitive`]);
//! - sealing at rest: every secret's options are encrypted with AES-256-GCM under
//!   the instance's [`MasterKey`] and stored as a [`pond_meta::SecretRecord`] in
//!   Pond's metadata; the name and type are bound to the ciphertext (additional
//!   authenticated data), so a ciphertext copied to another record does not open;
//! - [`SecretStore`]: create, drop, list (names and types only) and read secrets,
//!   and re-seal them after a key rotation;
//! - the SQL surface as pure functions the engine's statement classifier calls:
//!   [`parse_create_secret`], [`parse_drop_secret`], [`is_show_secrets`], and
//!   [`redact_sql`] for logging such statements;
//! - redaction of secret values in any text Pond shows or logs ([`redact`]).
//!
//! It does not decide who may manage secrets (the engine allows superusers only)
//! and does not talk to DuckDB or to the systems the credentials are for.
//!
//! # The master key
//! [`MasterKey::load`] takes the key from `POND_MASTER_KEY` (32 bytes written as
//! 64 hex characters or as base64) or else from `<data-dir>/system/master.key`,
//! which is created with mode 0600 at first start. Pond refuses to start when
//! that file is readable or writable by group or others. Every record carries the
//! [`MasterKey::key_id`] of the key that sealed it.
//!
//! # Rotating the master key
//! 1. Generate a new key, e.g. `openssl rand -hex 32`.
//! 2. Start Pond once with the new key in `POND_MASTER_KEY` and the old one in
//!    `POND_MASTER_KEY_PREVIOUS` (for a key-file instance, the old key is the
//!    content of `<data-dir>/system/master.key`). At start the caller runs
//!    [`SecretStore::rotate`], which re-seals every record sealed by the previous
//!    key with the new one, in one atomic metadata write.
//! 3. Remove `POND_MASTER_KEY_PREVIOUS`; keep `POND_MASTER_KEY`.
//!
//! A record sealed by a key that is neither current nor previous stays as it is
//! and reading it fails with [`Error::UnknownKey`], which names the secret and the
//! key id it needs.
//!
//! Start with [`SecretStore`], [`normalize`] and [`parse_create_secret`].

mod key;
mod normalize;
mod parse;
mod redact;
mod store;

pub use key::{MasterKey, MASTER_KEY_ENV, MASTER_KEY_FILE, MASTER_KEY_PREVIOUS_ENV};
pub use normalize::{allowed_options, is_sensitive, normalize, normalize_name, normalize_type, SECRET_TYPES};
pub use parse::{is_show_secrets, parse_create_secret, parse_drop_secret, redact_sql, CreateSecret};
pub use redact::{redact, redact_connection_string, REDACTED};
pub use store::{Secret, SecretStore};

use std::path::PathBuf;

/// Errors of the secrets crate. No message ever contains a secret value or key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `CREATE SECRET` / `DROP SECRET` statement that does not parse.
    #[error("{0}")]
    Syntax(String),
    #[error("invalid secret name '{name}': use letters, digits and _, starting with a letter or _")]
    InvalidName { name: String },
    #[error("unknown secret type '{secret_type}' (secret types: {})", SECRET_TYPES.join(", "))]
    UnknownType { secret_type: String },
    #[error("unknown option {option} for a secret of type {secret_type} (allowed: {})", allowed_options(secret_type).unwrap_or_default().join(", "))]
    UnknownOption { secret_type: String, option: String },
    /// An option value or combination that the secret type does not accept.
    #[error("{0}")]
    Invalid(String),
    #[error("secret '{name}' already exists (CREATE OR REPLACE SECRET replaces it; DROP SECRET {name} removes it)")]
    Exists { name: String },
    #[error("secret '{name}' does not exist (SHOW SECRETS lists them)")]
    NotFound { name: String },
    #[error(
        "secret '{name}' was sealed with master key {needed}, but the current master key is {current}: \
         start Pond with that key in {MASTER_KEY_ENV}, or with it in {MASTER_KEY_PREVIOUS_ENV} and the new key \
         in {MASTER_KEY_ENV} to re-seal, or drop and recreate the secret"
    )]
    UnknownKey { name: String, needed: String, current: String },
    #[error(
        "secret '{name}' does not decrypt with master key {key_id}, which sealed it: its record in the metadata \
         was altered or copied from another secret; drop and recreate it"
    )]
    Undecryptable { name: String, key_id: String },
    /// The text of a master key is not 32 bytes in hex or base64. Never includes the text.
    #[error(
        "malformed master key in {origin}: {reason} (expected 32 bytes as 64 hex characters or base64, e.g. from `openssl rand -hex 32`)"
    )]
    MalformedKey { origin: String, reason: String },
    #[error("master key file {path} is readable or writable by group or others (mode {mode:o}); fix it with: chmod 600 {path}")]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("master key file {path}: {source}")]
    KeyFile { path: PathBuf, source: std::io::Error },
    /// The operating system's random generator or the cipher failed.
    #[error("cryptography failure: {0}")]
    Crypto(&'static str),
    #[error(transparent)]
    Meta(#[from] pond_meta::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
