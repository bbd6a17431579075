//! Reading what the binary published to an S3-compatible server, with the SDK directly (not
//! through the project's own store), and a TCP relay that can play a server going away.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_sdk_s3::config::{Credentials, Region};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A client for `endpoint` with explicit credentials and path-style addressing.
pub fn client(endpoint: &str, key: &str, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key, secret, None, None, "tests"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The client of the shared test server (`AWS_ENDPOINT_URL`, from `scripts/test.sh`).
pub fn default_client() -> aws_sdk_s3::Client {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL must name an S3-compatible server: run the tests with \
         `bash scripts/test.sh`, which starts one",
    );
    client(&endpoint, "test", "test")
}

/// One listed object.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub size: i64,
    pub etag: String,
    /// Milliseconds since the epoch.
    pub modified_ms: i64,
}

pub async fn create_bucket(c: &aws_sdk_s3::Client, bucket: &str) {
    c.create_bucket().bucket(bucket).send().await.unwrap();
}

/// Every object under `prefix`, by key.
pub async fn list(c: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<Object> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        for o in page.contents() {
            out.push(Object {
                key: o.key().unwrap().to_string(),
                size: o.size().unwrap_or_default(),
                etag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                modified_ms: o.last_modified().unwrap().to_millis().unwrap(),
            });
        }
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

pub async fn get(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = c.get_object().bucket(bucket).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// The run folders of a campaign for `date` under `root`, oldest first
/// (`<root>/<campaign>/dt=<date>/run=…/`).
pub async fn run_prefixes(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    root: &str,
    campaign: &str,
    date: &str,
) -> Vec<String> {
    let day = format!("{root}/{campaign}/dt={date}/");
    let mut runs: Vec<String> = list(c, bucket, &day)
        .await
        .into_iter()
        .filter_map(|o| {
            let rest = o.key.strip_prefix(&day)?;
            // The day's `latest` pointer lies beside the run folders.
            let run = rest.split('/').next().filter(|r| r.starts_with("run="))?;
            Some(format!("{day}{run}/"))
        })
        .collect();
    runs.sort();
    runs.dedup();
    runs
}

/// One published run folder read back from S3 and checked against its manifest.
#[derive(Debug)]
pub struct S3Export {
    pub prefix: String,
    pub manifest: serde_json::Value,
    pub objects: Vec<Object>,
    /// The user id of every row, in file order.
    pub ids: Vec<i64>,
    /// The holdout file's user ids, when there is one.
    pub holdout_ids: Option<HashSet<i64>>,
    pub part_hashes: Vec<String>,
}

/// Reads the run folder `prefix` (ending in `/`): `_SUCCESS` present and written last, every
/// part's row count and SHA-256 as the manifest says, the preset's header, no duplicate user.
pub async fn read_s3_export(c: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> S3Export {
    let objects = list(c, bucket, prefix).await;
    let find = |name: &str| {
        objects
            .iter()
            .find(|o| o.key == format!("{prefix}{name}"))
            .unwrap_or_else(|| panic!("no {name} under {prefix}: {objects:?}"))
            .clone()
    };
    let success = find("_SUCCESS");
    let manifest_obj = find("manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&get(c, bucket, &manifest_obj.key).await).unwrap();
    // Written in order: every part, then the manifest, then `_SUCCESS`.
    assert!(
        success.modified_ms >= manifest_obj.modified_ms,
        "{objects:?}"
    );
    let format = manifest["format"].as_str().unwrap().to_string();
    let columns: Vec<String> = manifest["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let mut ids = Vec::new();
    let mut part_hashes = Vec::new();
    let mut listed = vec!["_SUCCESS".to_string(), "manifest.json".to_string()];
    for part in manifest["parts"].as_array().unwrap() {
        let name = part["path"].as_str().unwrap();
        listed.push(name.to_string());
        let obj = find(name);
        assert!(obj.modified_ms <= manifest_obj.modified_ms, "{objects:?}");
        let bytes = get(c, bucket, &obj.key).await;
        assert_eq!(bytes.len() as i64, obj.size);
        assert_eq!(part["bytes"].as_u64().unwrap() as usize, bytes.len());
        let sha = super::hex(&Sha256::digest(&bytes));
        assert_eq!(part["sha256"].as_str().unwrap(), sha, "sha256 of {name}");
        part_hashes.push(sha);
        let rows = decode_ids(&format, &columns, &bytes);
        assert_eq!(
            part["rows"].as_u64().unwrap() as usize,
            rows.len(),
            "rows of {name}"
        );
        ids.extend(rows);
    }
    let holdout_ids = match manifest["holdout_file"].as_object() {
        Some(h) => {
            let name = h["path"].as_str().unwrap();
            listed.push(name.to_string());
            let obj = find(name);
            let bytes = get(c, bucket, &obj.key).await;
            assert_eq!(
                h["sha256"].as_str().unwrap(),
                super::hex(&Sha256::digest(&bytes))
            );
            let held = decode_ids(
                "csv_gzip",
                &["external_id".into(), "campaign_id".into(), "variant".into()],
                &bytes,
            );
            assert_eq!(h["rows"].as_u64().unwrap() as usize, held.len());
            assert_eq!(
                manifest["holdout_count"].as_u64().unwrap() as usize,
                held.len()
            );
            Some(held.into_iter().collect())
        }
        None => None,
    };
    // An export delivered to a watched prefix also has its marker (`publish::deliver`).
    if manifest.get("delivered_to").is_some()
        && objects
            .iter()
            .any(|o| o.key == format!("{prefix}_DELIVERED"))
    {
        listed.push("_DELIVERED".into());
    }
    listed.sort();
    let mut present: Vec<String> = objects
        .iter()
        .map(|o| o.key.strip_prefix(prefix).unwrap().to_string())
        .collect();
    present.sort();
    assert_eq!(
        present, listed,
        "exactly the manifest's files under {prefix}"
    );
    assert_eq!(manifest["row_count"].as_u64().unwrap() as usize, ids.len());
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate users in {prefix}");
    S3Export {
        prefix: prefix.into(),
        manifest,
        objects,
        ids,
        holdout_ids,
        part_hashes,
    }
}

/// The user ids of a part, checking its header (CSV), keys (JSON lines) or columns (Parquet)
/// against the manifest's columns.
pub fn decode_ids(format: &str, columns: &[String], bytes: &[u8]) -> Vec<i64> {
    let mut ids = Vec::new();
    match format {
        "csv" | "csv_gzip" => {
            let mut text = String::new();
            if format == "csv_gzip" {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_string(&mut text)
                    .unwrap();
            } else {
                text = String::from_utf8(bytes.to_vec()).unwrap();
            }
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
            assert_eq!(&header, columns);
            for rec in reader.records() {
                ids.push(rec.unwrap()[0].parse().unwrap());
            }
        }
        "jsonl" => {
            for line in std::str::from_utf8(bytes).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
                assert_eq!(keys.len(), columns.len(), "{line}");
                ids.push(v[&columns[0]].as_str().unwrap().parse().unwrap());
            }
        }
        "parquet" => {
            use polars_io::SerReader;
            let frame = polars_io::parquet::read::ParquetReader::new(std::io::Cursor::new(bytes))
                .finish()
                .unwrap();
            let names: Vec<String> = frame
                .get_column_names()
                .iter()
                .map(|n| n.to_string())
                .collect();
            assert_eq!(&names, columns);
            for row in parquet_strings(bytes, &[columns[0].as_str()]) {
                ids.push(row[0].as_deref().unwrap().parse().unwrap());
            }
        }
        other => panic!("unknown format {other}"),
    }
    ids
}

/// The named text columns of a Parquet file, row by row.
pub fn parquet_strings(bytes: &[u8], names: &[&str]) -> Vec<Vec<Option<String>>> {
    use polars_io::SerReader;
    let frame = polars_io::parquet::read::ParquetReader::new(std::io::Cursor::new(bytes))
        .finish()
        .unwrap();
    let columns: Vec<Vec<Option<String>>> = names
        .iter()
        .map(|n| {
            frame
                .column(n)
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        })
        .collect();
    (0..frame.height())
        .map(|i| columns.iter().map(|c| c[i].clone()).collect())
        .collect()
}

/// A TCP relay to an upstream server that goes away, as a stopped server does, once a client
/// sends `trip_on`: it closes every connection and stops listening, so new connections are
/// refused. [`Relay::restart`] listens on the same port again.
#[derive(Debug)]
pub struct Relay {
    pub port: u16,
    upstream: String,
    pub tripped: Arc<AtomicBool>,
}

impl Relay {
    pub async fn start(upstream: &str, trip_on: Option<&'static [u8]>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay {
            port,
            upstream: upstream.into(),
            tripped: Arc::new(AtomicBool::new(false)),
        };
        relay.serve(listener, trip_on);
        relay
    }

    /// Listens again (after tripping), never tripping this time.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.tripped.store(false, Ordering::SeqCst);
        self.serve(listener, None);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: TcpListener, trip_on: Option<&'static [u8]>) {
        let (down_tx, down_rx) = tokio::sync::watch::channel(false);
        let upstream = self.upstream.clone();
        let tripped = self.tripped.clone();
        tokio::spawn(async move {
            let mut down = down_rx.clone();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { break };
                        let upstream = upstream.clone();
                        let down_tx = down_tx.clone();
                        let down_rx = down_rx.clone();
                        let tripped = tripped.clone();
                        tokio::spawn(async move {
                            relay(client, &upstream, trip_on, down_tx, down_rx, tripped).await;
                        });
                    }
                    _ = down.changed() => break,
                }
            }
            // The listener is dropped here: new connections are refused.
        });
    }
}

async fn relay(
    client: TcpStream,
    upstream: &str,
    trip_on: Option<&'static [u8]>,
    down_tx: tokio::sync::watch::Sender<bool>,
    mut down_rx: tokio::sync::watch::Receiver<bool>,
    tripped: Arc<AtomicBool>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let to_server = async {
        let mut buf = vec![0u8; 64 * 1024];
        // The end of the previous read, so a pattern split across reads is still seen.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if let Some(pattern) = trip_on {
                let mut window = std::mem::take(&mut tail);
                window.extend_from_slice(&buf[..n]);
                if window.windows(pattern.len()).any(|w| w == pattern) {
                    tripped.store(true, Ordering::SeqCst);
                    let _ = down_tx.send(true);
                    return;
                }
                let keep = window.len().saturating_sub(pattern.len());
                tail = window[keep..].to_vec();
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let to_client = tokio::io::copy(&mut sr, &mut cw);
    tokio::select! {
        _ = to_server => {}
        _ = to_client => {}
        _ = down_rx.changed() => {}
    }
}
