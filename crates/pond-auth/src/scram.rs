//! SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677) in PostgreSQL's stored form.
//!
//! A verifier holds the salt, the iteration count, `StoredKey = SHA-256(ClientKey)`
//! and `ServerKey = HMAC(SaltedPassword, "Server Key")`. That is enough to check
//! a client's SCRAM proof and to prove the server knows the verifier, but not
//! enough to compute a proof: a stolen `pond.json` does not log anyone in over
//! SCRAM (an offline guess of the password is what it allows, as with the
//! argon2 hash next to it, only cheaper: PostgreSQL's 4,096 PBKDF2 rounds).
//!
//! This module only derives, encodes and parses verifiers; the exchange itself
//! is the PostgreSQL listener's (it needs the wire messages).

use std::fmt;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;

/// PBKDF2 rounds for new verifiers (PostgreSQL's `scram_iterations` default).
pub const SCRAM_ITERATIONS: u32 = 4096;

const PREFIX: &str = "SCRAM-SHA-256$";

/// What a SCRAM-SHA-256 server needs to know about one user's password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub salt: Vec<u8>,
    pub iterations: u32,
    /// `SHA-256(HMAC(SaltedPassword, "Client Key"))`
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys are password equivalents for an offline guess: never print them.
        f.debug_struct("ScramVerifier").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl ScramVerifier {
    /// A verifier for `password` with a fresh random 16-byte salt.
    pub fn new(password: &str) -> Self {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::derive(password, salt, SCRAM_ITERATIONS)
    }

    /// `SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations)`
    /// and the two keys from it. Like PostgreSQL and libpq, a password that
    /// SASLprep rejects is used as its raw bytes.
    pub fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let prepared = stringprep::saslprep(password).map(|p| p.into_owned()).unwrap_or_else(|_| password.to_string());
        let mut salted = [0u8; 32];
        let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, rounds, &salt, prepared.as_bytes(), &mut salted);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref()).as_ref().to_vec();
        let server_key = hmac::sign(&key, b"Server Key").as_ref().to_vec();
        Self { salt, iterations, stored_key, server_key }
    }

    /// PostgreSQL's `rolpassword` form: `SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>`.
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }

    /// Parses [`ScramVerifier::encode`]'s form (also what PostgreSQL stores);
    /// `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(PREFIX)?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let v = Self {
            salt: STANDARD.decode(salt).ok()?,
            iterations: iterations.parse().ok().filter(|n| *n > 0)?,
            stored_key: STANDARD.decode(stored).ok()?,
            server_key: STANDARD.decode(server).ok()?,
        };
        (v.stored_key.len() == 32 && v.server_key.len() == 32 && !v.salt.is_empty()).then_some(v)
    }

    /// Whether `password` produced this verifier (used by tests and to keep a
    /// verifier when the same password is set again).
    pub fn matches(&self, password: &str) -> bool {
        let other = Self::derive(password, self.salt.clone(), self.iterations);
        bool::from(other.stored_key.ct_eq(&self.stored_key))
    }

    /// A verifier no password matches, stable per `seed` (so that a user name
    /// that does not exist gets the same salt on every attempt and cannot be
    /// told apart from one that does).
    pub(crate) fn decoy(secret: &[u8], seed: &str) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let salt = hmac::sign(&key, format!("salt\0{seed}").as_bytes()).as_ref()[..16].to_vec();
        let stored_key = hmac::sign(&key, format!("stored\0{seed}").as_bytes()).as_ref().to_vec();
        let server_key = hmac::sign(&key, format!("server\0{seed}").as_bytes()).as_ref().to_vec();
        Self { salt, iterations: SCRAM_ITERATIONS, stored_key, server_key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user "user", password "pencil", salt
    /// "W22ZaJ0SNY7soEsUEjb6gQ==", 4096 iterations; PostgreSQL stores the same keys.
    #[test]
    fn rfc7677_keys() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = ScramVerifier::derive("pencil", salt, 4096);
        // ServerSignature of the RFC's exchange, recomputed from ServerKey.
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &v.server_key), auth.as_bytes());
        assert_eq!(STANDARD.encode(sig.as_ref()), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        // ClientProof from the RFC: ClientKey = proof XOR HMAC(StoredKey, auth); SHA-256(ClientKey) = StoredKey.
        let proof = STANDARD.decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
        let csig = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &v.stored_key), auth.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(csig.as_ref()).map(|(a, b)| a ^ b).collect();
        assert_eq!(digest::digest(&digest::SHA256, &client_key).as_ref(), v.stored_key.as_slice());
    }

    #[test]
    fn encode_parse_round_trip_and_match() {
        let v = ScramVerifier::new("correct horse");
        let text = v.encode();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        assert!(!text.contains("correct horse"));
        let back = ScramVerifier::parse(&text).unwrap();
        assert_eq!(back, v);
        assert!(back.matches("correct horse"));
        assert!(!back.matches("correct horse!"));
        assert_eq!(ScramVerifier::parse("md5abc"), None);
        assert_eq!(ScramVerifier::parse("SCRAM-SHA-256$0:AAAA$AAAA:AAAA"), None);
        assert!(!format!("{v:?}").contains(&STANDARD.encode(&v.stored_key)));
    }

    #[test]
    fn decoys_are_stable_and_match_nothing() {
        let a = ScramVerifier::decoy(b"k", "nobody");
        assert_eq!(a, ScramVerifier::decoy(b"k", "nobody"));
        assert_ne!(a.salt, ScramVerifier::decoy(b"k", "other").salt);
        assert!(!a.matches(""));
    }
}
