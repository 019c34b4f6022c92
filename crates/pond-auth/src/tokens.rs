//! API tokens (long-lived, stored hashed, managed by their owners and by
//! superusers) and OAuth2 clients (client-credentials flow issuing short-lived
//! bearer tokens).

use std::time::Duration;

use pond_meta::{OAuthClientRecord, TokenRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{hash_password, random_secret, verify_hash, AuditEvent, Authenticator, Error, Identity, Result, Scope, Via};

/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "pond_t_";
/// Prefix of access tokens issued by `POST /oauth2/token`.
pub const OAUTH_TOKEN_PREFIX: &str = "pond_o_";

/// What a new token may do.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewToken {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Owner; only superusers may name someone else. Default: the caller.
    #[serde(default)]
    pub user: Option<String>,
    /// Empty: every database the owner may use.
    #[serde(default)]
    pub databases: Vec<String>,
    /// `read`, `write` or `admin` (superuser owners only). Default `read`.
    #[serde(default)]
    pub permission: Option<String>,
    /// Arc-style list; the strongest entry wins.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Lifetime in seconds; none = no expiry.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Fields a PATCH may change.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub databases: Option<Vec<String>>,
    pub permission: Option<String>,
    pub expires_in: Option<u64>,
}

/// A token as listed (never the secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub description: String,
    pub user: String,
    pub hint: String,
    pub databases: Vec<String>,
    pub permission: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked: bool,
    pub active: bool,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn permission_of(single: Option<&str>, list: &[String]) -> Result<String> {
    let mut best = single.map(|s| s.to_ascii_lowercase());
    for p in list {
        let p = p.to_ascii_lowercase();
        let rank = |x: &str| match x {
            "read" => 1,
            "write" | "delete" => 2,
            "admin" => 3,
            _ => 0,
        };
        if best.as_deref().is_none_or(|b| rank(&p) > rank(b)) {
            best = Some(if p == "delete" { "write".into() } else { p });
        }
    }
    let p = best.unwrap_or_else(|| "read".into());
    match p.as_str() {
        "read" | "write" | "admin" => Ok(p),
        other => Err(Error::InvalidRequest(format!("unknown token permission '{other}' (use read, write or admin)"))),
    }
}

fn expires_at(seconds: Option<u64>) -> Result<Option<String>> {
    match seconds {
        None => Ok(None),
        Some(0) => Err(Error::InvalidRequest("expires_in must be positive".into())),
        Some(s) => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(s.min(100 * 365 * 86_400) as i64);
            Ok(Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        }
    }
}

fn is_expired(expires_at: &Option<String>) -> bool {
    match expires_at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t).map(|t| t <= chrono::Utc::now()).unwrap_or(true),
        None => false,
    }
}

pub(crate) fn token_active(t: &TokenRecord) -> bool {
    t.revoked_at.is_none() && !is_expired(&t.expires_at)
}

fn info(t: &TokenRecord, last_used: Option<String>) -> TokenInfo {
    TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        description: t.description.clone(),
        user: t.owner.clone(),
        hint: t.hint.clone(),
        databases: t.databases.clone(),
        permission: t.permission.clone(),
        created_at: t.created_at.clone(),
        expires_at: t.expires_at.clone(),
        last_used_at: last_used.or_else(|| t.last_used_at.clone()),
        revoked: t.revoked_at.is_some(),
        active: token_active(t),
    }
}

fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", random_secret(32))
}

impl Authenticator {
    /// Creates an API token; returns its description and the secret (shown once).
    pub fn create_api_token(&self, caller: &Identity, req: NewToken) -> Result<(TokenInfo, String)> {
        let owner = req.user.clone().unwrap_or_else(|| caller.user.clone());
        if owner != caller.user && !caller.effective_superuser() {
            return Err(Error::PermissionDenied("only superusers create tokens for other users".into()));
        }
        if req.name.trim().is_empty() {
            return Err(Error::InvalidRequest("a token needs a name".into()));
        }
        let permission = permission_of(req.permission.as_deref(), &req.permissions)?;
        let policy = self.policy();
        if !policy.user_exists(&owner) || self.meta.snapshot().users.iter().any(|u| u.name == owner && u.is_role) {
            return Err(Error::InvalidRequest(format!("user '{owner}' does not exist (roles cannot own tokens)")));
        }
        if permission == "admin" && !policy.is_superuser(&owner) {
            return Err(Error::InvalidRequest("only superusers may own admin tokens".into()));
        }
        // A scoped credential cannot mint a token with more than its own scope.
        if let Some(scope) = &caller.scope {
            if permission != "read" && !scope.write {
                return Err(Error::PermissionDenied("a read-only credential cannot create write tokens".into()));
            }
            if !scope.databases.is_empty() && (req.databases.is_empty() || req.databases.iter().any(|d| !scope.databases.contains(d))) {
                return Err(Error::PermissionDenied("a token cannot reach databases its creator's credential cannot".into()));
            }
        }
        let secret = new_secret(API_TOKEN_PREFIX);
        let record = TokenRecord {
            id: uuid::Uuid::new_v4().simple().to_string()[..16].to_string(),
            name: req.name.trim().to_string(),
            description: req.description,
            owner: owner.clone(),
            secret_sha256: sha256_hex(&secret),
            hint: secret[..API_TOKEN_PREFIX.len() + 4].to_string(),
            databases: req.databases.iter().map(|d| d.to_ascii_lowercase()).collect(),
            permission,
            created_at: pond_meta::now_rfc3339(),
            expires_at: expires_at(req.expires_in)?,
            last_used_at: None,
            revoked_at: None,
        };
        let out = info(&record, None);
        self.meta.update(|m| {
            m.tokens.push(record);
            Ok::<_, Error>(())
        })?;
        self.audit.record(
            AuditEvent::new("token_change", true, format!("created token {} ({}) for {owner}", out.id, out.name)).user(&caller.user),
        );
        Ok((out, secret))
    }

    /// Tokens the caller may see: their own, or all for superusers.
    pub fn list_api_tokens(&self, caller: &Identity) -> Vec<TokenInfo> {
        let used = self.last_used.lock().clone();
        let mut out: Vec<TokenInfo> = self
            .meta
            .snapshot()
            .tokens
            .iter()
            .filter(|t| caller.effective_superuser() || t.owner == caller.user)
            .map(|t| info(t, used.get(&t.id).cloned()))
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        out
    }

    pub fn get_api_token(&self, caller: &Identity, id: &str) -> Result<TokenInfo> {
        self.list_api_tokens(caller).into_iter().find(|t| t.id == id).ok_or_else(|| Error::NotFound(format!("token '{id}'")))
    }

    fn change_token<T>(&self, caller: &Identity, id: &str, what: &str, f: impl FnOnce(&mut TokenRecord) -> Result<T>) -> Result<T> {
        let out = self.meta.update(|m| {
            let t = m
                .tokens
                .iter_mut()
                .find(|t| t.id == id && (caller.effective_superuser() || t.owner == caller.user))
                .ok_or_else(|| Error::NotFound(format!("token '{id}'")))?;
            f(t)
        })?;
        self.audit.record(AuditEvent::new("token_change", true, format!("{what} token {id}")).user(&caller.user));
        Ok(out)
    }

    pub fn update_api_token(&self, caller: &Identity, id: &str, patch: TokenPatch) -> Result<TokenInfo> {
        let permission = patch.permission.as_deref().map(|p| permission_of(Some(p), &[])).transpose()?;
        let expires = patch.expires_in.map(|s| expires_at(Some(s))).transpose()?;
        let superuser_owner = |owner: &str| self.policy().is_superuser(owner);
        self.change_token(caller, id, "updated", |t| {
            if let Some(n) = patch.name {
                t.name = n;
            }
            if let Some(d) = patch.description {
                t.description = d;
            }
            if let Some(dbs) = patch.databases {
                t.databases = dbs.iter().map(|d| d.to_ascii_lowercase()).collect();
            }
            if let Some(p) = permission {
                if p == "admin" && !superuser_owner(&t.owner) {
                    return Err(Error::InvalidRequest("only superusers may own admin tokens".into()));
                }
                t.permission = p;
            }
            if let Some(e) = expires {
                t.expires_at = e;
            }
            Ok(info(t, None))
        })
    }

    /// Deletes a token for good.
    pub fn delete_api_token(&self, caller: &Identity, id: &str) -> Result<()> {
        self.change_token(caller, id, "deleted", |_| Ok(()))?;
        self.meta.update(|m| {
            m.tokens.retain(|t| t.id != id);
            Ok::<_, Error>(())
        })
    }

    /// Marks a token revoked (kept for the record, no longer accepted).
    pub fn revoke_api_token(&self, caller: &Identity, id: &str) -> Result<TokenInfo> {
        self.change_token(caller, id, "revoked", |t| {
            t.revoked_at.get_or_insert_with(pond_meta::now_rfc3339);
            Ok(info(t, None))
        })
    }

    /// Replaces a token's secret; the old one stops working at once.
    pub fn rotate_api_token(&self, caller: &Identity, id: &str) -> Result<(TokenInfo, String)> {
        let secret = new_secret(API_TOKEN_PREFIX);
        let digest = sha256_hex(&secret);
        let hint = secret[..API_TOKEN_PREFIX.len() + 4].to_string();
        let out = self.change_token(caller, id, "rotated", |t| {
            if t.revoked_at.is_some() {
                return Err(Error::InvalidRequest(format!("token '{id}' is revoked; create a new one")));
            }
            t.secret_sha256 = digest;
            t.hint = hint;
            Ok(info(t, None))
        })?;
        Ok((out, secret))
    }

    pub(crate) fn verify_api_token(&self, token: &str) -> Result<Identity> {
        let policy = self.policy();
        let t = policy.tokens_by_digest.get(&sha256_hex(token)).ok_or(Error::InvalidToken)?;
        if !token_active(t) || !policy.user_exists(&t.owner) {
            return Err(Error::InvalidToken);
        }
        self.touch_token(&t.id);
        let superuser = policy.is_superuser(&t.owner);
        let scope = if t.permission == "admin" && superuser {
            None
        } else {
            Some(Scope { databases: t.databases.clone(), write: t.permission != "read" })
        };
        Ok(Identity { user: t.owner.clone(), superuser, scope, via: Via::ApiToken(t.id.clone()) })
    }

    /// Remembers when a token was last used; written to the metadata at most
    /// once a minute per token.
    fn touch_token(&self, id: &str) {
        let now = pond_meta::now_rfc3339();
        let persist = {
            let mut flushed = self.last_used_flushed.lock();
            let due = flushed.get(id).is_none_or(|t: &std::time::Instant| t.elapsed() > Duration::from_secs(60));
            if due {
                flushed.insert(id.to_string(), std::time::Instant::now());
            }
            due
        };
        self.last_used.lock().insert(id.to_string(), now.clone());
        if persist {
            let _ = self.meta.update(|m| {
                if let Some(t) = m.tokens.iter_mut().find(|t| t.id == id) {
                    t.last_used_at = Some(now);
                }
                Ok::<_, Error>(())
            });
        }
    }

    // ----- OAuth2 client credentials ------------------------------------------------

    /// Registers an OAuth2 client acting as `user`; returns (client_id, secret).
    pub fn create_oauth_client(&self, caller: &Identity, user: &str, databases: Vec<String>, permission: &str) -> Result<(String, String)> {
        if !caller.effective_superuser() {
            return Err(Error::PermissionDenied("only superusers register OAuth2 clients".into()));
        }
        let permission = permission_of(Some(permission), &[])?;
        if permission == "admin" {
            return Err(Error::InvalidRequest("OAuth2 clients get read or write permission".into()));
        }
        if !self.policy().user_exists(user) {
            return Err(Error::InvalidRequest(format!("user '{user}' does not exist")));
        }
        let client_id = format!("pond-client-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let secret = random_secret(32);
        let record = OAuthClientRecord {
            client_id: client_id.clone(),
            secret_hash: hash_password(&secret)?,
            user: user.to_string(),
            databases: databases.iter().map(|d| d.to_ascii_lowercase()).collect(),
            permission,
            created_at: pond_meta::now_rfc3339(),
        };
        self.meta.update(|m| {
            m.oauth_clients.push(record);
            Ok::<_, Error>(())
        })?;
        self.audit.record(AuditEvent::new("oauth_client_change", true, format!("registered {client_id} for {user}")).user(&caller.user));
        Ok((client_id, secret))
    }

    pub fn list_oauth_clients(&self) -> Vec<OAuthClientRecord> {
        self.meta.snapshot().oauth_clients.into_iter().map(|c| OAuthClientRecord { secret_hash: String::new(), ..c }).collect()
    }

    pub fn delete_oauth_client(&self, caller: &Identity, client_id: &str) -> Result<()> {
        if !caller.effective_superuser() {
            return Err(Error::PermissionDenied("only superusers remove OAuth2 clients".into()));
        }
        let removed = self.meta.update(|m| {
            let before = m.oauth_clients.len();
            m.oauth_clients.retain(|c| c.client_id != client_id);
            Ok::<_, Error>(before != m.oauth_clients.len())
        })?;
        if !removed {
            return Err(Error::NotFound(format!("OAuth2 client '{client_id}'")));
        }
        let mut tokens = self.sessions.lock();
        tokens.retain(|_, e| !matches!(&e.identity.via, Via::OAuth(c) if c == client_id));
        Ok(())
    }

    /// The client-credentials grant: checks the client secret (slow: argon2),
    /// narrows to the requested scope and issues a short-lived bearer token.
    /// Returns (token, lifetime, granted scope text).
    pub fn oauth_client_credentials(
        &self,
        client_id: &str,
        client_secret: &str,
        requested_scope: Option<&str>,
        source: Option<&str>,
    ) -> Result<(String, Duration, String)> {
        let key = format!("oauth:{}", source.unwrap_or("?"));
        if let Err(wait) = self.throttle.check(&key) {
            return Err(Error::TooManyFailures(wait));
        }
        let client = self.meta.snapshot().oauth_clients.into_iter().find(|c| c.client_id == client_id);
        let ok = match &client {
            Some(c) => verify_hash(&c.secret_hash, client_secret),
            None => {
                let _ = verify_hash(crate::DUMMY_HASH, client_secret);
                false
            }
        };
        let Some(client) = client.filter(|_| ok) else {
            self.throttle.failed(&key);
            self.audit.record(
                AuditEvent::new("auth_failed", false, format!("OAuth2 client '{client_id}': invalid client credentials"))
                    .source(source)
                    .protocol("oauth2"),
            );
            return Err(Error::InvalidClient);
        };
        self.throttle.succeeded(&key);
        let policy = self.policy();
        if !policy.user_exists(&client.user) {
            return Err(Error::InvalidClient);
        }
        // Scope: "read" / "write" and "database:<name>" entries, each within the client's.
        let mut write = client.permission == "write";
        let mut databases = client.databases.clone();
        if let Some(scope) = requested_scope.filter(|s| !s.trim().is_empty()) {
            let mut asked_dbs = Vec::new();
            let mut asked_write = false;
            for part in scope.split_whitespace() {
                match part {
                    "read" => {}
                    "write" => asked_write = true,
                    p if p.starts_with("database:") => asked_dbs.push(p["database:".len()..].to_ascii_lowercase()),
                    other => return Err(Error::InvalidScope(format!("unknown scope '{other}'"))),
                }
            }
            if asked_write && !write {
                return Err(Error::InvalidScope("client may not write".into()));
            }
            if !asked_dbs.is_empty() {
                if !databases.is_empty() && asked_dbs.iter().any(|d| !databases.contains(d)) {
                    return Err(Error::InvalidScope("a requested database is outside the client's scope".into()));
                }
                databases = asked_dbs;
            }
            write = asked_write;
        }
        let identity = Identity {
            user: client.user.clone(),
            superuser: policy.is_superuser(&client.user),
            scope: Some(Scope { databases: databases.clone(), write }),
            via: Via::OAuth(client.client_id.clone()),
        };
        let token = self.issue_with_prefix(&identity, OAUTH_TOKEN_PREFIX, self.oauth_ttl);
        self.audit.record(
            AuditEvent::new("login", true, format!("OAuth2 client {client_id} issued a token"))
                .user(&client.user)
                .source(source)
                .protocol("oauth2"),
        );
        let mut granted = vec![if write { "write".to_string() } else { "read".to_string() }];
        granted.extend(databases.iter().map(|d| format!("database:{d}")));
        Ok((token, self.oauth_ttl, granted.join(" ")))
    }
}
