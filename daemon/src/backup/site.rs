//! Backup sites: where copies are kept. A site is a directory (local disk, USB disk, NAS mount)
//! or an S3-compatible bucket (through `object_store`). Both offer the same few operations on
//! objects named by a relative key (`copies/0000000012/store.redb`).
//!
//! Invariants kept here:
//! - **A write counts only once read back.** `put_file` uploads, then reads the object back from
//!   the site (for a directory, after dropping it from the page cache, so the bytes come from
//!   the disk) and compares its size and SHA-256 with what was sent.
//! - A directory site writes `*.part`, fsyncs, renames and fsyncs the folder, so a crash leaves
//!   either the whole object or a `.part` that no listing counts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt as _;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::config::{SiteLocation, SiteSettings};

/// Read and write in pieces of this size.
const PIECE: usize = 4 * 1024 * 1024;

/// The part size of multipart uploads to object storage. S3 refuses every part but the last
/// when it is under 5 MiB (`EntityTooSmall`), so this must stay above that; 10 MiB is also
/// `object_store`'s own default.
const S3_PART: usize = 10 * 1024 * 1024;

/// What went wrong at a site.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A file operation on a directory site.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The object storage refused or failed.
    #[error("object storage: {0}")]
    Object(#[from] object_store::Error),
    /// The object read back differs from what was written.
    #[error(
        "read-back check failed for {key}: wrote {sent_size} bytes (SHA-256 {sent_sha}), read {got_size} bytes (SHA-256 {got_sha})"
    )]
    ReadBack {
        key: String,
        sent_size: u64,
        sent_sha: String,
        got_size: u64,
        got_sha: String,
    },
    /// The site's settings cannot be used.
    #[error("site settings: {0}")]
    Settings(String),
    /// The site encrypts, and there is no key.
    #[error("暗号化する保存先ですが鍵がありません (no key for an encrypting site)")]
    NoKey,
}

impl SiteError {
    /// Its entry in the message catalogue, as a failure to write a copy.
    pub fn code(&self) -> admin_ui::help::Code {
        use admin_ui::help::code;
        match self {
            SiteError::Io { .. } | SiteError::Object(_) => code::BACKUP_SITE_WRITE,
            SiteError::ReadBack { .. } => code::BACKUP_SITE_READ_BACK,
            SiteError::Settings(_) => code::BACKUP_SITE_SETTINGS,
            SiteError::NoKey => code::BACKUP_KEY_MISSING_FOR_SITE,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SiteError + '_ {
    move |source| SiteError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Size and SHA-256 (hex) of some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// One site, ready to use.
#[derive(Debug, Clone)]
pub struct Site {
    /// Its settings.
    pub settings: SiteSettings,
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Dir(PathBuf),
    Object {
        store: Arc<dyn object_store::ObjectStore>,
        prefix: String,
    },
}

impl Site {
    /// Prepares a site from its settings (no I/O yet).
    pub fn new(settings: &SiteSettings) -> Result<Site, SiteError> {
        let backend = match &settings.location {
            SiteLocation::Directory { path } => Backend::Dir(path.clone()),
            SiteLocation::S3 {
                endpoint,
                bucket,
                prefix,
                region,
                path_style,
                access_key_id,
                secret_access_key,
            } => {
                let store = object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(endpoint)
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key.expose())
                    .with_virtual_hosted_style_request(!path_style)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .build()
                    .map_err(|e| SiteError::Settings(e.to_string()))?;
                Backend::Object {
                    store: Arc::new(store),
                    prefix: prefix.clone(),
                }
            }
        };
        Ok(Site {
            settings: settings.clone(),
            backend,
        })
    }

    /// The site's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Where it is, for people: the folder, or `s3://bucket/prefix at endpoint`.
    pub fn describe(&self) -> String {
        match &self.settings.location {
            SiteLocation::Directory { path } => path.display().to_string(),
            SiteLocation::S3 {
                endpoint,
                bucket,
                prefix,
                ..
            } => format!("s3://{bucket}/{prefix} ({endpoint})"),
        }
    }

    fn object_path(prefix: &str, key: &str) -> ObjectPath {
        if prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{prefix}/{key}"))
        }
    }

    /// Uploads a local file as `key` and checks it by reading it back.
    pub async fn put_file(&self, key: &str, local: &Path) -> Result<Fingerprint, SiteError> {
        let sent = match &self.backend {
            Backend::Dir(root) => {
                let dest = root.join(key);
                let (src, dest2) = (local.to_owned(), dest.clone());
                tokio::task::spawn_blocking(move || copy_durably(&src, &dest2))
                    .await
                    .map_err(|e| SiteError::Settings(format!("copy task: {e}")))??
            }
            Backend::Object { store, prefix } => {
                let path = Self::object_path(prefix, key);
                let mut file = tokio::fs::File::open(local).await.map_err(io(local))?;
                let mut writer =
                    object_store::buffered::BufWriter::with_capacity(store.clone(), path, S3_PART);
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let mut buf = vec![0u8; PIECE];
                loop {
                    let n = file.read(&mut buf).await.map_err(io(local))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                    if let Err(e) = writer.write_all(&buf[..n]).await {
                        let _ = writer.abort().await;
                        return Err(io(local)(e));
                    }
                }
                writer
                    .shutdown()
                    .await
                    .map_err(|e| match e.downcast::<object_store::Error>() {
                        Ok(e) => SiteError::Object(e),
                        Err(e) => io(local)(e),
                    })?;
                Fingerprint {
                    size,
                    sha256: hex::encode(hasher.finalize()),
                }
            }
        };
        let got = self.fingerprint(key).await?;
        if got != sent {
            return Err(SiteError::ReadBack {
                key: key.to_owned(),
                sent_size: sent.size,
                sent_sha: sent.sha256,
                got_size: got.size,
                got_sha: got.sha256,
            });
        }
        Ok(sent)
    }

    /// Stores small bytes as `key` and checks them by reading them back.
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), SiteError> {
        let want = Fingerprint {
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        };
        match &self.backend {
            Backend::Dir(root) => {
                let dest = root.join(key);
                tokio::task::spawn_blocking(move || write_durably(&dest, &bytes))
                    .await
                    .map_err(|e| SiteError::Settings(format!("write task: {e}")))??;
            }
            Backend::Object { store, prefix } => {
                store
                    .put(&Self::object_path(prefix, key), bytes.into())
                    .await?;
            }
        }
        let got = self.fingerprint(key).await?;
        if got != want {
            return Err(SiteError::ReadBack {
                key: key.to_owned(),
                sent_size: want.size,
                sent_sha: want.sha256,
                got_size: got.size,
                got_sha: got.sha256,
            });
        }
        Ok(())
    }

    /// Reads small bytes (a manifest).
    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, SiteError> {
        match &self.backend {
            Backend::Dir(root) => {
                let path = root.join(key);
                tokio::fs::read(&path).await.map_err(io(&path))
            }
            Backend::Object { store, prefix } => Ok(store
                .get(&Self::object_path(prefix, key))
                .await?
                .bytes()
                .await?
                .to_vec()),
        }
    }

    /// Downloads `key` into a new local file; returns what was read. `progress` hears the bytes
    /// read so far.
    pub async fn get_file_progress(
        &self,
        key: &str,
        local: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Fingerprint, SiteError> {
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(local)
            .await
            .map_err(io(local))?;
        let fp = self.read_each(key, Some(&mut out), progress).await?;
        out.sync_all().await.map_err(io(local))?;
        Ok(fp)
    }

    /// Reads `key` back from the site and returns its size and SHA-256.
    pub async fn fingerprint(&self, key: &str) -> Result<Fingerprint, SiteError> {
        self.read_each(key, None, &|_| {}).await
    }

    async fn read_each(
        &self,
        key: &str,
        mut out: Option<&mut tokio::fs::File>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Fingerprint, SiteError> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        match &self.backend {
            Backend::Dir(root) => {
                let path = root.join(key);
                let mut file = tokio::fs::File::open(&path).await.map_err(io(&path))?;
                let mut buf = vec![0u8; PIECE];
                loop {
                    let n = file.read(&mut buf).await.map_err(io(&path))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                    progress(size);
                    if let Some(out) = out.as_deref_mut() {
                        out.write_all(&buf[..n]).await.map_err(io(&path))?;
                    }
                }
            }
            Backend::Object { store, prefix } => {
                let mut stream = store
                    .get(&Self::object_path(prefix, key))
                    .await?
                    .into_stream();
                while let Some(piece) = stream.next().await {
                    let piece = piece?;
                    hasher.update(&piece);
                    size += piece.len() as u64;
                    progress(size);
                    if let Some(out) = out.as_deref_mut() {
                        out.write_all(&piece).await.map_err(io(Path::new(key)))?;
                    }
                }
            }
        }
        Ok(Fingerprint {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Every object key under `dir` (relative to the site), sorted.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, SiteError> {
        let mut out = Vec::new();
        match &self.backend {
            Backend::Dir(root) => {
                let base = root.join(dir);
                let (root, base) = (root.clone(), base.clone());
                out = tokio::task::spawn_blocking(move || walk(&root, &base))
                    .await
                    .map_err(|e| SiteError::Settings(format!("list task: {e}")))??;
            }
            Backend::Object { store, prefix } => {
                let strip = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                };
                let mut stream = store.list(Some(&Self::object_path(prefix, dir)));
                while let Some(meta) = stream.next().await {
                    let loc = meta?.location.to_string();
                    out.push(loc.strip_prefix(&strip).unwrap_or(&loc).to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes the objects (a missing one is not an error).
    pub async fn delete(&self, keys: &[String]) -> Result<(), SiteError> {
        for key in keys {
            match &self.backend {
                Backend::Dir(root) => {
                    let path = root.join(key);
                    match tokio::fs::remove_file(&path).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(&path)(e)),
                    }
                    if let Some(parent) = path.parent() {
                        // The copy's folder goes once it is empty.
                        let _ = tokio::fs::remove_dir(parent).await;
                    }
                }
                Backend::Object { store, prefix } => {
                    match store.delete(&Self::object_path(prefix, key)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Copies a file to `dest` through `dest.part` with fsyncs, then drops the written pages from
/// the cache so that the read-back comes from the disk.
fn copy_durably(src: &Path, dest: &Path) -> Result<Fingerprint, SiteError> {
    use std::io::{Read as _, Write as _};
    let dir = dest
        .parent()
        .ok_or_else(|| SiteError::Settings(format!("{} has no folder", dest.display())))?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let part = part_path(dest);
    let mut input = std::fs::File::open(src).map_err(io(src))?;
    let mut output = std::fs::File::create(&part).map_err(io(&part))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; PIECE];
    loop {
        let n = input.read(&mut buf).map_err(io(src))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(io(&part))?;
        size += n as u64;
    }
    output.sync_all().map_err(io(&part))?;
    let _ = rustix::fs::fadvise(&output, 0, None, rustix::fs::Advice::DontNeed);
    drop(output);
    std::fs::rename(&part, dest).map_err(io(dest))?;
    sync_dir(dir)?;
    Ok(Fingerprint {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn write_durably(dest: &Path, bytes: &[u8]) -> Result<(), SiteError> {
    use std::io::Write as _;
    let dir = dest
        .parent()
        .ok_or_else(|| SiteError::Settings(format!("{} has no folder", dest.display())))?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let part = part_path(dest);
    let mut f = std::fs::File::create(&part).map_err(io(&part))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(&part))?;
    let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
    drop(f);
    std::fs::rename(&part, dest).map_err(io(dest))?;
    sync_dir(dir)
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn sync_dir(dir: &Path) -> Result<(), SiteError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Relative paths of the files under `base`, `.part` files included (the caller tells them).
fn walk(root: &Path, base: &Path) -> Result<Vec<String>, SiteError> {
    let mut out = Vec::new();
    let mut stack = vec![base.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            if entry.file_type().map_err(io(&path))?.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(out)
}
