//! Who is calling: password verification, bearer tokens, and the [`Identity`]
//! every protocol hands to the engine.
//!
//! This crate owns credentials. It does not own grants or the sandbox yet (the
//! security work adds them here, so every protocol keeps calling one model).
//! Users live in Pond's system metadata ([`pond_meta::MetaStore`]) with argon2id
//! hashes; bearer tokens issued at login live in memory and name an identity.
//!
//! Start with [`Authenticator`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use parking_lot::Mutex;
use pond_meta::{MetaStore, UserRecord};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of the bearer tokens Pond issues at login, so they are recognisable in
/// configuration files and secret scanners.
pub const SESSION_TOKEN_PREFIX: &str = "pond_s_";

/// Name of the bootstrap superuser.
pub const ADMIN_USER: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Deliberately does not say whether the user exists.
    #[error("invalid user name or password")]
    InvalidCredentials,
    #[error("invalid or expired bearer token")]
    InvalidToken,
    #[error("no credentials given: send Basic credentials or 'Authorization: Bearer <token>'")]
    MissingCredentials,
    #[error("malformed credentials: {0}")]
    Malformed(String),
    #[error(transparent)]
    Meta(#[from] pond_meta::Error),
    #[error("could not hash password: {0}")]
    Hash(String),
    #[error("could not write {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    pub superuser: bool,
}

struct TokenEntry {
    identity: Identity,
    expires: Instant,
}

/// Verifies passwords and bearer tokens.
pub struct Authenticator {
    meta: Arc<MetaStore>,
    tokens: Mutex<HashMap<[u8; 32], TokenEntry>>,
    /// Digests of (user, password) pairs that verified recently, so HTTP Basic on
    /// every request does not pay argon2 each time. The key is salted with a
    /// per-process random value and never leaves memory.
    verified: Mutex<HashMap<[u8; 32], (Identity, Instant)>>,
    cache_salt: [u8; 32],
    token_ttl: Duration,
}

/// Outcome of [`Authenticator::bootstrap`].
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Users already existed; nothing was done.
    Existing,
    /// `admin` was created with the password from the environment.
    FromEnvironment,
    /// `admin` was created with a generated password, written to the given file.
    Generated { password: String, file: std::path::PathBuf },
}

impl Authenticator {
    pub fn new(meta: Arc<MetaStore>, token_ttl: Duration) -> Self {
        let mut cache_salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut cache_salt);
        Self { meta, tokens: Mutex::new(HashMap::new()), verified: Mutex::new(HashMap::new()), cache_salt, token_ttl }
    }

    /// Creates the bootstrap superuser `admin` on the first start. The password
    /// comes from `admin_password` (POND_ADMIN_PASSWORD); without it one is
    /// generated and written to `<data_dir>/admin-password` with mode 0600.
    pub fn bootstrap(&self, data_dir: &Path, admin_password: Option<&str>) -> Result<Bootstrap> {
        if self.meta.snapshot().users.iter().any(|u| u.name == ADMIN_USER) {
            return Ok(Bootstrap::Existing);
        }
        let (password, generated) = match admin_password {
            Some(p) if !p.is_empty() => (p.to_string(), false),
            _ => (random_secret(18), true),
        };
        let hash = hash_password(&password)?;
        let mut outcome = Bootstrap::FromEnvironment;
        if generated {
            let file = data_dir.join("admin-password");
            write_private_file(&file, &format!("{password}\n"))?;
            outcome = Bootstrap::Generated { password, file };
        }
        self.meta.update(|m| {
            m.users.push(UserRecord {
                name: ADMIN_USER.to_string(),
                password_hash: hash,
                superuser: true,
                created_at: pond_meta::now_rfc3339(),
            });
            Ok::<_, Error>(())
        })?;
        Ok(outcome)
    }

    /// Checks a user name and password. Slow (argon2) on a cache miss: call it
    /// off the async runtime's worker threads.
    pub fn verify_password(&self, user: &str, password: &str) -> Result<Identity> {
        let key = self.cache_key(user, password);
        if let Some((id, at)) = self.verified.lock().get(&key) {
            if at.elapsed() < Duration::from_secs(300) {
                return Ok(id.clone());
            }
        }
        let snapshot = self.meta.snapshot();
        let Some(record) = snapshot.users.iter().find(|u| u.name == user) else {
            // Spend the same time as a real check so user names cannot be probed.
            let _ = verify_hash(DUMMY_HASH, password);
            return Err(Error::InvalidCredentials);
        };
        if !verify_hash(&record.password_hash, password) {
            return Err(Error::InvalidCredentials);
        }
        let identity = Identity { user: record.name.clone(), superuser: record.superuser };
        self.verified.lock().insert(key, (identity.clone(), Instant::now()));
        Ok(identity)
    }

    /// Issues a bearer token for an authenticated identity.
    pub fn issue_token(&self, identity: &Identity) -> String {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = format!("{SESSION_TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        let mut tokens = self.tokens.lock();
        let now = Instant::now();
        tokens.retain(|_, e| e.expires > now);
        tokens.insert(digest(&token), TokenEntry { identity: identity.clone(), expires: now + self.token_ttl });
        token
    }

    /// Resolves a bearer token to its identity.
    pub fn verify_token(&self, token: &str) -> Result<Identity> {
        let tokens = self.tokens.lock();
        match tokens.get(&digest(token)) {
            Some(e) if e.expires > Instant::now() => Ok(e.identity.clone()),
            _ => Err(Error::InvalidToken),
        }
    }

    /// Forgets a bearer token (logout, session close).
    pub fn revoke_token(&self, token: &str) {
        self.tokens.lock().remove(&digest(token));
    }

    /// Resolves an HTTP/gRPC `authorization` header value: `Basic …` or `Bearer …`.
    pub fn verify_authorization_header(&self, value: &str) -> Result<Identity> {
        let (scheme, rest) = value.trim().split_once(' ').ok_or_else(|| Error::Malformed("authorization header has no scheme".into()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => self.verify_token(rest.trim()),
            "basic" => {
                let (user, password) = decode_basic(rest.trim())?;
                self.verify_password(&user, &password)
            }
            other => Err(Error::Malformed(format!("unsupported authorization scheme '{other}' (use Basic or Bearer)"))),
        }
    }

    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_salt);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }
}

/// Decodes the payload of `Authorization: Basic <base64(user:password)>`.
pub fn decode_basic(payload: &str) -> Result<(String, String)> {
    // Some clients (ADBC's Go driver) omit the '=' padding.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = lenient.decode(payload).map_err(|_| Error::Malformed("Basic credentials are not valid base64".into()))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Malformed("Basic credentials are not UTF-8".into()))?;
    let (user, password) = text.split_once(':').ok_or_else(|| Error::Malformed("Basic credentials lack ':'".into()))?;
    Ok((user.to_string(), password.to_string()))
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| Error::Hash(e.to_string()))
}

fn verify_hash(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

// argon2id hash of a random string nobody knows; used to equalise timing.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A random URL-safe secret of `bytes` random bytes.
pub fn random_secret(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(MetaStore::open(&dir.path().join("system")).unwrap());
        (dir, Authenticator::new(meta, Duration::from_secs(60)))
    }

    #[test]
    fn bootstrap_from_environment_then_login() {
        let (dir, a) = auth();
        assert_eq!(a.bootstrap(dir.path(), Some("s3cret!")).unwrap(), Bootstrap::FromEnvironment);
        assert!(!dir.path().join("admin-password").exists());
        let id = a.verify_password("admin", "s3cret!").unwrap();
        assert!(id.superuser);
        assert!(matches!(a.verify_password("admin", "wrong"), Err(Error::InvalidCredentials)));
        assert!(matches!(a.verify_password("nobody", "s3cret!"), Err(Error::InvalidCredentials)));
        // A second start keeps the first password.
        assert_eq!(a.bootstrap(dir.path(), Some("other")).unwrap(), Bootstrap::Existing);
        assert!(a.verify_password("admin", "other").is_err());
    }

    #[test]
    fn bootstrap_generates_private_password_file() {
        let (dir, a) = auth();
        let Bootstrap::Generated { password, file } = a.bootstrap(dir.path(), None).unwrap() else { panic!("expected generated") };
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        a.verify_password("admin", &password).unwrap();
    }

    #[test]
    fn tokens_verify_and_revoke() {
        let (dir, a) = auth();
        a.bootstrap(dir.path(), Some("pw")).unwrap();
        let id = a.verify_password("admin", "pw").unwrap();
        let t = a.issue_token(&id);
        assert!(t.starts_with(SESSION_TOKEN_PREFIX));
        assert_eq!(a.verify_authorization_header(&format!("Bearer {t}")).unwrap(), id);
        a.revoke_token(&t);
        assert!(a.verify_token(&t).is_err());
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:pw");
        assert_eq!(a.verify_authorization_header(&format!("Basic {basic}")).unwrap(), id);
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("admin:pw");
        assert_eq!(a.verify_authorization_header(&format!("Basic {unpadded}")).unwrap(), id);
    }

    #[test]
    fn expired_token_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(MetaStore::open(dir.path()).unwrap());
        let a = Authenticator::new(meta, Duration::from_millis(1));
        let t = a.issue_token(&Identity { user: "u".into(), superuser: false });
        std::thread::sleep(Duration::from_millis(5));
        assert!(a.verify_token(&t).is_err());
    }
}
