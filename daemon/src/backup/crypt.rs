//! Client-side encryption of copies bound for off-site sites, and the backup key.
//!
//! Format of an encrypted copy: the magic `KRBKENC1`, the key ID (8 bytes), a random 19-byte
//! nonce prefix, then the snapshot in 1 MiB chunks sealed with XChaCha20-Poly1305 in the STREAM
//! construction (`aead::stream`, 32-bit big-endian chunk counter and a last-chunk flag), so that
//! a truncated, reordered or altered copy fails to decrypt. The last chunk holds the remainder
//! (possibly empty), which makes the chunk boundaries follow from the file's length.
//!
//! The key is 32 random bytes made at set-up, kept in `backup.key_file` (mode 0600), never in the
//! store (a copy must not carry its own key). Its ID is a BLAKE3-derived 16-hex fingerprint,
//! written into every manifest. The administrator exports it as a file and as a printable form
//! (four lines of hex with a check code each) and confirms having done so; until then the
//! appliance keeps reminding.
//!
//! Invariant: nothing is decrypted with a key whose ID differs from the copy's, and nothing
//! decrypted is trusted before the whole stream authenticated (the caller verifies the file
//! afterwards as well).

use std::io::{Read, Write};
use std::path::Path;

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};

const MAGIC: &[u8; 8] = b"KRBKENC1";
const NONCE_LEN: usize = 19;
const HEADER_LEN: usize = 8 + 8 + NONCE_LEN;
const CHUNK: usize = 1024 * 1024;
const TAG: usize = 16;

/// Why a key or an encrypted copy could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error(
        "バックアップ鍵のファイル {0} を読めません。書き出した鍵（ファイルか印刷した控え）を確認してください (not a kaigo-relay backup key)"
    )]
    BadKey(String),
    /// The copy was encrypted with another key.
    #[error(
        "このコピーは別の鍵（鍵ID {copy}）で暗号化されています。この装置の鍵は {ours} です (the copy needs key {copy}; this appliance has {ours})"
    )]
    WrongKey { copy: String, ours: String },
    /// The copy is encrypted and this appliance has no key.
    #[error(
        "暗号化されたコピーですが、鍵（鍵ID {copy}）がありません。書き出した鍵を backup.key_file に置いてください (the copy is encrypted and no key is configured)"
    )]
    NoKey { copy: String },
    /// The copy is not an encrypted copy, or it is damaged or truncated.
    #[error(
        "暗号化されたコピーが壊れているか、途中で切れています (the encrypted copy is damaged or truncated)"
    )]
    Damaged,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CryptError + '_ {
    move |source| CryptError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The backup key.
#[derive(Clone)]
pub struct BackupKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupKey({})", self.id())
    }
}

impl BackupKey {
    /// A new random key.
    pub fn generate() -> Result<BackupKey, CryptError> {
        use ring::rand::SecureRandom as _;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| CryptError::BadKey("no randomness".into()))?;
        Ok(BackupKey { bytes })
    }

    /// Its ID: 16 hex digits, derived one-way from the key.
    pub fn id(&self) -> String {
        hex::encode(&blake3::derive_key("kaigo-relay backup key id v1", &self.bytes)[..8])
    }

    fn id_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&blake3::derive_key("kaigo-relay backup key id v1", &self.bytes)[..8]);
        out
    }

    /// The key file's text (also the export file).
    pub fn file_text(&self) -> String {
        format!(
            "# kaigo-relay バックアップ鍵 (backup key)\n\
             # 暗号化されたバックアップを戻すにはこの鍵が必要です。装置とは別の場所に保管してください。\n\
             # Encrypted backups cannot be restored without this key. Keep it away from the appliance.\n\
             key-id: {}\n{}",
            self.id(),
            self.printable()
        )
    }

    /// The printable form: four lines of 16 hex digits in groups of four, each with a two-digit
    /// check code, so that a mistyped line is caught when the key is entered again.
    pub fn printable(&self) -> String {
        let hex = hex::encode(self.bytes);
        let mut out = String::new();
        for (i, line) in hex.as_bytes().chunks(16).enumerate() {
            let line = std::str::from_utf8(line).unwrap_or_default();
            let groups: Vec<&str> = (0..4).map(|g| &line[g * 4..g * 4 + 4]).collect();
            out.push_str(&format!(
                "{}: {}  [{}]\n",
                i + 1,
                groups.join(" "),
                line_check(i, line)
            ));
        }
        out
    }

    /// Reads a key from the key file, an export file, or the printable form typed back.
    pub fn parse(text: &str) -> Option<BackupKey> {
        let mut hex = String::new();
        let mut expected_id = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(id) = line.strip_prefix("key-id:") {
                expected_id = Some(id.trim().to_owned());
                continue;
            }
            let (num, rest) = line.split_once(':')?;
            let n: usize = num.trim().parse().ok()?;
            let (digits, check) = match rest.split_once('[') {
                Some((d, c)) => (d, Some(c.trim_end_matches(']').trim().to_owned())),
                None => (rest, None),
            };
            let digits: String = digits.chars().filter(|c| !c.is_whitespace()).collect();
            if n != hex.len() / 16 + 1 || digits.len() != 16 {
                return None;
            }
            let digits = digits.to_ascii_lowercase();
            if let Some(check) = check
                && check != line_check(n - 1, &digits)
            {
                return None;
            }
            hex.push_str(&digits);
        }
        let bytes: [u8; 32] = hex::decode(&hex).ok()?.try_into().ok()?;
        let key = BackupKey { bytes };
        match expected_id {
            Some(id) if id != key.id() => None,
            _ => Some(key),
        }
    }

    /// Reads the key file.
    pub fn load(path: &Path) -> Result<BackupKey, CryptError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        BackupKey::parse(&text).ok_or_else(|| CryptError::BadKey(path.display().to_string()))
    }

    /// Writes the key file (mode 0600, created new: an existing key is never overwritten).
    pub fn save_new(&self, path: &Path) -> Result<(), CryptError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io(path))?;
        f.write_all(self.file_text().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(path))
    }

    /// Loads the key file, or makes it when it does not exist yet (set-up).
    pub fn load_or_create(path: &Path) -> Result<(BackupKey, bool), CryptError> {
        if path.exists() {
            return Ok((BackupKey::load(path)?, false));
        }
        let key = BackupKey::generate()?;
        key.save_new(path)?;
        Ok((key, true))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }
}

fn line_check(index: usize, digits: &str) -> String {
    let h = blake3::hash(format!("{index}:{digits}").as_bytes());
    hex::encode(&h.as_bytes()[..1])
}

/// Encrypts `src` into `dest` (created new).
pub fn encrypt_file(key: &BackupKey, src: &Path, dest: &Path) -> Result<(), CryptError> {
    use ring::rand::SecureRandom as _;
    let mut input =
        std::io::BufReader::with_capacity(CHUNK, std::fs::File::open(src).map_err(io(src))?);
    let total = std::fs::metadata(src).map_err(io(src))?.len() as usize;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io(dest))?;
    let mut out = std::io::BufWriter::with_capacity(CHUNK + TAG, out);
    let mut nonce = [0u8; NONCE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptError::Damaged)?;
    out.write_all(MAGIC)
        .and_then(|()| out.write_all(&key.id_bytes()))
        .and_then(|()| out.write_all(&nonce))
        .map_err(io(dest))?;
    let mut enc = EncryptorBE32::from_aead(key.cipher(), (&nonce).into());
    let mut buf = vec![0u8; CHUNK];
    for _ in 0..total / CHUNK {
        input.read_exact(&mut buf).map_err(io(src))?;
        let sealed = enc
            .encrypt_next(buf.as_slice())
            .map_err(|_| CryptError::Damaged)?;
        out.write_all(&sealed).map_err(io(dest))?;
    }
    let rest = total % CHUNK;
    input.read_exact(&mut buf[..rest]).map_err(io(src))?;
    let sealed = enc
        .encrypt_last(&buf[..rest])
        .map_err(|_| CryptError::Damaged)?;
    out.write_all(&sealed).map_err(io(dest))?;
    let out = out.into_inner().map_err(|e| io(dest)(e.into_error()))?;
    out.sync_all().map_err(io(dest))
}

/// The key ID an encrypted copy names, or `None` when the file is not one.
pub fn key_id_of(path: &Path) -> Result<Option<String>, CryptError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut head = [0u8; 16];
    match f.read_exact(&mut head) {
        Ok(()) if &head[..8] == MAGIC => Ok(Some(hex::encode(&head[8..16]))),
        Ok(()) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Decrypts `src` into `dest` (created new); fails on a wrong key or any damage.
pub fn decrypt_file(key: &BackupKey, src: &Path, dest: &Path) -> Result<(), CryptError> {
    let total = std::fs::metadata(src).map_err(io(src))?.len() as usize;
    let mut input =
        std::io::BufReader::with_capacity(CHUNK + TAG, std::fs::File::open(src).map_err(io(src))?);
    if total < HEADER_LEN + TAG {
        return Err(CryptError::Damaged);
    }
    let mut header = [0u8; HEADER_LEN];
    input.read_exact(&mut header).map_err(io(src))?;
    if &header[..8] != MAGIC {
        return Err(CryptError::Damaged);
    }
    if header[8..16] != key.id_bytes() {
        return Err(CryptError::WrongKey {
            copy: hex::encode(&header[8..16]),
            ours: key.id(),
        });
    }
    let nonce: [u8; NONCE_LEN] = header[16..].try_into().map_err(|_| CryptError::Damaged)?;
    let body = total - HEADER_LEN;
    let full = (body - TAG) / (CHUNK + TAG);
    let last = body - full * (CHUNK + TAG);
    if last > CHUNK + TAG {
        // A valid copy's last chunk holds less than a whole chunk: this one was cut short.
        return Err(CryptError::Damaged);
    }
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io(dest))?;
    let mut out = std::io::BufWriter::with_capacity(CHUNK, out);
    let mut dec = DecryptorBE32::from_aead(key.cipher(), (&nonce).into());
    let mut buf = vec![0u8; CHUNK + TAG];
    for _ in 0..full {
        input.read_exact(&mut buf).map_err(io(src))?;
        let plain = dec
            .decrypt_next(buf.as_slice())
            .map_err(|_| CryptError::Damaged)?;
        out.write_all(&plain).map_err(io(dest))?;
    }
    input.read_exact(&mut buf[..last]).map_err(io(src))?;
    let plain = dec
        .decrypt_last(&buf[..last])
        .map_err(|_| CryptError::Damaged)?;
    out.write_all(&plain).map_err(io(dest))?;
    let out = out.into_inner().map_err(|e| io(dest)(e.into_error()))?;
    out.sync_all().map_err(io(dest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn printable_form_reads_back_and_catches_a_typo() {
        let key = BackupKey::generate().unwrap();
        let back = BackupKey::parse(&key.printable()).unwrap();
        assert_eq!(back.bytes, key.bytes);
        let back = BackupKey::parse(&key.file_text()).unwrap();
        assert_eq!(back.id(), key.id());
        // One digit changed in line 2 no longer matches its check code. The check is one
        // byte, so a random key lets one typo in 256 through (the key ID printed beside the
        // form catches those at restore); a fixed key keeps this test deterministic.
        let key = BackupKey {
            bytes: *b"kaigo-relay printable key test!!",
        };
        let mut lines: Vec<String> = key.printable().lines().map(str::to_owned).collect();
        let l = &mut lines[1];
        let pos = 3;
        let c = l.as_bytes()[pos];
        let swapped = if c == b'0' { '1' } else { '0' };
        l.replace_range(pos..pos + 1, &swapped.to_string());
        assert!(BackupKey::parse(&lines.join("\n")).is_none());
    }

    #[test]
    fn round_trip_and_damage_for_every_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let key = BackupKey::generate().unwrap();
        for (i, len) in [
            0usize,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK,
            2 * CHUNK + 7,
        ]
        .into_iter()
        .enumerate()
        {
            let plain: Vec<u8> = (0..len).map(|n| (n * 31 % 251) as u8).collect();
            let (p, e, d) = (
                dir.path().join(format!("{i}.plain")),
                dir.path().join(format!("{i}.enc")),
                dir.path().join(format!("{i}.dec")),
            );
            std::fs::write(&p, &plain).unwrap();
            encrypt_file(&key, &p, &e).unwrap();
            assert_eq!(key_id_of(&e).unwrap(), Some(key.id()));
            decrypt_file(&key, &e, &d).unwrap();
            assert_eq!(std::fs::read(&d).unwrap(), plain, "length {len}");
            // One flipped byte anywhere after the header is caught.
            let mut bytes = std::fs::read(&e).unwrap();
            let at = HEADER_LEN + (bytes.len() - HEADER_LEN) / 2;
            bytes[at] ^= 0x01;
            let bad = dir.path().join(format!("{i}.bad"));
            std::fs::write(&bad, &bytes).unwrap();
            let out = dir.path().join(format!("{i}.bad.dec"));
            assert!(matches!(
                decrypt_file(&key, &bad, &out),
                Err(CryptError::Damaged)
            ));
            // A truncated copy is caught too.
            let bytes = std::fs::read(&e).unwrap();
            let cut = dir.path().join(format!("{i}.cut"));
            std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
            let out = dir.path().join(format!("{i}.cut.dec"));
            assert!(decrypt_file(&key, &cut, &out).is_err());
        }
        let other = BackupKey::generate().unwrap();
        let out = dir.path().join("wrong.dec");
        assert!(matches!(
            decrypt_file(&other, &dir.path().join("1.enc"), &out),
            Err(CryptError::WrongKey { .. })
        ));
    }
}
