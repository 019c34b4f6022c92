//! The master key: where it comes from (environment or key file), its
//! fingerprint, and sealing/opening with AES-256-GCM.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result};

/// Environment variable holding the current master key.
pub const MASTER_KEY_ENV: &str = "POND_MASTER_KEY";
/// Environment variable holding the previous master key during a rotation.
pub const MASTER_KEY_PREVIOUS_ENV: &str = "POND_MASTER_KEY_PREVIOUS";
/// The key file, relative to the data directory.
pub const MASTER_KEY_FILE: &str = "system/master.key";

const KEY_LEN: usize = 32;

/// The 256-bit key that seals every secret of the instance. `Debug` shows only
/// its [`key_id`](MasterKey::key_id).
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; KEY_LEN],
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("key_id", &self.id).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// The instance's key: `env_value` (the value of `POND_MASTER_KEY`, if set)
    /// when given, otherwise `<data_dir>/system/master.key`, created with 32
    /// random bytes and mode 0600 if it does not exist. An existing key file that
    /// group or others may read or write is refused.
    pub fn load(data_dir: &Path, env_value: Option<&str>) -> Result<Self> {
        if let Some(text) = env_value {
            return Self::parse(text, MASTER_KEY_ENV);
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        match read_key_file(&path) {
            Err(Error::KeyFile { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => create_key_file(&path),
            other => other,
        }
    }

    /// A key written as 64 hex characters or as base64 (surrounding whitespace
    /// ignored). `origin` names where the text came from (an environment
    /// variable or a file) for the error message, which never contains the text.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let malformed = |reason: String| Error::MalformedKey { origin: origin.to_string(), reason };
        let text = text.trim();
        if text.is_empty() {
            return Err(malformed("it is empty".into()));
        }
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(text)
        } else {
            let config =
                base64::engine::GeneralPurposeConfig::new().with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
            let standard = base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, config);
            let url_safe = base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
            standard.decode(text).or_else(|_| url_safe.decode(text)).map_err(|_| {
                malformed(format!("{} characters that are neither 64 hex characters nor valid base64", text.chars().count()))
            })?
        };
        let bytes: [u8; KEY_LEN] =
            bytes.as_slice().try_into().map_err(|_| malformed(format!("it decodes to {} bytes, not {KEY_LEN}", bytes.len())))?;
        Ok(Self::from_bytes(bytes))
    }

    fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let mut id = encode_hex(digest.as_ref());
        id.truncate(16);
        Self { bytes, id }
    }

    /// A fresh random key.
    pub(crate) fn generate() -> Result<Self> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| Error::Crypto("the system random generator failed"))?;
        Ok(Self::from_bytes(bytes))
    }

    /// Fingerprint of the key: the first 16 hex characters of its SHA-256.
    /// Safe to show and to store.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    fn aead_key(&self) -> Result<LessSafeKey> {
        let unbound = UnboundKey::new(&AES_256_GCM, &self.bytes).map_err(|_| Error::Crypto("AES-256-GCM key setup failed"))?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Encrypts `plaintext` with a fresh random 96-bit nonce, authenticating
    /// `aad` with it. Returns the nonce and the ciphertext with the tag appended.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| Error::Crypto("the system random generator failed"))?;
        let mut in_out = plaintext.to_vec();
        self.aead_key()?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
            .map_err(|_| Error::Crypto("AES-256-GCM sealing failed"))?;
        Ok((nonce, in_out))
    }

    /// Decrypts what [`seal`](Self::seal) produced; `None` when the key, the
    /// nonce, the additional data or the ciphertext do not match.
    pub(crate) fn open(&self, nonce: &[u8], aad: &[u8], ciphertext: &[u8]) -> Result<Option<Vec<u8>>> {
        let Ok(nonce) = Nonce::try_assume_unique_for_key(nonce) else { return Ok(None) };
        let mut in_out = ciphertext.to_vec();
        let key = self.aead_key()?;
        Ok(key.open_in_place(nonce, Aad::from(aad), &mut in_out).ok().map(|plain| plain.to_vec()))
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey> {
    let io = |source| Error::KeyFile { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io)?;
    check_permissions(path, &file)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    let origin = path.display().to_string();
    if let Ok(raw) = <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
        return Ok(MasterKey::from_bytes(raw));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::MalformedKey { origin: origin.clone(), reason: "it is not text".into() })?;
    MasterKey::parse(text, &origin)
}

#[cfg(unix)]
fn check_permissions(path: &Path, file: &File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file.metadata().map_err(|source| Error::KeyFile { path: path.to_path_buf(), source })?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFilePermissions { path: path.to_path_buf(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _file: &File) -> Result<()> {
    Ok(())
}

/// Writes a new random key to a temporary file created with mode 0600, fsyncs
/// it and links it into place, so the key file is never seen half-written and an
/// existing one (another process won the race) is never replaced.
fn create_key_file(path: &Path) -> Result<MasterKey> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::KeyFile { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let key = MasterKey::generate()?;
    let tmp: PathBuf = path.with_extension("key.tmp");
    let _ = fs::remove_file(&tmp);
    {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        let mut text = encode_hex(&key.bytes);
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(io(path)(e)),
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// `text` must be an even number of ASCII hex digits.
fn decode_hex(text: &str) -> Vec<u8> {
    let nibble = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    text.as_bytes().chunks(2).map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt as _;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn seal_open_round_trip() {
        let key = MasterKey::generate().unwrap();
        let (nonce, sealed) = key.seal(b"aad", b"hello").unwrap();
        assert_ne!(&sealed[..5], b"hello");
        assert_eq!(key.open(&nonce, b"aad", &sealed).unwrap().unwrap(), b"hello");
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let key = MasterKey::generate().unwrap();
        let (n1, c1) = key.seal(b"a", b"same").unwrap();
        let (n2, c2) = key.seal(b"a", b"same").unwrap();
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
    }

    #[test]
    fn tampered_ciphertext_wrong_aad_or_wrong_key_do_not_open() {
        let key = MasterKey::generate().unwrap();
        let (nonce, sealed) = key.seal(b"s3_prod\0s3", b"{\"SECRET\":\"x\"}").unwrap();
        let mut tampered = sealed.clone();
        tampered[0] ^= 1;
        assert!(key.open(&nonce, b"s3_prod\0s3", &tampered).unwrap().is_none());
        assert!(key.open(&nonce, b"other\0s3", &sealed).unwrap().is_none());
        assert!(key.open(&nonce[..8], b"s3_prod\0s3", &sealed).unwrap().is_none());
        let other = MasterKey::generate().unwrap();
        assert!(other.open(&nonce, b"s3_prod\0s3", &sealed).unwrap().is_none());
    }

    #[test]
    fn parse_hex_and_base64_give_the_same_key() {
        let hex = MasterKey::parse(HEX_KEY, "test").unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(decode_hex(HEX_KEY));
        let from_b64 = MasterKey::parse(&format!("  {b64}\n"), "test").unwrap();
        assert_eq!(hex.bytes, from_b64.bytes);
        assert_eq!(MasterKey::parse(&HEX_KEY.to_uppercase(), "test").unwrap().bytes, hex.bytes);
        assert_eq!(hex.key_id().len(), 16);
        assert_eq!(hex.key_id(), from_b64.key_id());
        assert!(!format!("{hex:?}").contains(HEX_KEY));
    }

    #[test]
    fn malformed_key_is_a_clear_error_without_the_key() {
        for bad in ["", "zz", &HEX_KEY[..62], "c2hvcnQ=", "not a key at all, definitely not"] {
            let err = MasterKey::parse(bad, MASTER_KEY_ENV).unwrap_err().to_string();
            assert!(err.contains("POND_MASTER_KEY"), "{err}");
            assert!(err.contains("64 hex characters"), "{err}");
            if !bad.is_empty() {
                assert!(!err.contains(bad), "{err}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(MasterKey::load(dir.path(), Some("nope")).is_err());
        assert!(!dir.path().join(MASTER_KEY_FILE).exists());
    }

    #[test]
    fn env_key_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load(dir.path(), Some(HEX_KEY)).unwrap();
        assert_eq!(key.key_id(), MasterKey::parse(HEX_KEY, "x").unwrap().key_id());
        assert!(!dir.path().join(MASTER_KEY_FILE).exists());
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = MasterKey::load(dir.path(), None).unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!path.with_extension("key.tmp").exists());
        let second = MasterKey::load(dir.path(), None).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.bytes, second.bytes);
        // The file holds the key in the form POND_MASTER_KEY takes.
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(MasterKey::parse(&text, "file").unwrap().key_id(), first.key_id());
    }

    #[cfg(unix)]
    #[test]
    fn group_or_world_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        MasterKey::load(dir.path(), None).unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        for mode in [0o640, 0o604, 0o620] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::load(dir.path(), None).unwrap_err();
            assert!(matches!(err, Error::KeyFilePermissions { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()) && msg.contains("chmod 600"), "{msg}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(MasterKey::load(dir.path(), None).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn malformed_key_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut options = OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(options.write(true).create_new(true), 0o600);
        options.open(&path).unwrap().write_all(b"secret-ish garbage").unwrap();
        let msg = MasterKey::load(dir.path(), None).unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(!msg.contains("garbage"), "{msg}");
    }
}
