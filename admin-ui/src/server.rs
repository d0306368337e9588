//! The HTTPS server: accepts TCP connections, runs the TLS handshake (ALPN `h2` and
//! `http/1.1`), serves each connection with hyper's auto builder, reads bodies within the
//! limit, and drains on shutdown.
//!
//! Invariants kept here: a handshake that has not finished within 10 s is dropped; a request
//! whose headers do not arrive in time is dropped (http/1.1), and a body over
//! [`BODY_LIMIT`] is answered 413 without being read further; on shutdown the listener closes
//! at once, open connections get a graceful close (GOAWAY / `Connection: close`) and are cut
//! after a bounded drain, so `serve` always returns.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::AdminUi;
use crate::backend::{Backend, Client};
use crate::forms::BODY_LIMIT;
use crate::pages::Problem;

/// A TLS handshake must finish within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The request line and headers must arrive within this (http/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, connections get this long to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at accept (a LAN UI has a few users).
const MAX_CONNECTIONS: usize = 256;
/// h2 streams per connection.
const MAX_STREAMS: u32 = 64;
/// Largest request header block.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves HTTPS on `listener` until `shutdown`: h2 and http/1.1 (ALPN set on a clone of
/// `tls`), a 10 s TLS handshake timeout, a header read timeout, a 64 KiB request body limit
/// (413 beyond), and a graceful shutdown with a bounded drain.
pub async fn serve<B: Backend>(
    ui: AdminUi<B>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut config = (*tls).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);

    let local = listener.local_addr().ok();
    tracing::info!(address = ?local, "admin UI listening (HTTPS)");

    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::warn!(%peer, "admin UI: too many connections; closing a new one");
                        drop(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(connection(
                        ui.clone(),
                        acceptor.clone(),
                        Arc::clone(&builder),
                        tcp,
                        peer,
                        graceful.watcher(),
                        shutdown.clone(),
                        permit,
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "admin UI: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);

    let open = connections.len();
    if open > 0 {
        tracing::info!(open, "admin UI: closing connections");
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "admin UI: connections still open after the drain; cutting them"
        );
        connections.shutdown().await;
    }
    tracing::info!("admin UI stopped");
    Ok(())
}

/// One connection: handshake, then HTTP until the peer closes or the drain ends it.
#[allow(clippy::too_many_arguments)]
async fn connection<B: Backend>(
    ui: AdminUi<B>,
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tcp: TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let tls = tokio::select! {
        () = shutdown.cancelled() => return,
        r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "admin UI: TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "admin UI: TLS handshake timed out");
                return;
            }
        },
    };
    let service = service_fn(move |req: Request<Incoming>| {
        let ui = ui.clone();
        async move { Ok::<_, Infallible>(ui.serve_incoming(req, peer).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "admin UI: connection ended with an error");
    }
}

impl<B: Backend> AdminUi<B> {
    /// Reads a request's body within the limit, then answers it.
    async fn serve_incoming(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return self.problem(&Problem::TooLarge);
        }
        let bytes =
            match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, BODY_LIMIT).collect())
                .await
            {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(e)) => {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        return self.problem(&Problem::TooLarge);
                    }
                    tracing::debug!(%peer, error = %e, "admin UI: request body unreadable");
                    return self.problem(&Problem::BadRequest);
                }
                Err(_) => return self.problem(&Problem::Timeout),
            };
        let client = Client {
            address: peer.ip().to_canonical(),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(512)
                .collect(),
        };
        self.handle(Request::from_parts(parts, bytes), client).await
    }
}
