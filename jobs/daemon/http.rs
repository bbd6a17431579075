//! The daemon's HTTP endpoint: `GET /healthz` and `GET /metrics` on hyper, hardened so that
//! a misbehaving client cannot starve it. A monitoring system that cannot reach `/healthz`
//! restarts the daemon, so the endpoint must answer while the daemon is healthy whatever else
//! connects:
//!
//! - a connection that does not send its request headers within [`HEADER_TIMEOUT`], or is not
//!   done within [`CONNECTION_TIMEOUT`], is closed;
//! - at most [`MAX_CONNECTIONS`] are served at once; more wait in the kernel's backlog, and the
//!   timeouts above bound how long;
//! - a failing `accept()` (at the descriptor limit, typically) is retried after a pause that
//!   doubles up to [`MAX_ACCEPT_BACKOFF`], not in a loop that spins a core.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::metrics::Metrics;

/// How long a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last in all, however slowly it reads or writes.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The longest pause between failing `accept()` calls.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How long `/readyz` waits for the state database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `/healthz`, `/readyz` (which asks the state database, `state`) and `/metrics` on
/// `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, state: sqlx::AnyPool) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::ZERO;
    loop {
        // A slot first: a connection beyond the bound stays in the backlog, not in memory.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return; // the semaphore is never closed
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                warn!(error = %e, pause_ms = backoff.as_millis() as u64, "cannot accept a connection: pausing");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let (metrics, state) = (metrics.clone(), state.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (metrics, state) = (metrics.clone(), state.clone());
                async move {
                    let ready = if request.uri().path() == "/readyz" {
                        Some(ready(&state).await)
                    } else {
                        None
                    };
                    Ok::<_, Infallible>(respond(&request, &metrics, ready))
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                // A client that hangs up or sends garbage is the client's problem: not worth
                // more than a debug line.
                Ok(Err(e)) => debug!(error = %e, "metrics connection ended"),
                Err(_) => debug!("metrics connection timed out"),
            }
            drop(slot);
        });
    }
}

/// Whether the state database answers (the ledger and the locks live there): `Err` says why
/// not, without the URL.
async fn ready(state: &sqlx::AnyPool) -> Result<(), String> {
    match tokio::time::timeout(READY_TIMEOUT, sqlx::query("SELECT 1").execute(state)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("the state database: {e}")),
        Err(_) => Err(format!(
            "the state database did not answer in {} s",
            READY_TIMEOUT.as_secs()
        )),
    }
}

/// The answer to one request (`ready`: the state database's answer, for `/readyz`).
fn respond(
    request: &Request<Incoming>,
    metrics: &Metrics,
    ready: Option<Result<(), String>>,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/readyz") => match ready {
            Some(Ok(())) => (
                StatusCode::OK,
                "application/json",
                "{\"status\":\"ready\"}\n".to_string(),
            ),
            other => (
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                serde_json::json!({
                    "status": "not ready",
                    "error": other.and_then(Result::err).unwrap_or_default(),
                })
                .to_string()
                    + "\n",
            ),
        },
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        (&Method::GET, "/healthz") => (StatusCode::OK, "application/json", metrics.health()),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A state database pool that connects when first asked.
    fn state(url: &str) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy(url)
            .unwrap()
    }

    /// `/readyz` asks the state database: ready when it answers, 503 with why when not (and
    /// `/healthz`, which only says the process serves, stays 200).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_asks_the_state_database() {
        for (url, ready) in [
            ("sqlite::memory:", true),
            ("postgres://u:secret@127.0.0.1:1/x", false),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(serve(listener, Arc::new(Metrics::default()), state(url)));
            let answer = get(port, "/readyz").await;
            if ready {
                assert!(
                    answer.starts_with("HTTP/1.1 200") && answer.contains("\"ready\""),
                    "{answer}"
                );
            } else {
                assert!(
                    answer.starts_with("HTTP/1.1 503") && answer.contains("the state database"),
                    "{answer}"
                );
                assert!(!answer.contains("secret"), "{answer}");
            }
            assert!(get(port, "/healthz").await.starts_with("HTTP/1.1 200"));
            let metrics = get(port, "/metrics").await;
            assert!(
                metrics.contains("targeting_build_info{version=\""),
                "{metrics}"
            );
            server.abort();
        }
    }

    async fn get(port: u16, path: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Idle connections beyond the bound neither stop `/healthz` from answering for longer
    /// than the header timeout, nor stay open for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_cannot_starve_the_endpoint() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let metrics = Arc::new(Metrics::default());
        metrics.skipped("deal", "locked");
        let server = tokio::spawn(serve(listener, metrics, state("sqlite::memory:")));

        let ok = get(port, "/healthz").await;
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.contains("\"ok\""),
            "{ok}"
        );
        let metrics = get(port, "/metrics").await;
        assert!(
            metrics.contains("targeting_skipped_total{campaign=\"deal\",reason=\"locked\"} 1"),
            "{metrics}"
        );
        assert!(get(port, "/nothing").await.starts_with("HTTP/1.1 404"));

        // Twice the bound of connections that send nothing.
        let mut idle = Vec::new();
        for _ in 0..2 * MAX_CONNECTIONS {
            idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        let start = Instant::now();
        let ok = get(port, "/healthz").await;
        let waited = start.elapsed();
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        // The first 64 are closed after the header timeout, the next 64 take their slots, and
        // are closed one timeout later; only then is this request's turn.
        assert!(
            waited < 2 * HEADER_TIMEOUT + Duration::from_secs(3),
            "healthz waited {waited:?}"
        );
        // The idle connections were closed by the server: reading gives end of file (or a
        // 408 the server sends before closing).
        let mut first = idle.swap_remove(0);
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(1), first.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "an idle connection is still open");
        server.abort();
    }

    #[tokio::test]
    async fn other_methods_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(Metrics::default()),
            state("sqlite::memory:"),
        ));
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 405"), "{out}");
        server.abort();
    }
}
