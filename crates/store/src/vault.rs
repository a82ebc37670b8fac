//! Secrets at rest: resource specs, connection credentials and tokens, OAuth2 flow state and
//! idempotency records are sealed with XChaCha20-Poly1305 before they reach the database.
//!
//! **Keys.** The vault holds a keyring: the *current* key, which seals, and any number of *old*
//! keys, which only open. They come from `SWITCHBOARD_MASTER_KEY` (base64, the current key) and
//! `SWITCHBOARD_MASTER_KEY_OLD` (base64 keys separated by commas or spaces) when the former is
//! set, otherwise from `data_dir/master.key`: one base64 key per line, the first current (a
//! file of one line is the format of earlier versions). The file is created on first start with
//! mode 0600. Losing the keys makes sealed values unreadable; back them up with the database,
//! but not next to it.
//!
//! **Format.** A sealed value is `"SBK" 0x01 || key id (8 bytes) || nonce (24) || ciphertext`,
//! the key id being the first 8 bytes of SHA-256 over a domain tag and the key. Values sealed by
//! earlier versions are `nonce || ciphertext` without a key id; they still open (every key of
//! the ring is tried) and `switchboard keys rotate` re-seals them.
//!
//! **Rotation without downtime.** `switchboard keys rotate` puts a fresh key first in the key
//! file (keeping the old ones) and re-seals every stored value under it. A running server
//! whose ring lacks the key of a value it reads re-reads the key file once and tries again, so
//! it keeps working while the rows change under it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::Digest as _;

use crate::{Result, StoreError};

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "master.key";
/// The environment variable holding the current key.
pub const KEY_ENV: &str = "SWITCHBOARD_MASTER_KEY";
/// The environment variable holding old keys (open only).
pub const OLD_KEYS_ENV: &str = "SWITCHBOARD_MASTER_KEY_OLD";

const NONCE_LEN: usize = 24;
const MAGIC: &[u8; 4] = b"SBK\x01";
const ID_LEN: usize = 8;
const HEADER_LEN: usize = MAGIC.len() + ID_LEN;

/// A key's id: 8 bytes, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; ID_LEN]);

impl KeyId {
    fn of(key: &[u8]) -> Self {
        let mut hash = sha2::Sha256::new();
        hash.update(b"switchboard vault key id\0");
        hash.update(key);
        let digest = hash.finalize();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        Self(id)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Which key a sealed value is under, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedBy {
    /// A value with a key id.
    Key(KeyId),
    /// A value sealed before key ids (no header).
    Legacy,
}

impl std::fmt::Display for SealedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(id) => id.fmt(f),
            Self::Legacy => f.write_str("legacy (no key id)"),
        }
    }
}

struct Key {
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8]) -> Result<Self> {
        let cipher = XChaCha20Poly1305::new_from_slice(bytes)
            .map_err(|_| StoreError::Vault("a master key must be 32 bytes".into()))?;
        Ok(Self {
            id: KeyId::of(bytes),
            cipher,
        })
    }
}

/// The keys, current first.
struct Ring {
    keys: Vec<Key>,
}

/// Seals and opens secrets.
#[derive(Clone)]
pub struct Vault {
    ring: Arc<RwLock<Arc<Ring>>>,
    /// The key file the ring came from (re-read when a value names a key the ring lacks).
    file: Option<PathBuf>,
    /// Whether this start created the key file (no key existed).
    created: bool,
    /// When the key file was last looked at, and its modification time then: a vault sealing
    /// from a file notices a rotation by another process within [`FILE_CHECK`].
    checked: Arc<std::sync::Mutex<(std::time::Instant, Option<std::time::SystemTime>)>>,
}

/// How often a vault over a key file checks whether the file changed.
pub const FILE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<key redacted>)")
    }
}

/// Decodes one base64 key; `what` names its origin in the error.
pub fn decode_key(text: &str, what: &str) -> Result<Vec<u8>> {
    let key = STANDARD
        .decode(text.trim())
        .map_err(|_| StoreError::Vault(format!("{what} is not a base64 key")))?;
    if key.len() != 32 {
        return Err(StoreError::Vault(format!(
            "{what} must be 32 bytes (base64), not {}",
            key.len()
        )));
    }
    Ok(key)
}

/// The keys of a key file's text: one base64 key per line, blank lines and `#` comments
/// ignored.
fn parse_key_file(text: &str, path: &Path) -> Result<Vec<Vec<u8>>> {
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .enumerate()
        .map(|(i, line)| decode_key(line, &format!("{} (key {})", path.display(), i + 1)))
        .collect::<Result<Vec<_>>>()?;
    if keys.is_empty() {
        return Err(StoreError::Vault(format!(
            "{} holds no key",
            path.display()
        )));
    }
    Ok(keys)
}

/// A fresh random key, base64.
pub fn generate_key() -> String {
    STANDARD.encode(rand_key())
}

impl Vault {
    fn with_keys(keys: &[Vec<u8>], file: Option<PathBuf>, created: bool) -> Result<Self> {
        let keys = keys
            .iter()
            .map(|k| Key::new(k))
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(StoreError::Vault("no master key".into()));
        }
        let stamp = file.as_deref().and_then(modified);
        Ok(Self {
            ring: Arc::new(RwLock::new(Arc::new(Ring { keys }))),
            file,
            created,
            checked: Arc::new(std::sync::Mutex::new((std::time::Instant::now(), stamp))),
        })
    }

    /// A vault over raw key bytes (32).
    pub fn from_key(key: &[u8]) -> Result<Self> {
        Self::with_keys(&[key.to_vec()], None, false)
    }

    /// A vault over several raw keys, the first current.
    pub fn from_keys(keys: &[Vec<u8>]) -> Result<Self> {
        Self::with_keys(keys, None, false)
    }

    /// Loads the key from `SWITCHBOARD_MASTER_KEY` or `data_dir/master.key`, creating the file
    /// with a fresh random key when neither exists. (Old keys: [`Vault::open_with_old`].)
    pub fn open(data_dir: &Path, env_key: Option<&str>) -> Result<Self> {
        Self::open_with_old(data_dir, env_key, None)
    }

    /// Loads the keyring: `env_key` (current) and `env_old` (old keys, separated by commas or
    /// whitespace) when `env_key` is given, otherwise `data_dir/master.key`, created with a fresh
    /// random key when missing.
    pub fn open_with_old(
        data_dir: &Path,
        env_key: Option<&str>,
        env_old: Option<&str>,
    ) -> Result<Self> {
        if let Some(encoded) = env_key {
            let mut keys = vec![decode_key(encoded, KEY_ENV)?];
            for (i, old) in env_old
                .unwrap_or("")
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|k| !k.is_empty())
                .enumerate()
            {
                keys.push(decode_key(old, &format!("{OLD_KEYS_ENV} (key {})", i + 1))?);
            }
            return Self::with_keys(&keys, None, false);
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::with_keys(&parse_key_file(&text, &path)?, Some(path), false),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)?;
                let key: [u8; 32] = rand_key();
                write_private(&path, STANDARD.encode(key).as_bytes())?;
                tracing::info!(path = %path.display(), "created a new master key for secrets at rest");
                Self::with_keys(&[key.to_vec()], Some(path), true)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Whether opening created the key file (there was no key before this start).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The key file the keys come from (`None` with keys from the environment).
    pub fn key_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn ring(&self) -> Arc<Ring> {
        match self.ring.read() {
            Ok(ring) => ring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the key file (another process rotated the keys).
    fn reload(&self) -> Result<bool> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let text = std::fs::read_to_string(path)?;
        let keys = parse_key_file(&text, path)?
            .iter()
            .map(|k| Key::new(k))
            .collect::<Result<Vec<_>>>()?;
        let ring = Arc::new(Ring { keys });
        match self.ring.write() {
            Ok(mut current) => *current = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
        Ok(true)
    }

    /// The current key's id.
    pub fn current_id(&self) -> KeyId {
        // A ring is never empty (checked when built).
        self.ring()
            .keys
            .first()
            .map_or(KeyId([0; ID_LEN]), |k| k.id)
    }

    /// Every key id of the ring, current first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.ring().keys.iter().map(|k| k.id).collect()
    }

    /// Re-reads the key file when it changed since the last look (at most every
    /// [`FILE_CHECK`]), so that a rotation by `switchboard keys rotate` makes this process seal
    /// with the new key.
    fn follow_file(&self) {
        let Some(path) = &self.file else {
            return;
        };
        let changed = match self.checked.lock() {
            Ok(mut checked) if checked.0.elapsed() >= FILE_CHECK => {
                let now = modified(path);
                checked.0 = std::time::Instant::now();
                let changed = now != checked.1;
                checked.1 = now;
                changed
            }
            _ => false,
        };
        if changed && let Err(error) = self.reload() {
            tracing::warn!(%error, path = %path.display(), "could not re-read the master key file");
        }
    }

    /// Encrypts `plaintext` under the current key.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.follow_file();
        let ring = self.ring();
        let key = ring
            .keys
            .first()
            .ok_or_else(|| StoreError::Vault("no master key".into()))?;
        let nonce = XNonce::generate();
        let ciphertext = key
            .cipher
            .encrypt(&nonce, plaintext)
            .map_err(|_| StoreError::Vault("encryption failed".into()))?;
        let mut sealed = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(MAGIC);
        sealed.extend_from_slice(&key.id.0);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Which key sealed `sealed`, as its bytes say.
    pub fn sealed_by(sealed: &[u8]) -> SealedBy {
        match header_id(sealed) {
            Some(id) => SealedBy::Key(id),
            None => SealedBy::Legacy,
        }
    }

    /// Whether `sealed` is under another key than the current one (or has no key id).
    pub fn needs_reseal(&self, sealed: &[u8]) -> bool {
        header_id(sealed) != Some(self.current_id())
    }

    /// Decrypts what [`Vault::seal`] (of this or an earlier version) produced.
    pub fn open_sealed(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Vault("sealed value is truncated".into()));
        }
        if let Some(id) = header_id(sealed) {
            let ring = self.ring();
            let known = ring.keys.iter().any(|k| k.id == id);
            let ring = if !known && self.reload()? {
                self.ring()
            } else {
                ring
            };
            if let Some(key) = ring.keys.iter().find(|k| k.id == id) {
                if let Some(plain) = decrypt(&key.cipher, &sealed[HEADER_LEN..]) {
                    return Ok(plain);
                }
            } else if !ring
                .keys
                .iter()
                .any(|k| decrypt(&k.cipher, sealed).is_some())
            {
                return Err(StoreError::Vault(format!(
                    "cannot decrypt a stored secret: it is sealed under master key {id}, which is not \
                     in the keyring ({KEY_ENV}, {OLD_KEYS_ENV} or {KEY_FILE})"
                )));
            }
        }
        // Without a key id (or, by a 2^-64 chance, a legacy nonce that looks like a header):
        // every key of the ring in turn.
        let ring = self.ring();
        ring.keys
            .iter()
            .find_map(|k| decrypt(&k.cipher, sealed))
            .ok_or_else(|| {
                StoreError::Vault(format!(
                    "cannot decrypt a stored secret: wrong master key ({KEY_ENV} or {KEY_FILE})"
                ))
            })
    }

    /// Opens `sealed` and seals it again under the current key; `None` when it already is.
    pub fn reseal(&self, sealed: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.needs_reseal(sealed) {
            return Ok(None);
        }
        let plain = self.open_sealed(sealed)?;
        self.seal(&plain).map(Some)
    }
}

fn header_id(sealed: &[u8]) -> Option<KeyId> {
    if sealed.len() < HEADER_LEN + NONCE_LEN || !sealed.starts_with(MAGIC) {
        return None;
    }
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&sealed[MAGIC.len()..HEADER_LEN]);
    Some(KeyId(id))
}

fn decrypt(cipher: &XChaCha20Poly1305, nonce_and_ciphertext: &[u8]) -> Option<Vec<u8>> {
    if nonce_and_ciphertext.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = nonce_and_ciphertext.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).ok()?;
    cipher.decrypt(&nonce, ciphertext).ok()
}

/// Puts a fresh key first in `data_dir/master.key`, keeping the keys it holds (written to a
/// temporary file, synced, then renamed over the old one). Returns the new key's id.
pub fn prepend_new_key(data_dir: &Path) -> Result<KeyId> {
    let path = data_dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path)?;
    let keys = parse_key_file(&text, &path)?;
    let fresh = rand_key();
    let mut lines = vec![STANDARD.encode(fresh)];
    lines.extend(keys.iter().map(|k| STANDARD.encode(k)));
    replace_key_file(&path, &lines)?;
    Ok(KeyId::of(&fresh))
}

/// Keeps only the current key in `data_dir/master.key`; returns how many keys were dropped.
pub fn retire_old_keys(data_dir: &Path) -> Result<usize> {
    let path = data_dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path)?;
    let keys = parse_key_file(&text, &path)?;
    let Some(current) = keys.first() else {
        return Ok(0);
    };
    replace_key_file(&path, &[STANDARD.encode(current)])?;
    Ok(keys.len() - 1)
}

fn replace_key_file(path: &Path, lines: &[String]) -> Result<()> {
    let tmp = path.with_extension("key.new");
    let _ = std::fs::remove_file(&tmp);
    let mut text = lines.join("\n");
    text.push('\n');
    write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
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

    /// A value sealed in the format of earlier versions (`nonce || ciphertext`).
    fn legacy_seal(key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new_from_slice(key).expect("key");
        let nonce = XNonce::generate();
        let mut out = nonce.to_vec();
        out.extend(cipher.encrypt(&nonce, plaintext).expect("seal"));
        out
    }

    #[test]
    fn old_keys_open_and_the_current_key_seals() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let before = Vault::from_key(&old).expect("key");
        let sealed_old = before.seal(b"token").expect("seal");
        let legacy = legacy_seal(&old, b"legacy");
        assert_eq!(Vault::sealed_by(&legacy), SealedBy::Legacy);
        assert_eq!(
            Vault::sealed_by(&sealed_old),
            SealedBy::Key(before.current_id())
        );
        let ring = Vault::from_keys(&[new.to_vec(), old.to_vec()]).expect("ring");
        assert_eq!(ring.open_sealed(&sealed_old).expect("old"), b"token");
        assert_eq!(ring.open_sealed(&legacy).expect("legacy"), b"legacy");
        assert!(ring.needs_reseal(&sealed_old) && ring.needs_reseal(&legacy));
        let resealed = ring.reseal(&sealed_old).expect("reseal").expect("changed");
        assert!(!ring.needs_reseal(&resealed));
        assert_eq!(
            ring.reseal(&resealed).expect("reseal"),
            None,
            "already current"
        );
        let only_new = Vault::from_key(&new).expect("key");
        assert_eq!(only_new.open_sealed(&resealed).expect("new"), b"token");
        let error = only_new
            .open_sealed(&sealed_old)
            .expect_err("old key retired");
        assert!(
            error
                .to_string()
                .contains(&format!("sealed under master key {}", before.current_id())),
            "{error}"
        );
        assert!(only_new.open_sealed(&legacy).is_err());
    }

    #[test]
    fn environment_keys_and_rotated_key_files() {
        let dir = tempfile::tempdir().expect("dir");
        let (a, b) = (generate_key(), generate_key());
        let env =
            Vault::open_with_old(dir.path(), Some(&a), Some(&format!(" {b}, "))).expect("env");
        assert_eq!(env.key_ids().len(), 2);
        assert!(!dir.path().join(KEY_FILE).exists(), "no file with env keys");
        assert!(Vault::open_with_old(dir.path(), Some(&a), Some("short")).is_err());

        let first = Vault::open(dir.path(), None).expect("create");
        assert!(first.created());
        let sealed = first.seal(b"secret").expect("seal");
        // Another process rotates: the running vault re-reads the file when it meets the new id.
        let new_id = prepend_new_key(dir.path()).expect("rotate");
        let other = Vault::open(dir.path(), None).expect("reopen");
        assert!(!other.created());
        assert_eq!(other.current_id(), new_id);
        let resealed = other.reseal(&sealed).expect("reseal").expect("changed");
        assert_eq!(first.open_sealed(&resealed).expect("reloaded"), b"secret");
        assert_eq!(first.current_id(), new_id, "the ring was reloaded");
        assert_eq!(retire_old_keys(dir.path()).expect("retire"), 1);
        let retired = Vault::open(dir.path(), None).expect("reopen");
        assert_eq!(retired.key_ids(), vec![new_id]);
        assert!(retired.open_sealed(&sealed).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
