//! Who is calling and what they may do: users and password hashes, bearer
//! tokens (login sessions, API tokens, OAuth2 access tokens, external JWTs),
//! grants ([`Policy`]), failed-login throttling and the audit trail.
//!
//! Every protocol turns what the client sent into [`Credentials`] and calls
//! [`Authenticator::authenticate`]; the engine asks the [`Policy`] before it runs
//! a statement. Nothing here is protocol-specific.
//!
//! Users, grants, API tokens and OAuth2 clients live in Pond's system metadata
//! ([`pond_meta::MetaStore`]); login session tokens and OAuth2 access tokens
//! live in memory.

mod audit;
mod jwt;
pub mod policy;
mod scram;
mod throttle;
mod tokens;

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

pub use audit::{Audit, AuditEvent};
pub use jwt::JwtConfig;
pub use policy::{GrantTarget, Policy, Privilege};
pub use scram::{ScramVerifier, SCRAM_ITERATIONS};
pub use tokens::{NewToken, TokenInfo, TokenPatch, API_TOKEN_PREFIX, OAUTH_TOKEN_PREFIX};

/// Prefix of the bearer tokens Pond issues at login, so they are recognisable in
/// configuration files and secret scanners.
pub const SESSION_TOKEN_PREFIX: &str = "pond_s_";

/// Name of the bootstrap superuser.
pub const ADMIN_USER: &str = "admin";

/// Shortest password Pond accepts for new users.
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Deliberately does not say whether the user exists.
    #[error("invalid user name or password")]
    InvalidCredentials,
    #[error("invalid, expired or revoked token")]
    InvalidToken,
    #[error("invalid JWT: {0}")]
    Jwt(String),
    #[error("no credentials given: send Basic credentials or 'Authorization: Bearer <token>'")]
    MissingCredentials,
    #[error("malformed credentials: {0}")]
    Malformed(String),
    #[error("too many failed logins from this address; try again in {} s", .0.as_secs().max(1))]
    TooManyFailures(Duration),
    #[error("invalid OAuth2 client credentials")]
    InvalidClient,
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("authentication configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Meta(#[from] pond_meta::Error),
    #[error("could not hash password: {0}")]
    Hash(String),
    #[error("could not write {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Limits a credential puts on its user's rights (API tokens, OAuth2 clients).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Empty: every database the user may use.
    pub databases: Vec<String>,
    /// Without it only reads are allowed.
    pub write: bool,
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Via {
    Password,
    Session,
    ApiToken(String),
    OAuth(String),
    Jwt,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    pub superuser: bool,
    pub scope: Option<Scope>,
    pub via: Via,
}

impl Identity {
    /// A superuser acting with full rights (not through a narrowed credential).
    pub fn effective_superuser(&self) -> bool {
        self.superuser && self.scope.is_none()
    }

    /// For tests and internal callers.
    pub fn password_user(user: &str, superuser: bool) -> Self {
        Self { user: user.to_string(), superuser, scope: None, via: Via::Password }
    }
}

/// What a client presented.
#[derive(Debug, Clone)]
pub enum Credentials {
    Password {
        user: String,
        password: String,
    },
    /// A bearer token of any kind (session, API token, OAuth2 access token, JWT).
    Token(String),
}

struct TokenEntry {
    identity: Identity,
    expires: Instant,
}

/// A user as listed by SHOW USERS.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub superuser: bool,
    pub created_at: String,
    /// A role (cannot log in).
    pub role: bool,
    pub member_of: Vec<String>,
}

/// Verifies credentials, manages users, grants and tokens.
pub struct Authenticator {
    meta: Arc<MetaStore>,
    /// In-memory bearer tokens: login sessions and OAuth2 access tokens.
    sessions: Mutex<HashMap<[u8; 32], TokenEntry>>,
    /// Digests of (user, password) pairs that verified recently, so HTTP Basic on
    /// every request does not pay argon2 each time. The key is salted with a
    /// per-process random value and never leaves memory.
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    cache_salt: [u8; 32],
    token_ttl: Duration,
    oauth_ttl: Duration,
    jwt: Option<jwt::JwtVerifier>,
    policy: Mutex<(u64, Arc<Policy>)>,
    throttle: throttle::Throttle,
    audit: Audit,
    last_used: Mutex<HashMap<String, String>>,
    last_used_flushed: Mutex<HashMap<String, Instant>>,
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
        Self {
            meta,
            sessions: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            cache_salt,
            token_ttl,
            oauth_ttl: Duration::from_secs(3600),
            jwt: None,
            policy: Mutex::new((0, Arc::new(Policy::default()))),
            throttle: throttle::Throttle::default(),
            audit: Audit::default(),
            last_used: Mutex::new(HashMap::new()),
            last_used_flushed: Mutex::new(HashMap::new()),
        }
    }

    /// Accepts external JWTs verified with the configured keys.
    pub fn with_jwt(mut self, config: &JwtConfig) -> Result<Self> {
        self.jwt = jwt::JwtVerifier::new(config)?;
        Ok(self)
    }

    /// Lifetime of OAuth2 access tokens.
    pub fn with_oauth_ttl(mut self, ttl: Duration) -> Self {
        self.oauth_ttl = ttl;
        self
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    pub fn meta(&self) -> &Arc<MetaStore> {
        &self.meta
    }

    /// The current grants and users (rebuilt after every metadata change).
    pub fn policy(&self) -> Arc<Policy> {
        let generation = self.meta.generation();
        let mut cached = self.policy.lock();
        if cached.0 != generation {
            *cached = (generation, Arc::new(Policy::from_meta(&self.meta.snapshot())));
        }
        cached.1.clone()
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
        let scram = ScramVerifier::new(&password).encode();
        let mut outcome = Bootstrap::FromEnvironment;
        if generated {
            let file = data_dir.join("admin-password");
            write_private_file(&file, &format!("{password}\n"))?;
            outcome = Bootstrap::Generated { password, file };
        }
        let added = self.meta.update(|m| {
            // Nodes sharing the metadata may start together: the first one makes admin.
            if m.users.iter().any(|u| u.name == ADMIN_USER) {
                return Ok::<_, Error>(false);
            }
            m.users.push(UserRecord {
                name: ADMIN_USER.to_string(),
                password_hash: hash,
                scram_sha256: Some(scram),
                superuser: true,
                created_at: pond_meta::now_rfc3339(),
                is_role: false,
                member_of: Vec::new(),
            });
            Ok(true)
        })?;
        if !added {
            if let Bootstrap::Generated { file, .. } = &outcome {
                let _ = std::fs::remove_file(file);
            }
            return Ok(Bootstrap::Existing);
        }
        Ok(outcome)
    }

    // ----- authentication ---------------------------------------------------------

    /// Checks what a client presented. `source` (client address) drives the
    /// failed-login throttle and the audit trail. Slow (argon2) on a password
    /// cache miss: call it off the async runtime's worker threads.
    pub fn authenticate(&self, creds: &Credentials, source: Option<&str>, protocol: &str) -> Result<Identity> {
        let key = source.unwrap_or("unknown");
        if let Err(wait) = self.throttle.check(key) {
            self.audit.record(AuditEvent::new("auth_failed", false, "refused: too many failed logins").source(source).protocol(protocol));
            return Err(Error::TooManyFailures(wait));
        }
        let (result, who, fresh) = match creds {
            Credentials::Password { password, .. } if looks_like_token(password) => {
                // InfluxDB style: the password field carries a token; the user name is ignored.
                (self.verify_bearer(password), None, false)
            }
            Credentials::Password { user, password } => {
                let cached = self.cached_password(user, password);
                let fresh = cached.is_none();
                (cached.map(Ok).unwrap_or_else(|| self.verify_password(user, password)), Some(user.clone()), fresh)
            }
            Credentials::Token(t) => (self.verify_bearer(t), None, false),
        };
        match &result {
            Ok(id) => {
                self.throttle.succeeded(key);
                if fresh {
                    self.audit.record(AuditEvent::new("login", true, "password accepted").user(&id.user).source(source).protocol(protocol));
                }
            }
            Err(e) => {
                self.throttle.failed(key);
                let mut ev = AuditEvent::new("auth_failed", false, e.to_string()).source(source).protocol(protocol);
                if let Some(u) = who {
                    ev = ev.user(u);
                }
                self.audit.record(ev);
            }
        }
        result
    }

    /// Records a successful login that produced a session (handshake, /auth/login).
    pub fn record_login(&self, identity: &Identity, source: Option<&str>, protocol: &str) {
        self.audit.record(
            AuditEvent::new("login", true, format!("session opened ({:?})", identity.via))
                .user(&identity.user)
                .source(source)
                .protocol(protocol),
        );
    }

    fn cached_password(&self, user: &str, password: &str) -> Option<Identity> {
        let key = self.cache_key(user, password);
        let (name, at) = self.verified.lock().get(&key).cloned()?;
        if at.elapsed() >= Duration::from_secs(300) {
            return None;
        }
        let policy = self.policy();
        // A renamed or dropped user, or a changed password, must not live on in the cache.
        if !policy.user_exists(&name) {
            return None;
        }
        Some(Identity { superuser: policy.is_superuser(&name), ..Identity::password_user(&name, false) })
    }

    /// Checks a user name and password (argon2).
    pub fn verify_password(&self, user: &str, password: &str) -> Result<Identity> {
        let snapshot = self.meta.snapshot();
        let Some(record) = snapshot.users.iter().find(|u| u.name == user) else {
            // Spend the same time as a real check so user names cannot be probed.
            let _ = verify_hash(DUMMY_HASH, password);
            return Err(Error::InvalidCredentials);
        };
        if !verify_hash(&record.password_hash, password) {
            return Err(Error::InvalidCredentials);
        }
        let identity = Identity::password_user(&record.name, record.superuser);
        self.verified.lock().insert(self.cache_key(user, password), (record.name.clone(), Instant::now()));
        if record.scram_sha256.is_none() {
            self.add_scram_verifier(&record.name, &record.password_hash, password);
        }
        Ok(identity)
    }

    /// A user whose password predates SCRAM verifiers gets one from the
    /// password that just verified (once; a failure only means cleartext stays
    /// in use for that user over PostgreSQL wire).
    fn add_scram_verifier(&self, user: &str, hash: &str, password: &str) {
        let scram = ScramVerifier::new(password).encode();
        let stored = self.meta.update(|m| {
            // Only if the password is still the one that was checked.
            if let Some(u) = m.users.iter_mut().find(|u| u.name == user && u.password_hash == hash && u.scram_sha256.is_none()) {
                u.scram_sha256 = Some(scram);
            }
            Ok::<_, Error>(())
        });
        if let Err(e) = stored {
            tracing::warn!(user, error = %e, "could not store the SCRAM verifier");
        }
    }

    // ----- SCRAM-SHA-256 (the exchange itself is the PostgreSQL listener's) --------

    /// The SCRAM-SHA-256 verifier to challenge `user` with. `None` when the
    /// user can log in but has no verifier yet (its password predates them:
    /// ask for the password in cleartext once). A name that is no login user
    /// gets a decoy no proof matches, the same on every attempt, so the
    /// exchange does not reveal which user names exist.
    pub fn scram_verifier(&self, user: &str) -> Option<ScramVerifier> {
        let snapshot = self.meta.snapshot();
        match snapshot.users.iter().find(|u| u.name == user && !u.is_role) {
            Some(u) => u.scram_sha256.as_deref().and_then(ScramVerifier::parse),
            None => Some(ScramVerifier::decoy(&self.cache_salt, user)),
        }
    }

    /// The failed-login throttle for a login that does not go through
    /// [`Authenticator::authenticate`] (SCRAM): call it before the exchange.
    pub fn check_throttle(&self, source: Option<&str>, protocol: &str) -> Result<()> {
        if let Err(wait) = self.throttle.check(source.unwrap_or("unknown")) {
            self.audit.record(AuditEvent::new("auth_failed", false, "refused: too many failed logins").source(source).protocol(protocol));
            return Err(Error::TooManyFailures(wait));
        }
        Ok(())
    }

    /// Ends a SCRAM exchange: `proof_ok` says whether the client's proof
    /// matched the verifier of `user`. Feeds the throttle and the audit trail
    /// like a password login and returns the identity.
    pub fn finish_scram(&self, user: &str, proof_ok: bool, source: Option<&str>, protocol: &str) -> Result<Identity> {
        let key = source.unwrap_or("unknown");
        let policy = self.policy();
        if proof_ok && policy.user_exists(user) {
            self.throttle.succeeded(key);
            self.audit.record(AuditEvent::new("login", true, "SCRAM-SHA-256 proof accepted").user(user).source(source).protocol(protocol));
            return Ok(Identity::password_user(user, policy.is_superuser(user)));
        }
        self.throttle.failed(key);
        self.audit
            .record(AuditEvent::new("auth_failed", false, "SCRAM-SHA-256 proof rejected").user(user).source(source).protocol(protocol));
        Err(Error::InvalidCredentials)
    }

    /// Resolves any bearer token: login session, OAuth2 access token, API token or JWT.
    pub fn verify_bearer(&self, token: &str) -> Result<Identity> {
        if token.starts_with(SESSION_TOKEN_PREFIX) || token.starts_with(OAUTH_TOKEN_PREFIX) {
            return self.verify_token(token);
        }
        if token.starts_with(API_TOKEN_PREFIX) {
            return self.verify_api_token(token);
        }
        if token.matches('.').count() == 2 {
            let Some(jwt) = &self.jwt else { return Err(Error::Jwt("this server accepts no JWTs (no keys configured)".into())) };
            let user = jwt.verify(token)?;
            let policy = self.policy();
            if !policy.user_exists(&user) {
                return Err(Error::Jwt(format!("the user named by the token ('{user}') is not a Pond user")));
            }
            return Ok(Identity { superuser: policy.is_superuser(&user), user, scope: None, via: Via::Jwt });
        }
        Err(Error::InvalidToken)
    }

    /// Issues a login session token for an authenticated identity.
    pub fn issue_token(&self, identity: &Identity) -> String {
        let via = match identity.via {
            Via::Password => Via::Session,
            ref other => other.clone(),
        };
        self.issue_with_prefix(&Identity { via, ..identity.clone() }, SESSION_TOKEN_PREFIX, self.token_ttl)
    }

    fn issue_with_prefix(&self, identity: &Identity, prefix: &str, ttl: Duration) -> String {
        let token = format!("{prefix}{}", random_secret(32));
        let mut tokens = self.sessions.lock();
        let now = Instant::now();
        tokens.retain(|_, e| e.expires > now);
        tokens.insert(digest(&token), TokenEntry { identity: identity.clone(), expires: now + ttl });
        token
    }

    /// Resolves an in-memory token (login session or OAuth2 access token).
    pub fn verify_token(&self, token: &str) -> Result<Identity> {
        let tokens = self.sessions.lock();
        match tokens.get(&digest(token)) {
            Some(e) if e.expires > Instant::now() => Ok(e.identity.clone()),
            _ => Err(Error::InvalidToken),
        }
    }

    /// Forgets a session token (logout, session close).
    pub fn revoke_token(&self, token: &str) {
        self.sessions.lock().remove(&digest(token));
    }

    /// Resolves an `authorization` header value: `Basic …`, `Bearer …` or `Token …`.
    pub fn verify_authorization_header(&self, value: &str, source: Option<&str>, protocol: &str) -> Result<Identity> {
        self.authenticate(&parse_authorization(value)?, source, protocol)
    }

    /// Re-checks an identity before a statement: the user must still exist (and
    /// its superuser flag may have changed), its token must still be valid.
    pub fn revalidate(&self, identity: &Identity) -> Result<Identity> {
        let policy = self.policy();
        if !policy.user_exists(&identity.user) {
            return Err(Error::PermissionDenied(format!("user '{}' no longer exists", identity.user)));
        }
        if let Via::ApiToken(id) = &identity.via {
            match policy.tokens_by_id.get(id) {
                Some(t) if tokens::token_active(t) => {}
                _ => return Err(Error::InvalidToken),
            }
        }
        let superuser = policy.is_superuser(&identity.user);
        if superuser == identity.superuser {
            return Ok(identity.clone());
        }
        Ok(Identity { superuser, ..identity.clone() })
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

    // ----- users and grants (superusers; a user may change their own password) ----------

    fn require_superuser(&self, caller: &Identity, what: &str) -> Result<()> {
        if caller.effective_superuser() && self.policy().is_superuser(&caller.user) {
            Ok(())
        } else {
            let e = Error::PermissionDenied(format!("{what} requires a superuser"));
            self.audit.record(AuditEvent::new("denied", false, e.to_string()).user(&caller.user));
            Err(e)
        }
    }

    fn changed(&self, caller: &Identity, kind: &'static str, detail: String) {
        self.audit.record(AuditEvent::new(kind, true, detail).user(&caller.user));
    }

    pub fn create_user(&self, caller: &Identity, name: &str, password: &str, superuser: bool) -> Result<()> {
        self.require_superuser(caller, "CREATE USER")?;
        let name = validate_user_name(name)?;
        check_password(password)?;
        let hash = hash_password(password)?;
        let scram = ScramVerifier::new(password).encode();
        self.meta.update(|m| {
            if m.users.iter().any(|u| u.name == name) {
                return Err(Error::AlreadyExists(format!("user '{name}'")));
            }
            m.users.push(UserRecord {
                name: name.clone(),
                password_hash: hash,
                scram_sha256: Some(scram),
                superuser,
                created_at: pond_meta::now_rfc3339(),
                is_role: false,
                member_of: Vec::new(),
            });
            Ok(())
        })?;
        self.changed(caller, "user_change", format!("created user {name}{}", if superuser { " (superuser)" } else { "" }));
        Ok(())
    }

    pub fn alter_password(&self, caller: &Identity, name: &str, password: &str) -> Result<()> {
        if caller.user != name || caller.scope.is_some() {
            self.require_superuser(caller, "changing another user's password")?;
        }
        check_password(password)?;
        let hash = hash_password(password)?;
        let scram = ScramVerifier::new(password).encode();
        self.meta.update(|m| {
            let u = m.users.iter_mut().find(|u| u.name == name).ok_or_else(|| Error::NotFound(format!("user '{name}'")))?;
            u.password_hash = hash;
            u.scram_sha256 = Some(scram);
            Ok::<_, Error>(())
        })?;
        self.verified.lock().clear();
        self.changed(caller, "user_change", format!("changed the password of {name}"));
        Ok(())
    }

    pub fn rename_user(&self, caller: &Identity, from: &str, to: &str) -> Result<()> {
        self.require_superuser(caller, "ALTER USER … RENAME")?;
        let to = validate_user_name(to)?;
        self.meta.update(|m| {
            if m.users.iter().any(|u| u.name == to) {
                return Err(Error::AlreadyExists(format!("user '{to}'")));
            }
            let u = m.users.iter_mut().find(|u| u.name == from).ok_or_else(|| Error::NotFound(format!("user '{from}'")))?;
            u.name = to.clone();
            for g in m.grants.iter_mut().filter(|g| g.user == from) {
                g.user = to.clone();
            }
            for t in m.tokens.iter_mut().filter(|t| t.owner == from) {
                t.owner = to.clone();
            }
            for c in m.oauth_clients.iter_mut().filter(|c| c.user == from) {
                c.user = to.clone();
            }
            for u in m.users.iter_mut() {
                for r in u.member_of.iter_mut().filter(|r| r.as_str() == from) {
                    *r = to.clone();
                }
            }
            Ok(())
        })?;
        // Sessions of the old name end: they would otherwise act under a name that is gone.
        self.sessions.lock().retain(|_, e| e.identity.user != from);
        self.verified.lock().clear();
        self.changed(caller, "user_change", format!("renamed user {from} to {to}"));
        Ok(())
    }

    pub fn set_superuser(&self, caller: &Identity, name: &str, superuser: bool) -> Result<()> {
        self.require_superuser(caller, "ALTER USER … SUPERUSER")?;
        self.meta.update(|m| {
            if !superuser && m.users.iter().filter(|u| u.superuser && u.name != name).count() == 0 {
                return Err(Error::InvalidRequest("cannot remove the last superuser".into()));
            }
            let u = m.users.iter_mut().find(|u| u.name == name).ok_or_else(|| Error::NotFound(format!("user '{name}'")))?;
            u.superuser = superuser;
            Ok::<_, Error>(())
        })?;
        self.changed(caller, "user_change", format!("{} superuser for {name}", if superuser { "granted" } else { "removed" }));
        Ok(())
    }

    pub fn drop_user(&self, caller: &Identity, name: &str, if_exists: bool) -> Result<bool> {
        self.require_superuser(caller, "DROP USER")?;
        if caller.user == name {
            return Err(Error::InvalidRequest("a user cannot drop themselves".into()));
        }
        let dropped = self.meta.update(|m| {
            if !m.users.iter().any(|u| u.name == name) {
                return if if_exists { Ok(false) } else { Err(Error::NotFound(format!("user '{name}'"))) };
            }
            if m.users.iter().filter(|u| u.superuser && u.name != name).count() == 0 {
                return Err(Error::InvalidRequest("cannot drop the last superuser".into()));
            }
            m.users.retain(|u| u.name != name);
            m.grants.retain(|g| g.user != name);
            m.tokens.retain(|t| t.owner != name);
            m.oauth_clients.retain(|c| c.user != name);
            for u in m.users.iter_mut() {
                u.member_of.retain(|r| r != name);
            }
            Ok(true)
        })?;
        if dropped {
            self.sessions.lock().retain(|_, e| e.identity.user != name);
            self.verified.lock().clear();
            self.changed(caller, "user_change", format!("dropped user {name}"));
        }
        Ok(dropped)
    }

    pub fn list_users(&self, caller: &Identity) -> Result<Vec<UserInfo>> {
        self.require_superuser(caller, "SHOW USERS")?;
        Ok(self
            .meta
            .snapshot()
            .users
            .into_iter()
            .map(|u| UserInfo { name: u.name, superuser: u.superuser, created_at: u.created_at, role: u.is_role, member_of: u.member_of })
            .collect())
    }

    /// CREATE ROLE: a principal that holds grants and cannot log in.
    pub fn create_role(&self, caller: &Identity, name: &str) -> Result<()> {
        self.require_superuser(caller, "CREATE ROLE")?;
        let name = validate_user_name(name)?;
        self.meta.update(|m| {
            if m.users.iter().any(|u| u.name == name) {
                return Err(Error::AlreadyExists(format!("user or role '{name}'")));
            }
            m.users.push(UserRecord {
                name: name.clone(),
                password_hash: String::new(),
                scram_sha256: None,
                superuser: false,
                created_at: pond_meta::now_rfc3339(),
                is_role: true,
                member_of: Vec::new(),
            });
            Ok(())
        })?;
        self.changed(caller, "user_change", format!("created role {name}"));
        Ok(())
    }

    /// DROP ROLE: its grants go, and members lose it.
    pub fn drop_role(&self, caller: &Identity, name: &str, if_exists: bool) -> Result<bool> {
        self.require_superuser(caller, "DROP ROLE")?;
        let dropped = self.meta.update(|m| {
            match m.users.iter().find(|u| u.name == name) {
                Some(u) if u.is_role => {}
                Some(_) => return Err(Error::InvalidRequest(format!("'{name}' is a user, not a role (DROP USER)"))),
                None if if_exists => return Ok(false),
                None => return Err(Error::NotFound(format!("role '{name}'"))),
            }
            m.users.retain(|u| u.name != name);
            m.grants.retain(|g| g.user != name);
            for u in m.users.iter_mut() {
                u.member_of.retain(|r| r != name);
            }
            Ok(true)
        })?;
        if dropped {
            self.changed(caller, "user_change", format!("dropped role {name}"));
        }
        Ok(dropped)
    }

    /// GRANT role TO member / REVOKE role FROM member.
    pub fn grant_role(&self, caller: &Identity, role: &str, member: &str, revoke: bool) -> Result<()> {
        self.require_superuser(caller, if revoke { "REVOKE role" } else { "GRANT role" })?;
        self.meta.update(|m| {
            if !m.users.iter().any(|u| u.name == role && u.is_role) {
                return Err(Error::NotFound(format!("role '{role}'")));
            }
            let u = m.users.iter_mut().find(|u| u.name == member).ok_or_else(|| Error::NotFound(format!("user '{member}'")))?;
            u.member_of.retain(|r| r != role);
            if !revoke {
                u.member_of.push(role.to_string());
            }
            Ok(())
        })?;
        let what = if revoke { format!("revoked role {role} from {member}") } else { format!("granted role {role} to {member}") };
        self.changed(caller, "grant_change", what);
        Ok(())
    }

    /// GRANT; `target` names must already be resolved (lower-cased, existing).
    pub fn grant(&self, caller: &Identity, user: &str, target: &GrantTarget, privileges: &[String]) -> Result<()> {
        self.require_superuser(caller, "GRANT")?;
        let privileges = policy::normalise_privileges(target, privileges)?;
        self.meta.update(|m| {
            if !m.users.iter().any(|u| u.name == user) {
                return Err(Error::NotFound(format!("user '{user}'")));
            }
            policy::add_grant(m, user, target, &privileges);
            Ok(())
        })?;
        self.changed(caller, "grant_change", format!("granted {} on {target} to {user}", privileges.join(", ")));
        Ok(())
    }

    pub fn revoke(&self, caller: &Identity, user: &str, target: &GrantTarget, privileges: &[String]) -> Result<bool> {
        self.require_superuser(caller, "REVOKE")?;
        let privileges = policy::normalise_privileges(target, privileges)?;
        let changed = self.meta.update(|m| {
            if !m.users.iter().any(|u| u.name == user) {
                return Err(Error::NotFound(format!("user '{user}'")));
            }
            Ok(policy::remove_grant(m, user, target, &privileges))
        })?;
        self.changed(caller, "grant_change", format!("revoked {} on {target} from {user}", privileges.join(", ")));
        Ok(changed)
    }

    /// SHOW GRANTS: superusers see anyone's, others only their own.
    pub fn show_grants(&self, caller: &Identity, user: Option<&str>) -> Result<Vec<pond_meta::GrantRecord>> {
        let user = match user {
            Some(u) if u != caller.user => {
                self.require_superuser(caller, "SHOW GRANTS FOR another user")?;
                Some(u)
            }
            Some(u) => Some(u),
            None if caller.effective_superuser() => None,
            None => Some(caller.user.as_str()),
        };
        Ok(self.policy().grants(user))
    }
}

fn looks_like_token(s: &str) -> bool {
    s.starts_with(API_TOKEN_PREFIX)
        || s.starts_with(SESSION_TOKEN_PREFIX)
        || s.starts_with(OAUTH_TOKEN_PREFIX)
        || (s.matches('.').count() == 2 && s.starts_with("ey"))
}

/// Parses `Basic …`, `Bearer …` or `Token …` (InfluxDB) header values.
pub fn parse_authorization(value: &str) -> Result<Credentials> {
    let (scheme, rest) = value.trim().split_once(' ').ok_or_else(|| Error::Malformed("authorization header has no scheme".into()))?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => Ok(Credentials::Token(rest.trim().to_string())),
        "basic" => {
            let (user, password) = decode_basic(rest.trim())?;
            Ok(Credentials::Password { user, password })
        }
        other => Err(Error::Malformed(format!("unsupported authorization scheme '{other}' (use Basic, Bearer or Token)"))),
    }
}

/// User names: 1–63 characters of letters, digits, `_`, `-`, `.`, `@`.
pub fn validate_user_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::InvalidRequest(format!("invalid user name '{name}': use 1-63 letters, digits, '_', '-', '.', '@'")))
    }
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::InvalidRequest(format!("password too short: at least {MIN_PASSWORD_LEN} characters")));
    }
    if looks_like_token(password) {
        return Err(Error::InvalidRequest("a password may not look like a Pond token".into()));
    }
    Ok(())
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

pub(crate) fn verify_hash(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

// argon2id hash of a random string nobody knows; used to equalise timing.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

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
    fn scram_verifiers_follow_every_password_change() {
        let (dir, a) = auth();
        a.bootstrap(dir.path(), Some("admin-pw-123")).unwrap();
        assert!(a.scram_verifier("admin").unwrap().matches("admin-pw-123"));
        let admin = a.verify_password("admin", "admin-pw-123").unwrap();
        a.create_user(&admin, "carol", "carol-pw-123", false).unwrap();
        assert!(a.scram_verifier("carol").unwrap().matches("carol-pw-123"));
        a.alter_password(&admin, "carol", "carol-pw-456").unwrap();
        let v = a.scram_verifier("carol").unwrap();
        assert!(v.matches("carol-pw-456") && !v.matches("carol-pw-123"));
        // Stored in PostgreSQL's form; the password itself appears nowhere in pond.json.
        let json = std::fs::read_to_string(dir.path().join("system").join("pond.json")).unwrap();
        assert!(json.contains("SCRAM-SHA-256$4096:") && !json.contains("carol-pw-456"));
        // A user from before verifiers gets one at the next password login.
        a.meta()
            .update(|m| {
                m.users.iter_mut().for_each(|u| u.scram_sha256 = None);
                Ok::<_, Error>(())
            })
            .unwrap();
        assert!(a.scram_verifier("carol").is_none());
        a.verify_password("carol", "carol-pw-456").unwrap();
        assert!(a.scram_verifier("carol").unwrap().matches("carol-pw-456"));
        // Unknown names and roles get a stable decoy.
        a.create_role(&admin, "readers").unwrap();
        assert_eq!(a.scram_verifier("nobody"), a.scram_verifier("nobody"));
        assert!(a.scram_verifier("readers").is_some());
        // The end of an exchange feeds the audit trail and the throttle.
        assert!(a.finish_scram("carol", true, Some("10.0.0.9"), "test").unwrap().user == "carol");
        assert!(matches!(a.finish_scram("nobody", true, Some("10.0.0.9"), "test"), Err(Error::InvalidCredentials)));
        for _ in 0..6 {
            let _ = a.finish_scram("carol", false, Some("10.0.0.8"), "test");
        }
        assert!(matches!(a.check_throttle(Some("10.0.0.8"), "test"), Err(Error::TooManyFailures(_))));
        assert!(a.check_throttle(Some("10.0.0.9"), "test").is_ok());
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
    fn session_tokens_verify_and_revoke() {
        let (dir, a) = auth();
        a.bootstrap(dir.path(), Some("pw")).unwrap();
        let id = a.verify_password("admin", "pw").unwrap();
        let t = a.issue_token(&id);
        assert!(t.starts_with(SESSION_TOKEN_PREFIX));
        let via_token = a.verify_authorization_header(&format!("Bearer {t}"), None, "test").unwrap();
        assert_eq!((via_token.user.as_str(), via_token.via), ("admin", Via::Session));
        a.revoke_token(&t);
        assert!(a.verify_token(&t).is_err());
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:pw");
        assert_eq!(a.verify_authorization_header(&format!("Basic {basic}"), None, "test").unwrap(), id);
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("admin:pw");
        assert_eq!(a.verify_authorization_header(&format!("Basic {unpadded}"), None, "test").unwrap(), id);
    }

    #[test]
    fn expired_token_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(MetaStore::open(dir.path()).unwrap());
        let a = Authenticator::new(meta, Duration::from_millis(1));
        let t = a.issue_token(&Identity::password_user("u", false));
        std::thread::sleep(Duration::from_millis(5));
        assert!(a.verify_token(&t).is_err());
    }

    fn with_user(a: &Authenticator, dir: &Path) -> Identity {
        a.bootstrap(dir, Some("admin-pw-123")).unwrap();
        let admin = a.verify_password("admin", "admin-pw-123").unwrap();
        a.create_user(&admin, "alice", "alice-pw-123", false).unwrap();
        admin
    }

    #[test]
    fn users_are_managed_by_superusers_only() {
        let (dir, a) = auth();
        let admin = with_user(&a, dir.path());
        let alice = a.verify_password("alice", "alice-pw-123").unwrap();
        assert!(!alice.superuser);
        assert!(matches!(a.create_user(&alice, "bob", "bob-pw-1234", false), Err(Error::PermissionDenied(_))));
        assert!(matches!(a.create_user(&admin, "alice", "x-pw-12345", false), Err(Error::AlreadyExists(_))));
        assert!(a.create_user(&admin, "bob", "short", false).unwrap_err().to_string().contains("at least 8"));
        assert!(a.create_user(&admin, "bad name", "long-enough", false).is_err());
        // Alice may change her own password, not admin's.
        a.alter_password(&alice, "alice", "alice-new-pw").unwrap();
        assert!(a.verify_password("alice", "alice-pw-123").is_err());
        assert!(matches!(a.alter_password(&alice, "admin", "hijacked-pw"), Err(Error::PermissionDenied(_))));
        // A cached Basic login does not survive a rename.
        let creds = Credentials::Password { user: "alice".into(), password: "alice-new-pw".into() };
        a.authenticate(&creds, None, "test").unwrap();
        a.rename_user(&admin, "alice", "alicia").unwrap();
        assert!(a.authenticate(&creds, None, "test").is_err());
        assert!(a.revalidate(&alice).is_err(), "the old identity is gone");
        assert!(a.drop_user(&admin, "admin", false).is_err(), "no self-drop");
        assert!(a.drop_user(&admin, "alicia", false).unwrap());
        assert!(!a.drop_user(&admin, "alicia", true).unwrap());
        assert_eq!(a.list_users(&admin).unwrap().len(), 1);
        let events: Vec<_> = a.audit().take_receiver().unwrap().try_iter().map(|e| e.kind).collect();
        assert!(events.contains(&"user_change") && events.contains(&"auth_failed"), "{events:?}");
    }

    #[test]
    fn api_tokens_scope_expire_rotate_and_revoke() {
        let (dir, a) = auth();
        let admin = with_user(&a, dir.path());
        let alice = a.verify_password("alice", "alice-pw-123").unwrap();
        let req = NewToken { name: "ci".into(), databases: vec!["Sales".into()], permission: Some("write".into()), ..Default::default() };
        let (info, secret) = a.create_api_token(&alice, req).unwrap();
        assert!(secret.starts_with(API_TOKEN_PREFIX) && info.hint.len() < secret.len());
        assert!(!serde_json::to_string(&a.list_api_tokens(&alice)).unwrap().contains(&secret), "secret is never listed");
        let id = a.authenticate(&Credentials::Token(secret.clone()), None, "test").unwrap();
        assert_eq!(id.scope, Some(Scope { databases: vec!["sales".into()], write: true }));
        // InfluxDB style: token as the Basic password, any user name.
        let basic = Credentials::Password { user: "whatever".into(), password: secret.clone() };
        assert_eq!(a.authenticate(&basic, None, "test").unwrap().user, "alice");
        // Rotation: the old secret stops working, the new one works.
        let (_, rotated) = a.rotate_api_token(&alice, &info.id).unwrap();
        assert!(a.verify_bearer(&secret).is_err());
        let id2 = a.verify_bearer(&rotated).unwrap();
        a.revoke_api_token(&admin, &info.id).unwrap();
        assert!(a.verify_bearer(&rotated).is_err());
        assert!(a.revalidate(&id2).is_err(), "a session opened with a revoked token stops");
        assert!(a.rotate_api_token(&alice, &info.id).is_err());
        // Alice cannot see or touch admin's tokens; admin tokens need a superuser owner.
        let (admin_tok, _) = a.create_api_token(&admin, NewToken { name: "adm".into(), ..Default::default() }).unwrap();
        assert!(a.get_api_token(&alice, &admin_tok.id).is_err());
        assert!(a.create_api_token(&alice, NewToken { name: "x".into(), permission: Some("admin".into()), ..Default::default() }).is_err());
        // Expiry.
        let (short, s) = a.create_api_token(&alice, NewToken { name: "short".into(), expires_in: Some(1), ..Default::default() }).unwrap();
        assert!(a.verify_bearer(&s).is_ok());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(a.verify_bearer(&s), Err(Error::InvalidToken)));
        assert!(!a.get_api_token(&alice, &short.id).unwrap().active);
        a.delete_api_token(&alice, &short.id).unwrap();
        assert!(a.get_api_token(&alice, &short.id).is_err());
    }

    #[test]
    fn failed_logins_are_throttled_per_source() {
        let (dir, a) = auth();
        with_user(&a, dir.path());
        let bad = Credentials::Password { user: "alice".into(), password: "wrong-password".into() };
        for _ in 0..throttle::FREE_FAILURES {
            assert!(matches!(a.authenticate(&bad, Some("10.0.0.1"), "test"), Err(Error::InvalidCredentials)));
        }
        let good = Credentials::Password { user: "alice".into(), password: "alice-pw-123".into() };
        assert!(matches!(a.authenticate(&good, Some("10.0.0.1"), "test"), Err(Error::TooManyFailures(_))));
        assert!(a.authenticate(&good, Some("10.0.0.2"), "test").is_ok());
    }

    #[test]
    fn oauth_client_credentials() {
        let (dir, a) = auth();
        let admin = with_user(&a, dir.path());
        let (client, secret) = a.create_oauth_client(&admin, "alice", vec!["sales".into()], "write").unwrap();
        assert!(matches!(a.oauth_client_credentials(&client, "wrong", None, None), Err(Error::InvalidClient)));
        assert!(matches!(a.oauth_client_credentials("nobody", &secret, None, None), Err(Error::InvalidClient)));
        let (token, ttl, scope) = a.oauth_client_credentials(&client, &secret, Some("read database:sales"), None).unwrap();
        assert_eq!((ttl, scope.as_str()), (Duration::from_secs(3600), "read database:sales"));
        let id = a.verify_bearer(&token).unwrap();
        assert_eq!(id.scope, Some(Scope { databases: vec!["sales".into()], write: false }));
        assert!(matches!(a.oauth_client_credentials(&client, &secret, Some("database:other"), None), Err(Error::InvalidScope(_))));
        a.delete_oauth_client(&admin, &client).unwrap();
        assert!(a.verify_bearer(&token).is_err(), "removing the client ends its tokens");
    }

    fn jwt_auth(config: JwtConfig) -> (tempfile::TempDir, Authenticator) {
        let (dir, a) = auth();
        let a = a.with_jwt(&config).unwrap();
        with_user(&a, dir.path());
        (dir, a)
    }

    fn claims(iss: &str, aud: &str, exp_offset: i64) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({"sub": "alice", "iss": iss, "aud": aud, "exp": now + exp_offset, "nbf": now - 10})
    }

    #[test]
    fn jwt_hs256_rs256_es256_and_claim_checks() {
        use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let base = JwtConfig { issuer: Some("https://idp".into()), audience: Some("pond".into()), ..Default::default() };
        let rsa_pub = include_str!("../testdata/rsa-public.pem").to_string();
        let ec_pub = include_str!("../testdata/ec-public.pem").to_string();
        let (_d, a) = jwt_auth(JwtConfig { hmac_secret: Some(secret.clone()), public_keys_pem: vec![rsa_pub, ec_pub], ..base });
        let hs = EncodingKey::from_secret(&secret);
        let rs = EncodingKey::from_rsa_pem(include_bytes!("../testdata/rsa-private.pem")).unwrap();
        let es = EncodingKey::from_ec_pem(include_bytes!("../testdata/ec-private.pem")).unwrap();
        for (alg, key) in [(Algorithm::HS256, &hs), (Algorithm::RS256, &rs), (Algorithm::ES256, &es)] {
            let t = encode(&Header::new(alg), &claims("https://idp", "pond", 600), key).unwrap();
            let id = a.verify_bearer(&t).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!((id.user.as_str(), id.via), ("alice", Via::Jwt));
        }
        let check = |c: serde_json::Value, want: &str| {
            let t = encode(&Header::new(Algorithm::HS256), &c, &hs).unwrap();
            let e = a.verify_bearer(&t).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should mention {want}");
        };
        check(claims("https://evil", "pond", 600), "issuer");
        check(claims("https://idp", "other", 600), "audience");
        check(claims("https://idp", "pond", -600), "expired");
        let mut future = claims("https://idp", "pond", 6000);
        future["nbf"] = serde_json::json!(chrono::Utc::now().timestamp() + 3000);
        check(future, "not valid yet");
        let mut stranger = claims("https://idp", "pond", 600);
        stranger["sub"] = serde_json::json!("mallory");
        check(stranger, "not a Pond user");
        // Signed with another key.
        let other = encode(
            &Header::new(Algorithm::HS256),
            &claims("https://idp", "pond", 600),
            &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        )
        .unwrap();
        assert!(a.verify_bearer(&other).unwrap_err().to_string().contains("signature"));
    }

    #[test]
    fn jwt_from_jwks_with_custom_claim() {
        use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
        let secret = b"jwks-secret-jwks-secret-jwks-sec";
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let jwks = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": k}]}).to_string();
        let (_d, a) = jwt_auth(JwtConfig { jwks_json: Some(jwks), user_claim: Some("preferred_username".into()), ..Default::default() });
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let c = serde_json::json!({"preferred_username": "alice", "exp": chrono::Utc::now().timestamp() + 60});
        let t = encode(&header, &c, &EncodingKey::from_secret(secret)).unwrap();
        assert_eq!(a.verify_bearer(&t).unwrap().user, "alice");
        header.kid = Some("unknown".into());
        let t = encode(&header, &c, &EncodingKey::from_secret(secret)).unwrap();
        assert!(a.verify_bearer(&t).is_err());
    }
}
