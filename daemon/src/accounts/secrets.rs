//! Secrets at rest: the federation passwords (and PKCS#12 passphrases) of offices registered on
//! the appliance are stored in redb sealed with AES-256-GCM under a key kept in a separate
//! file of the state folder (`secret.key`, 32 random bytes, mode 0600, readable only by the
//! service's user), never in the store itself.
//!
//! Invariants: a copy of the store (a backup) holds no secret in clear; a sealed value is bound
//! to the record it belongs to (the office number is the AEAD's associated data), so it cannot
//! be moved to another office's record; the key file is created once and never rewritten (a
//! lost key file means the sealed passwords must be entered again, never silently replaced).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

use super::password::random_bytes;

/// The key file, inside the state folder.
pub const KEY_FILE: &str = "secret.key";

/// A sealed secret: base64 of nonce ‖ ciphertext ‖ tag.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(***)")
    }
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file cannot be read or created.
    #[error("鍵ファイル {path} を使えません (cannot use the key file): {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file is not 32 bytes.
    #[error(
        "鍵ファイル {0} の内容が正しくありません（32 バイトではありません） (the key file is not 32 bytes)"
    )]
    KeyLength(PathBuf),
    /// A sealed value does not open with this key and record (a different key file, or a
    /// damaged or moved value).
    #[error(
        "保存されている秘密情報を復号できません。鍵ファイルが置き換えられた可能性があります。パスワードを登録し直してください (a stored secret does not open with this key file; enter it again)"
    )]
    Open,
    /// No randomness.
    #[error(transparent)]
    Random(#[from] super::password::RandomUnavailable),
}

/// The sealing key.
pub struct SecretKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// Loads `state_dir/secret.key`, creating it (0600, 32 random bytes) if absent.
    pub fn load_or_create(state_dir: &Path) -> Result<SecretKey, SecretError> {
        let path = state_dir.join(KEY_FILE);
        let err = |source| SecretError::KeyFile {
            path: path.clone(),
            source,
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut fresh = [0u8; 32];
                random_bytes(&mut fresh)?;
                write_new_private(&path, &fresh).map_err(err)?;
                fresh.to_vec()
            }
            Err(e) => return Err(err(e)),
        };
        let raw: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::KeyLength(path.clone()))?;
        Ok(SecretKey::from_bytes(&raw))
    }

    /// A key from raw bytes (tests).
    pub fn from_bytes(raw: &[u8; 32]) -> SecretKey {
        // A 32-byte key is always valid for AES-256-GCM.
        let unbound = UnboundKey::new(&AES_256_GCM, raw).unwrap_or_else(|_| unreachable!());
        SecretKey {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Seals `secret` for the record `context` (an office number).
    pub fn seal(&self, context: &str, secret: &str) -> Result<Sealed, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let mut buf = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Open)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(Sealed(
            base64::engine::general_purpose::STANDARD.encode(out),
        ))
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, context: &str, sealed: &Sealed) -> Result<String, SecretError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed.0)
            .map_err(|_| SecretError::Open)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Open)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Open)
    }
}

/// Creates `path` with mode 0600 and writes `bytes`, synced; refuses to overwrite.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load_or_create(dir.path()).unwrap();
        let sealed = key.seal("1310000011", "federation-pw").unwrap();
        assert!(!format!("{sealed:?}").contains("federation"));
        assert!(!sealed.0.contains("federation-pw"));
        assert_eq!(key.open("1310000011", &sealed).unwrap(), "federation-pw");
        // Bound to its record.
        assert!(matches!(
            key.open("1310000029", &sealed),
            Err(SecretError::Open)
        ));
        // The same key file is read back, not replaced.
        let again = SecretKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open("1310000011", &sealed).unwrap(), "federation-pw");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another key does not open it.
        let other = SecretKey::from_bytes(&[7u8; 32]);
        assert!(other.open("1310000011", &sealed).is_err());
        // Two seals of one secret differ (fresh nonces).
        assert_ne!(key.seal("1310000011", "federation-pw").unwrap(), sealed);
        // A damaged key file is refused, not replaced.
        let bad = tempfile::tempdir().unwrap();
        std::fs::write(bad.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            SecretKey::load_or_create(bad.path()),
            Err(SecretError::KeyLength(_))
        ));
    }
}
