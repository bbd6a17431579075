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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use rand::Rng;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

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

/// A bucket and key prefix, and the client and options that reach them; shared by the store
/// and its writers.
#[derive(Debug)]
struct S3Target {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Key prefix, empty or ending in `/`.
    prefix: String,
    options: StoreOptions,
}

impl S3Target {
    /// The full object key of a key under the prefix.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
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
        let invalid = || StoreError::InvalidUri { uri: uri.into() };
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

/// An object being written; see [`ObjectStore::writer`]. Dropping it without
/// [`finish`](Self::finish) leaves nothing visible (call [`abort`](Self::abort) to also free
/// a multipart upload at once).
#[derive(Debug)]
pub struct ObjectWriter {
    uri: String,
    sink: Sink,
    hasher: Sha256,
    bytes: u64,
}

#[derive(Debug)]
enum Sink {
    Local {
        file: std::fs::File,
        tmp: PathBuf,
        path: PathBuf,
    },
    S3 {
        target: Arc<S3Target>,
        /// The full object key.
        key: String,
        buffer: Vec<u8>,
        upload_id: Option<String>,
        parts: Vec<CompletedPart>,
    },
}

impl ObjectWriter {
    /// Appends bytes. On S3, every full part is uploaded as it fills; a failure aborts the
    /// upload.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        let part = match &mut self.sink {
            Sink::Local { file, .. } => {
                use std::io::Write as _;
                return file.write_all(data).map_err(|source| StoreError::Io {
                    op: "write",
                    uri: self.uri.clone(),
                    source,
                });
            }
            Sink::S3 { buffer, target, .. } => {
                buffer.extend_from_slice(data);
                target.options.part_bytes
            }
        };
        while self.sink_buffered() >= part {
            if let Err(e) = self.upload_part(part).await {
                self.abort_upload().await;
                return Err(e);
            }
        }
        Ok(())
    }

    fn sink_buffered(&self) -> usize {
        match &self.sink {
            Sink::S3 { buffer, .. } => buffer.len(),
            Sink::Local { .. } => 0,
        }
    }

    /// Uploads the first `len` buffered bytes (all of them when fewer) as the next part,
    /// starting the multipart upload when needed.
    async fn upload_part(&mut self, len: usize) -> Result<(), StoreError> {
        let Sink::S3 {
            target: t,
            key,
            buffer,
            upload_id,
            parts,
        } = &mut self.sink
        else {
            return Ok(());
        };
        let uri = &self.uri;
        if upload_id.is_none() {
            let created = retry(&t.options, "start the upload of", uri, || {
                t.client
                    .create_multipart_upload()
                    .bucket(&t.bucket)
                    .key(key.as_str())
                    .content_type(content_type(key))
                    .send()
            })
            .await?;
            *upload_id = created.upload_id().map(str::to_string);
            if upload_id.is_none() {
                return Err(StoreError::Remote {
                    op: "start the upload of",
                    uri: uri.clone(),
                    message: "the server returned no upload id".into(),
                    transient: false,
                    attempts: 1,
                });
            }
        }
        let id = upload_id.clone().unwrap_or_default();
        let rest = buffer.split_off(len.min(buffer.len()));
        let body = bytes::Bytes::from(std::mem::replace(buffer, rest));
        let number = parts.len() as i32 + 1;
        let out = retry(&t.options, "upload a part of", uri, || {
            t.client
                .upload_part()
                .bucket(&t.bucket)
                .key(key.as_str())
                .upload_id(&id)
                .part_number(number)
                .body(ByteStream::from(body.clone()))
                .send()
        })
        .await?;
        debug!(uri = %uri, part = number, bytes = body.len(), "uploaded part");
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    /// Makes the object visible: renames the local file, or sends the single request or the
    /// last part and completes the multipart upload.
    pub async fn finish(mut self) -> Result<Written, StoreError> {
        let result = self.finish_inner().await;
        if result.is_err() {
            self.abort_upload().await;
        }
        let upload_parts = result?;
        debug!(uri = %self.uri, bytes = self.bytes, "wrote object");
        Ok(Written {
            bytes: self.bytes,
            sha256: crate::publish::hex(&std::mem::take(&mut self.hasher).finalize()),
            upload_parts,
        })
    }

    async fn finish_inner(&mut self) -> Result<usize, StoreError> {
        if let Sink::Local { file, tmp, path } = &self.sink {
            let io = |source| StoreError::Io {
                op: "write",
                uri: self.uri.clone(),
                source,
            };
            file.sync_all().map_err(io)?;
            std::fs::rename(tmp.as_path(), path.as_path()).map_err(io)?;
            return Ok(0);
        }
        let multipart = matches!(
            &self.sink,
            Sink::S3 {
                upload_id: Some(_),
                ..
            }
        );
        if multipart {
            // The last part may be smaller than the part size (or empty only when it is the
            // first, which cannot happen here).
            if self.sink_buffered() > 0 {
                self.upload_part(usize::MAX).await?;
            }
        }
        let Sink::S3 {
            target: t,
            key,
            buffer,
            upload_id,
            parts,
        } = &mut self.sink
        else {
            return Ok(0);
        };
        let uri = &self.uri;
        match upload_id {
            None => {
                let body = bytes::Bytes::from(std::mem::take(buffer));
                retry(&t.options, "write", uri, || {
                    t.client
                        .put_object()
                        .bucket(&t.bucket)
                        .key(key.as_str())
                        .content_type(content_type(key))
                        .body(ByteStream::from(body.clone()))
                        .send()
                })
                .await?;
                Ok(0)
            }
            Some(id) => {
                let done = CompletedMultipartUpload::builder()
                    .set_parts(Some(parts.clone()))
                    .build();
                retry(&t.options, "complete the upload of", uri, || {
                    t.client
                        .complete_multipart_upload()
                        .bucket(&t.bucket)
                        .key(key.as_str())
                        .upload_id(id.as_str())
                        .multipart_upload(done.clone())
                        .send()
                })
                .await?;
                let n = parts.len();
                *upload_id = None;
                Ok(n)
            }
        }
    }

    /// Gives up on the object: nothing becomes visible, and a multipart upload is aborted so
    /// the server frees its parts.
    pub async fn abort(mut self) {
        self.abort_upload().await;
    }

    async fn abort_upload(&mut self) {
        match &mut self.sink {
            Sink::Local { tmp, .. } => {
                let _ = std::fs::remove_file(tmp.as_path());
            }
            Sink::S3 {
                target: t,
                key,
                upload_id,
                ..
            } => {
                if let Some(id) = upload_id.take() {
                    // One attempt: when the server is gone, its lifecycle rule for incomplete
                    // uploads cleans up instead.
                    let aborted = t
                        .client
                        .abort_multipart_upload()
                        .bucket(&t.bucket)
                        .key(key.as_str())
                        .upload_id(id)
                        .send()
                        .await;
                    if let Err(e) = aborted {
                        warn!(uri = %self.uri, error = %causes(&e), "cannot abort a multipart upload");
                    }
                }
            }
        }
    }
}

/// The content type a CRM or a browser expects for a key.
fn content_type(key: &str) -> &'static str {
    if key.ends_with(".gz") {
        "application/gzip"
    } else if key.ends_with(".csv") {
        "text/csv"
    } else if key.ends_with(".json") {
        "application/json"
    } else if key.ends_with(".jsonl") {
        "application/x-ndjson"
    } else {
        "application/octet-stream"
    }
}

/// A temporary name next to `path`, unique to this process, that no reader takes for a list.
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
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

/// An S3 client from the standard AWS configuration, with the SDK's retries off (ours apply)
/// and checksums only where S3 requires them (S3-compatible servers differ in the rest).
async fn s3_client(o: &StoreOptions) -> aws_sdk_s3::Client {
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::config::timeout::TimeoutConfig;
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

    let region =
        aws_config::meta::region::RegionProviderChain::first_try(o.region.clone().map(Region::new))
            .or_default_provider()
            .or_else(Region::from_static("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(300))
                .build(),
        );
    if let Some(endpoint) = &o.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(o.force_path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Runs one S3 request, retrying transient failures with exponential backoff and full jitter.
async fn retry<T, E, F, Fut>(
    o: &StoreOptions,
    op: &'static str,
    uri: &str,
    mut request: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    >,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let attempts = o.attempts.max(1);
    let mut backoff = o.initial_backoff;
    let mut attempt = 1;
    loop {
        match request().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let (transient, message) = describe(&e);
                if !transient || attempt >= attempts {
                    return Err(StoreError::Remote {
                        op,
                        uri: uri.into(),
                        message,
                        transient,
                        attempts: attempt,
                    });
                }
                let wait = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
                warn!(
                    op,
                    uri,
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    error = %message,
                    "object store request failed, retrying"
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(20));
                attempt += 1;
            }
        }
    }
}

/// Whether an SDK error is worth retrying, and a one-line description of it.
fn describe<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> (bool, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("");
            let transient = status >= 500
                || status == 429
                || matches!(code, "SlowDown" | "RequestTimeout" | "InternalError");
            let text = match (code, s.err().message()) {
                ("", _) => format!("HTTP {status}"),
                (code, Some(m)) => format!("HTTP {status} {code}: {m}"),
                (code, None) => format!("HTTP {status} {code}"),
            };
            (transient, text)
        }
        SdkError::DispatchFailure(d) => (
            d.is_io() || d.is_timeout() || d.is_other(),
            format!("the server cannot be reached: {}", causes(e)),
        ),
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => (true, causes(e)),
        _ => (false, causes(e)),
    }
}

/// An error and its sources on one line, `outer: inner: …` (the SDK's own rendering adds a
/// multi-line debug dump).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if parts.last() != Some(&text) && !text.is_empty() {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            written.sha256,
            crate::publish::hex(&Sha256::digest(b"x,y\n"))
        );
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
