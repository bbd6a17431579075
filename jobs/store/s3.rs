//! S3: the client, built from the standard AWS configuration, and the one retry policy every
//! request goes through (transient failures retried with exponential backoff and full jitter;
//! the SDK's own retries are off), with errors described on one line.

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use rand::Rng;
use tracing::warn;

use super::{StoreError, StoreOptions};

/// A bucket and key prefix, and the client and options that reach them; shared by the store
/// and its writers.
#[derive(Debug)]
pub(super) struct S3Target {
    pub(super) client: aws_sdk_s3::Client,
    pub(super) bucket: String,
    /// Key prefix, empty or ending in `/`.
    pub(super) prefix: String,
    pub(super) options: StoreOptions,
}

impl S3Target {
    /// The full object key of a key under the prefix.
    pub(super) fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// An S3 client from the standard AWS configuration, with the SDK's retries off (ours apply)
/// and checksums only where S3 requires them (S3-compatible servers differ in the rest).
pub(super) async fn s3_client(o: &StoreOptions) -> aws_sdk_s3::Client {
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
pub(super) async fn retry<T, E, F, Fut>(
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
pub(super) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
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
