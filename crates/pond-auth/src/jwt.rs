//! External JWTs (HS256, RS256, ES256) from an identity provider.
//!
//! Keys come from configuration: an HMAC secret, PEM public keys, or a JWKS
//! document (read from a file or fetched by the server at start). `exp` is
//! required, `nbf`, `iss` and `aud` are checked when configured, and one claim
//! (default `sub`) names the Pond user whose grants apply.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::{Error, Result};

/// JWT settings (all optional: without keys JWTs are not accepted).
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// HS256 shared secret.
    pub hmac_secret: Option<Vec<u8>>,
    /// PEM public keys (RSA for RS256, EC P-256 for ES256).
    pub public_keys_pem: Vec<String>,
    /// A JWKS document (JSON text).
    pub jwks_json: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Claim that names the Pond user; default `sub`.
    pub user_claim: Option<String>,
    /// Allowed clock skew in seconds (default 30).
    pub leeway_secs: Option<u64>,
}

impl JwtConfig {
    /// Checks the keys as a start would (HMAC secret length, PEM public keys,
    /// JWKS text) without keeping them; the message never quotes key material.
    pub fn validate(&self) -> Result<()> {
        JwtVerifier::new(self).map(|_| ())
    }
}

struct Key {
    alg: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

pub(crate) struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    user_claim: String,
    leeway: u64,
}

impl JwtVerifier {
    pub(crate) fn new(config: &JwtConfig) -> Result<Option<Self>> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.hmac_secret {
            if secret.len() < 32 {
                return Err(Error::Config("the JWT HMAC secret must be at least 32 bytes".into()));
            }
            keys.push(Key { alg: Algorithm::HS256, kid: None, key: DecodingKey::from_secret(secret) });
        }
        for (i, pem) in config.public_keys_pem.iter().enumerate() {
            let key = if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                Key { alg: Algorithm::RS256, kid: None, key: k }
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                Key { alg: Algorithm::ES256, kid: None, key: k }
            } else {
                return Err(Error::Config(format!("JWT public key #{} is neither an RSA nor an EC public key in PEM form", i + 1)));
            };
            keys.push(key);
        }
        if let Some(text) = &config.jwks_json {
            let set: JwkSet = serde_json::from_str(text).map_err(|e| Error::Config(format!("JWKS is not valid: {e}")))?;
            for jwk in &set.keys {
                let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
                let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                    (Some(a), _) => a.to_string().parse::<Algorithm>().ok(),
                    (None, jsonwebtoken::jwk::AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
                    (None, jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_)) => Some(Algorithm::ES256),
                    _ => None,
                };
                if let Some(alg) = alg.filter(|a| matches!(a, Algorithm::RS256 | Algorithm::ES256 | Algorithm::HS256)) {
                    keys.push(Key { alg, kid: jwk.common.key_id.clone(), key });
                }
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            user_claim: config.user_claim.clone().unwrap_or_else(|| "sub".into()),
            leeway: config.leeway_secs.unwrap_or(30),
        }))
    }

    /// Verifies signature and claims; returns the user name from the user claim.
    pub(crate) fn verify(&self, token: &str) -> Result<String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| Error::Jwt(format!("malformed header: {e}")))?;
        let candidates: Vec<&Key> =
            self.keys.iter().filter(|k| k.alg == header.alg && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)).collect();
        if candidates.is_empty() {
            return Err(Error::Jwt(format!("no configured key for algorithm {:?}{}", header.alg, kid_note(&header.kid))));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let mut last = None;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation) {
                Ok(data) => {
                    return match data.claims.get(&self.user_claim) {
                        Some(serde_json::Value::String(u)) if !u.is_empty() => Ok(u.clone()),
                        _ => Err(Error::Jwt(format!("claim '{}' naming the Pond user is missing", self.user_claim))),
                    };
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Jwt(describe(last)))
    }
}

fn kid_note(kid: &Option<String>) -> String {
    kid.as_ref().map(|k| format!(" and key id '{k}'")).unwrap_or_default()
}

fn describe(e: Option<jsonwebtoken::errors::Error>) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    let Some(e) = e else { return "no key verified the token".into() };
    match e.kind() {
        ExpiredSignature => "token has expired (exp)".into(),
        ImmatureSignature => "token is not valid yet (nbf)".into(),
        InvalidIssuer => "wrong issuer (iss)".into(),
        InvalidAudience => "wrong audience (aud)".into(),
        InvalidSignature => "signature does not verify".into(),
        MissingRequiredClaim(c) => format!("required claim '{c}' is missing"),
        other => format!("{other:?}"),
    }
}
