//! Writing one object: streamed to a temporary file renamed into place, or to S3 in one request
//! or, once it outgrows one upload part, as a multipart upload part by part. The writer hashes
//! what it writes (SHA-256) for the manifest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use super::s3::{causes, retry, S3Target};
use super::{hex, StoreError, Written};

/// An object being written; see [`ObjectStore::writer`]. Dropping it without
/// [`finish`](Self::finish) leaves nothing visible (call [`abort`](Self::abort) to also free
/// a multipart upload at once).
#[derive(Debug)]
pub struct ObjectWriter {
    pub(super) uri: String,
    pub(super) sink: Sink,
    pub(super) hasher: Sha256,
    pub(super) bytes: u64,
}

#[derive(Debug)]
pub(super) enum Sink {
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
            sha256: hex(&std::mem::take(&mut self.hasher).finalize()),
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
pub(super) fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}
