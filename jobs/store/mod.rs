//! The object store the exports go to: a local folder (`file://`) or an S3 bucket (`s3://`, any
//! S3-compatible endpoint). One API for both, so the publish stage does not care where a list
//! lands.
//!
//! Objects are written through [`ObjectWriter`], which streams: on S3, once an object outgrows
//! one upload part it becomes a multipart upload, part by part, so a large list never sits in
//! memory whole; on disk it goes to a temporary file renamed into place. Either way an object
//! is visible complete or not at all, and the writer hashes what it writes (SHA-256) for the
//! manifest. A failed S3 object aborts its multipart upload.
//!
//! Transient S3 failures (connection errors, timeouts, 5xx, throttling) are retried with
//! exponential backoff and jitter up to a bounded number of attempts; the SDK's own retries are
//! off so that there is one retry policy, logged once per retry. Permanent failures (wrong
//! credentials, missing bucket) fail at once.

mod s3;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::SdkError;
use sha2::{Digest, Sha256};

use s3::{retry, s3_client, S3Target};
pub use writer::ObjectWriter;
use writer::{temporary, Sink};

/// S3's smallest upload part (except the last one of an upload).
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;

/// How the object store connects and retries (settings `[s3]` and `[export]`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Endpoint of an S3-compatible server; `None`: the credential chain's (`AWS_ENDPOINT_URL`)
    /// or AWS's.
    pub endpoint_url: Option<String>,
    /// Region; `None`: the chain's (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), which most S3-compatible servers need.
    pub force_path_style: bool,
    /// Size of a multipart upload part; an object larger than one part is uploaded in parts.
    pub part_bytes: usize,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one, up to 20 s.
    pub initial_backoff: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            endpoint_url: None,
            region: None,
            force_path_style: false,
            part_bytes: 8 * 1024 * 1024,
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
        }
    }
}

/// What can go wrong in the object store. Messages name the object's URI, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{uri:?} is not a file:// or s3://bucket URI")]
    InvalidUri { uri: String },
    #[error("cannot {op} {uri}: {source}")]
    Io {
        op: &'static str,
        uri: String,
        source: std::io::Error,
    },
    #[error("cannot {op} {uri}: {message}{}", attempts_note(*attempts))]
    Remote {
        op: &'static str,
        uri: String,
        message: String,
        /// Worth trying again later (the server was unreachable or overloaded).
        transient: bool,
        attempts: u32,
    },
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (gave up after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl StoreError {
    /// Whether the failure may go away on its own (a scheduler may retry the run).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Remote {
                transient: true,
                ..
            }
        )
    }
}

/// A destination: a local folder or a bucket and key prefix.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    /// The destination URI as configured, without a trailing `/`.
    root: String,
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Local(PathBuf),
    S3(Arc<S3Target>),
}

/// A parsed destination URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses `file:///abs`, `file://relative` or `s3://bucket[/prefix]`.
    pub fn parse(uri: &str) -> Result<Location, StoreError> {
        // Never echo a credential: an unparseable URI may carry one.
        let invalid = || StoreError::InvalidUri {
            uri: crate::redact::redact(uri),
        };
        if let Some(path) = uri.strip_prefix("file://") {
            if path.is_empty() {
                return Err(invalid());
            }
            return Ok(Location::Local(PathBuf::from(path)));
        }
        let rest = uri.strip_prefix("s3://").ok_or_else(invalid)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // Bucket names: 3 to 63 lowercase letters, digits, dots and hyphens.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err(invalid());
        }
        let prefix = prefix.trim_matches('/');
        Ok(Location::S3 {
            bucket: bucket.into(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    /// Whether this location is `root` or lies under it: the same bucket under its key prefix,
    /// or a folder under its folder. A path that climbs (`..`) is never under anything.
    pub fn within(&self, root: &Location) -> bool {
        match (self, root) {
            (Location::Local(path), Location::Local(root)) => {
                let climbs = |p: &Path| {
                    p.components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                };
                !climbs(path) && !climbs(root) && path.starts_with(root)
            }
            (
                Location::S3 { bucket, prefix },
                Location::S3 {
                    bucket: root_bucket,
                    prefix: root_prefix,
                },
            ) => {
                bucket == root_bucket
                    && prefix.starts_with(root_prefix.as_str())
                    && !prefix.split('/').any(|s| s == "..")
            }
            _ => false,
        }
    }
}

/// An object as written: its size and SHA-256, and how many upload parts it took (0 for a
/// single request or a local file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
    pub upload_parts: usize,
}

impl ObjectStore {
    /// Opens a destination. For S3 this loads the standard AWS configuration (environment,
    /// profile, instance role) and overrides it with `options`; it sends no request yet.
    pub async fn open(uri: &str, options: &StoreOptions) -> Result<ObjectStore, StoreError> {
        let root = uri.trim_end_matches('/').to_string();
        let backend = match Location::parse(uri)? {
            Location::Local(path) => Backend::Local(path),
            Location::S3 { bucket, prefix } => Backend::S3(Arc::new(S3Target {
                client: s3_client(options).await,
                bucket,
                prefix,
                options: options.clone(),
            })),
        };
        Ok(ObjectStore { root, backend })
    }

    /// The URI of `key` (a `/`-separated path under the destination).
    pub fn uri(&self, key: &str) -> String {
        format!("{}/{key}", self.root)
    }

    /// Starts writing `key`. Nothing is visible under that key until [`ObjectWriter::finish`].
    pub async fn writer(&self, key: &str) -> Result<ObjectWriter, StoreError> {
        let sink = match &self.backend {
            Backend::Local(root) => {
                let path = root.join(key);
                let tmp = temporary(&path);
                let io = |source| StoreError::Io {
                    op: "write",
                    uri: self.uri(key),
                    source,
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let file = std::fs::File::create(&tmp).map_err(io)?;
                Sink::Local { file, tmp, path }
            }
            Backend::S3(target) => Sink::S3 {
                target: target.clone(),
                key: target.key(key),
                buffer: Vec::new(),
                upload_id: None,
                parts: Vec::new(),
            },
        };
        Ok(ObjectWriter {
            uri: self.uri(key),
            sink,
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    /// Writes a whole object.
    pub async fn put(&self, key: &str, bytes: &[u8]) -> Result<Written, StoreError> {
        let mut w = self.writer(key).await?;
        w.write(bytes).await?;
        w.finish().await
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.get_opt(key).await?.ok_or_else(|| StoreError::Io {
            op: "read",
            uri: self.uri(key),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    /// Reads a whole object, or `None` when there is none under `key`.
    pub async fn get_opt(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let uri = self.uri(key);
        match &self.backend {
            Backend::Local(root) => match std::fs::read(root.join(key)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StoreError::Io {
                    op: "read",
                    uri,
                    source,
                }),
            },
            Backend::S3(t) => {
                let full = t.key(key);
                retry(&t.options, "read", &uri, || async {
                    let out = match t
                        .client
                        .get_object()
                        .bucket(&t.bucket)
                        .key(&full)
                        .send()
                        .await
                    {
                        Ok(out) => out,
                        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                            return Ok(None)
                        }
                        Err(e) => return Err(e),
                    };
                    // A body cut off mid-way is a dispatch-level failure: retried like one.
                    out.body
                        .collect()
                        .await
                        .map(|b| Some(b.into_bytes().to_vec()))
                        .map_err(SdkError::timeout_error)
                })
                .await
            }
        }
    }

    /// Whether an object is under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let uri = self.uri(key);
        match &self.backend {
            Backend::Local(root) => root
                .join(key)
                .try_exists()
                .map_err(|source| StoreError::Io {
                    op: "read",
                    uri,
                    source,
                }),
            Backend::S3(t) => {
                let full = t.key(key);
                retry(&t.options, "read", &uri, || async {
                    match t
                        .client
                        .head_object()
                        .bucket(&t.bucket)
                        .key(&full)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(true),
                        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                            Ok(false)
                        }
                        Err(e) => Err(e),
                    }
                })
                .await
            }
        }
    }

    /// Copies the object under `key` to `dest_key` of `dest` (another store, or this one),
    /// streamed chunk by chunk through [`ObjectWriter`]: it appears whole or not at all, and
    /// a part of hundreds of megabytes is never held in memory.
    pub async fn copy_to(
        &self,
        key: &str,
        dest: &ObjectStore,
        dest_key: &str,
    ) -> Result<Written, StoreError> {
        let uri = self.uri(key);
        let mut writer = dest.writer(dest_key).await?;
        let copied = async {
            match &self.backend {
                Backend::Local(root) => {
                    use std::io::Read as _;
                    let io = |source| StoreError::Io {
                        op: "read",
                        uri: uri.clone(),
                        source,
                    };
                    let mut file = std::fs::File::open(root.join(key)).map_err(io)?;
                    let mut chunk = vec![0; 1 << 20];
                    loop {
                        let n = file.read(&mut chunk).map_err(io)?;
                        if n == 0 {
                            break;
                        }
                        writer.write(&chunk[..n]).await?;
                    }
                }
                Backend::S3(t) => {
                    let full = t.key(key);
                    let out = retry(&t.options, "read", &uri, || {
                        t.client.get_object().bucket(&t.bucket).key(&full).send()
                    })
                    .await?;
                    let mut body = out.body;
                    loop {
                        match body.try_next().await {
                            Ok(Some(bytes)) => writer.write(&bytes).await?,
                            Ok(None) => break,
                            Err(e) => {
                                return Err(StoreError::Remote {
                                    op: "read",
                                    uri: uri.clone(),
                                    message: format!("the download was cut off: {e}"),
                                    transient: true,
                                    attempts: 1,
                                })
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => writer.finish().await,
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
        }
    }

    /// The keys under `prefix` (relative to the destination), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let uri = self.uri(prefix);
        let mut keys = Vec::new();
        match &self.backend {
            Backend::Local(root) => {
                let dir = root.join(prefix);
                if dir.exists() {
                    walk(&dir, prefix.trim_end_matches('/'), &mut keys).map_err(|source| {
                        StoreError::Io {
                            op: "list",
                            uri,
                            source,
                        }
                    })?;
                }
            }
            Backend::S3(t) => {
                let full = t.key(prefix);
                let mut token: Option<String> = None;
                loop {
                    let page = retry(&t.options, "list", &uri, || {
                        t.client
                            .list_objects_v2()
                            .bucket(&t.bucket)
                            .prefix(&full)
                            .set_continuation_token(token.clone())
                            .send()
                    })
                    .await?;
                    for o in page.contents() {
                        if let Some(k) = o.key().and_then(|k| k.strip_prefix(t.prefix.as_str())) {
                            keys.push(k.to_string());
                        }
                    }
                    token = page.next_continuation_token().map(str::to_string);
                    if token.is_none() {
                        break;
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Deletes every object under `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let keys = self.list(prefix).await?;
        match &self.backend {
            Backend::Local(root) => {
                let dir = root.join(prefix);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|source| StoreError::Io {
                        op: "delete",
                        uri: self.uri(prefix),
                        source,
                    })?;
                }
            }
            Backend::S3(t) => {
                for key in &keys {
                    let full = t.key(key);
                    retry(&t.options, "delete", &self.uri(key), || {
                        t.client.delete_object().bucket(&t.bucket).key(&full).send()
                    })
                    .await?;
                }
            }
        }
        Ok(keys.len())
    }
}

/// Every file under `dir`, as keys under `key`; temporary files are not objects yet.
fn walk(dir: &Path, key: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if key.is_empty() {
            name.clone()
        } else {
            format!("{key}/{name}")
        };
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &child, out)?;
        } else if !name.ends_with(".tmp") {
            out.push(child);
        }
    }
    Ok(())
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_within_its_root_only() {
        let loc = |u: &str| Location::parse(u).unwrap();
        let root = loc("s3://crm-lists/targeting");
        assert!(loc("s3://crm-lists/targeting").within(&root));
        assert!(loc("s3://crm-lists/targeting/braze").within(&root));
        assert!(!loc("s3://crm-lists/targeting-other").within(&root));
        assert!(!loc("s3://crm-lists").within(&root));
        assert!(!loc("s3://other-bucket/targeting").within(&root));
        assert!(!loc("s3://crm-lists/targeting/../secrets").within(&root));
        let dir = loc("file:///data/exports");
        assert!(loc("file:///data/exports/braze").within(&dir));
        assert!(!loc("file:///data/exports/../elsewhere").within(&dir));
        assert!(!loc("file:///data/exports-2").within(&dir));
        assert!(!loc("file:///data/exports/x").within(&root));
        assert!(loc("file://demo/exports/x").within(&loc("file://demo/exports")));
        assert!(!loc("file://../elsewhere").within(&loc("file://demo/exports")));
    }

    #[test]
    fn locations_parse() {
        assert_eq!(
            Location::parse("s3://exports-bucket/crm/nightly/").unwrap(),
            Location::S3 {
                bucket: "exports-bucket".into(),
                prefix: "crm/nightly/".into()
            }
        );
        assert_eq!(
            Location::parse("s3://exports-bucket").unwrap(),
            Location::S3 {
                bucket: "exports-bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Location::parse("file:///data/out").unwrap(),
            Location::Local(PathBuf::from("/data/out"))
        );
        for bad in [
            "s3://",
            "s3://Bad_Bucket/x",
            "http://host/x",
            "file://",
            "/data",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn local_objects_appear_whole_and_are_listed_and_deleted() {
        let dir = std::env::temp_dir().join(format!("store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let uri = format!("file://{}", dir.display());
        let store = ObjectStore::open(&uri, &StoreOptions::default())
            .await
            .unwrap();
        let mut w = store.writer("a/b/part-0.csv").await.unwrap();
        w.write(b"x,y\n").await.unwrap();
        // Not visible before finish.
        assert!(store.list("a").await.unwrap().is_empty());
        let written = w.finish().await.unwrap();
        assert_eq!(written.bytes, 4);
        assert_eq!(written.sha256, hex(&Sha256::digest(b"x,y\n")));
        store.put("a/manifest.json", b"{}").await.unwrap();
        assert_eq!(
            store.list("a").await.unwrap(),
            ["a/b/part-0.csv", "a/manifest.json"]
        );
        assert_eq!(store.get("a/b/part-0.csv").await.unwrap(), b"x,y\n");
        let aborted = store.writer("a/c.csv").await.unwrap();
        aborted.abort().await;
        assert_eq!(store.delete_prefix("a").await.unwrap(), 2);
        assert!(store.list("a").await.unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
