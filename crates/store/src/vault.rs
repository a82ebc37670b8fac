//! Secrets at rest: resource specs (which carry signing secrets and credentials) are sealed with
//! XChaCha20-Poly1305 before they reach the database.
//!
//! The 32-byte key comes from `SWITCHBOARD_MASTER_KEY` (base64) when set, otherwise from
//! `data_dir/master.key`, created on first start with mode 0600. Losing the key makes sealed
//! specs unreadable; back it up with the database, but not next to it.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::{Result, StoreError};

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "master.key";

const NONCE_LEN: usize = 24;

/// Seals and opens secrets.
#[derive(Clone)]
pub struct Vault {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<key redacted>)")
    }
}

impl Vault {
    /// A vault over raw key bytes (32).
    pub fn from_key(key: &[u8]) -> Result<Self> {
        let cipher = XChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| StoreError::Vault("the master key must be 32 bytes".into()))?;
        Ok(Self { cipher })
    }

    /// Loads the key from `SWITCHBOARD_MASTER_KEY` or `data_dir/master.key`, creating the file
    /// with a fresh random key when neither exists.
    pub fn open(data_dir: &Path, env_key: Option<&str>) -> Result<Self> {
        if let Some(encoded) = env_key {
            let key = STANDARD
                .decode(encoded.trim())
                .map_err(|_| StoreError::Vault("SWITCHBOARD_MASTER_KEY is not base64".into()))?;
            return Self::from_key(&key);
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = STANDARD.decode(text.trim()).map_err(|_| {
                    StoreError::Vault(format!("{} is not a base64 key", path.display()))
                })?;
                Self::from_key(&key)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)?;
                let key: [u8; 32] = rand_key();
                write_private(&path, STANDARD.encode(key).as_bytes())?;
                tracing::info!(path = %path.display(), "created a new master key for secrets at rest");
                Self::from_key(&key)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Encrypts `plaintext`; the result is `nonce || ciphertext`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce = XNonce::generate();
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext)
            .map_err(|_| StoreError::Vault("encryption failed".into()))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts what [`Vault::seal`] produced.
    pub fn open_sealed(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Vault("sealed value is truncated".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce)
            .map_err(|_| StoreError::Vault("sealed value has a bad nonce".into()))?;
        self.cipher.decrypt(&nonce, ciphertext).map_err(|_| {
            StoreError::Vault(
                "cannot decrypt a stored secret: wrong master key (SWITCHBOARD_MASTER_KEY or master.key)"
                    .into(),
            )
        })
    }
}

fn rand_key() -> [u8; 32] {
    let key = chacha20poly1305::Key::generate();
    let mut out = [0u8; 32];
    out.copy_from_slice(&key);
    out
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_detects_tampering_and_wrong_keys() {
        let vault = Vault::from_key(&[7u8; 32]).expect("key");
        let sealed = vault.seal(b"whsec_secret").expect("seal");
        assert!(!sealed.windows(12).any(|w| w == b"whsec_secret"));
        assert_eq!(vault.open_sealed(&sealed).expect("open"), b"whsec_secret");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(vault.open_sealed(&tampered).is_err());
        let other = Vault::from_key(&[8u8; 32]).expect("key");
        assert!(other.open_sealed(&sealed).is_err());
        assert_ne!(
            vault.seal(b"x").expect("seal"),
            vault.seal(b"x").expect("seal"),
            "fresh nonces"
        );
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let a = Vault::open(dir.path(), None).expect("create");
        let sealed = a.seal(b"s").expect("seal");
        let b = Vault::open(dir.path(), None).expect("reuse");
        assert_eq!(b.open_sealed(&sealed).expect("open"), b"s");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(Vault::open(dir.path(), Some("not base64!")).is_err());
    }
}
