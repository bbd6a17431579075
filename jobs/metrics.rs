//! What the daemon tells a monitoring system: Prometheus metrics of the runs it recorded, and a
//! health check, served over plain HTTP on a (loopback by default) address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::warn;

/// Counters of the campaign runs this process recorded in the ledger.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Ledger rows by (campaign, status).
    runs: BTreeMap<(String, String), u64>,
    /// Sum and count of run durations by campaign, in seconds.
    durations: BTreeMap<String, (f64, u64)>,
    /// Rows published (treatment arm) by campaign.
    rows: BTreeMap<String, u64>,
    /// Unix time of the last succeeded run by campaign.
    last_success: BTreeMap<String, i64>,
    /// Firings skipped because the run was done or held elsewhere, by campaign and reason.
    skipped: BTreeMap<(String, String), u64>,
    /// The campaign running now, if any.
    running: Option<String>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A run recorded with `status` (`succeeded`, `failed`, `aborted`).
    pub fn record(&self, campaign: &str, status: &str, seconds: f64, rows: usize) {
        self.with(|c| {
            *c.runs.entry((campaign.into(), status.into())).or_default() += 1;
            let d = c.durations.entry(campaign.into()).or_default();
            d.0 += seconds;
            d.1 += 1;
            if status == "succeeded" {
                *c.rows.entry(campaign.into()).or_default() += rows as u64;
                c.last_success
                    .insert(campaign.into(), chrono::Utc::now().timestamp());
            }
        });
    }

    /// A firing that did not run: `done` (already succeeded) or `locked` (running elsewhere).
    pub fn skipped(&self, campaign: &str, reason: &str) {
        self.with(|c| {
            *c.skipped
                .entry((campaign.into(), reason.into()))
                .or_default() += 1
        });
    }

    pub fn set_running(&self, campaign: Option<&str>) {
        self.with(|c| c.running = campaign.map(str::to_string));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.with(|c| {
            let mut out = String::new();
            let _ = writeln!(out, "# HELP targeting_runs_total Campaign runs recorded in the ledger by this process, by status.");
            let _ = writeln!(out, "# TYPE targeting_runs_total counter");
            for ((campaign, status), n) in &c.runs {
                let _ = writeln!(
                    out,
                    "targeting_runs_total{{campaign=\"{campaign}\",status=\"{status}\"}} {n}"
                );
            }
            let _ = writeln!(out, "# HELP targeting_run_duration_seconds Duration of campaign runs.");
            let _ = writeln!(out, "# TYPE targeting_run_duration_seconds summary");
            for (campaign, (sum, count)) in &c.durations {
                let _ = writeln!(
                    out,
                    "targeting_run_duration_seconds_sum{{campaign=\"{campaign}\"}} {sum:.3}"
                );
                let _ = writeln!(
                    out,
                    "targeting_run_duration_seconds_count{{campaign=\"{campaign}\"}} {count}"
                );
            }
            let _ = writeln!(out, "# HELP targeting_rows_published_total Rows published (treatment arm) by succeeded runs.");
            let _ = writeln!(out, "# TYPE targeting_rows_published_total counter");
            for (campaign, n) in &c.rows {
                let _ = writeln!(
                    out,
                    "targeting_rows_published_total{{campaign=\"{campaign}\"}} {n}"
                );
            }
            let _ = writeln!(out, "# HELP targeting_last_success_timestamp_seconds When the campaign last succeeded.");
            let _ = writeln!(out, "# TYPE targeting_last_success_timestamp_seconds gauge");
            for (campaign, t) in &c.last_success {
                let _ = writeln!(
                    out,
                    "targeting_last_success_timestamp_seconds{{campaign=\"{campaign}\"}} {t}"
                );
            }
            let _ = writeln!(out, "# HELP targeting_skipped_total Firings that did not run: done already, or running elsewhere.");
            let _ = writeln!(out, "# TYPE targeting_skipped_total counter");
            for ((campaign, reason), n) in &c.skipped {
                let _ = writeln!(
                    out,
                    "targeting_skipped_total{{campaign=\"{campaign}\",reason=\"{reason}\"}} {n}"
                );
            }
            let _ = writeln!(out, "# HELP targeting_running Whether a campaign is running now.");
            let _ = writeln!(out, "# TYPE targeting_running gauge");
            let _ = writeln!(out, "targeting_running {}", u8::from(c.running.is_some()));
            out
        })
    }

    fn health(&self) -> String {
        self.with(|c| {
            serde_json::json!({ "status": "ok", "running": c.running }).to_string() + "\n"
        })
    }
}

/// Serves `GET /healthz` and `GET /metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            // The request line is all we need; stop at the end of the headers or 8 KB.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, content_type, body) = match (line.starts_with("GET "), path) {
                (true, "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                (true, "/healthz") => ("200 OK", "application/json", metrics.health()),
                (true, _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
                (false, _) => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "only GET\n".to_string(),
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = socket.write_all(response.as_bytes()).await {
                warn!(error = %e, "cannot answer a metrics request");
            }
        });
    }
}
