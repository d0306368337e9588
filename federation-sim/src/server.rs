//! Listeners and the serving lifecycle: binds the mutual-TLS gateway and the plain control
//! listener, publishes where they are (`listen.json`, one stdout line, the `ready` channel),
//! runs the background 受付 finaliser and the notice-phase scheduler, and shuts down
//! gracefully.
//!
//! Invariants: a stale `listen.json` is removed before binding and the new one is written
//! atomically only after both listeners are bound, so whoever reads it can connect. On
//! shutdown the listeners stop accepting at once, in-flight requests get [`GRACE`] to finish,
//! and every task holding the store has ended when `serve` returns (so the state directory
//! can be opened again straight away). Faults touch only the gateway listener: the
//! `tls_handshake` decision is taken in the accept loop, in accept order, and a request whose
//! fault drops the connection closes its whole connection without another byte being written.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::certs;
use crate::faults::Outcome;
use crate::gateway::{self, Peer};
use crate::sim::{Core, Listening};

/// How long in-flight requests may run on after shutdown is requested.
pub const GRACE: Duration = Duration::from_secs(5);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the background task reveals due 受付 results.
const FINALISE_EVERY: Duration = Duration::from_millis(100);

/// The address to put in a URL: an unspecified bind address is reached over loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

pub(crate) async fn serve(
    core: Arc<Core>,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<Listening>>,
) -> anyhow::Result<()> {
    let dir = core.config.state_dir.clone();
    let listen_json = dir.join("listen.json");
    match std::fs::remove_file(&listen_json) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot remove stale {}", listen_json.display()));
        }
    }
    let tls =
        certs::server_tls_config(&dir).context("cannot build the gateway TLS configuration")?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let gateway_listener = TcpListener::bind(core.config.gateway_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on gateway_listen {}",
                core.config.gateway_listen
            )
        })?;
    let control_listener = TcpListener::bind(core.config.control_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on control_listen {}",
                core.config.control_listen
            )
        })?;
    let gateway_addr = gateway_listener.local_addr()?;
    let control_addr = control_listener.local_addr()?;
    let listening = Listening {
        gateway_addr,
        control_addr,
        gateway_url: format!("https://{}", connectable(gateway_addr)),
        control_url: format!("http://{}", connectable(control_addr)),
    };
    let json = serde_json::json!({
        "gateway_url": listening.gateway_url,
        "control_url": listening.control_url,
    });
    certs::write_atomic(&listen_json, json.to_string().as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", listen_json.display()))?;
    println!(
        "federation-sim listening: gateway={} control={}",
        listening.gateway_url, listening.control_url
    );
    tracing::info!(
        gateway = %listening.gateway_url,
        control = %listening.control_url,
        state_dir = %dir.display(),
        "federation-sim listening"
    );
    if let Some(tx) = ready {
        let _ = tx.send(listening.clone());
    }

    let mut tasks = JoinSet::new();
    tasks.spawn(finaliser(Arc::clone(&core), shutdown.clone()));
    tasks.spawn(crate::phases::scheduler(
        Arc::clone(&core),
        shutdown.clone(),
    ));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = gateway_listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    // Responses go out at once, not after the client's delayed ACK (Nagle).
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::warn!(peer = %addr, error = %e, "cannot set TCP_NODELAY");
                    }
                    if let Some(fault) = core.faults.on_connection() {
                        tracing::info!(
                            peer = %addr,
                            fault = fault.kind.as_str(),
                            "closing the connection before the TLS handshake"
                        );
                        drop(stream);
                    } else {
                        tasks.spawn(gateway_connection(
                            Arc::clone(&core), acceptor.clone(), stream, addr, shutdown.clone(),
                        ));
                    }
                }
                Err(e) => accept_failed("gateway", e).await,
            },
            accepted = control_listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    tasks.spawn(control_connection(Arc::clone(&core), stream, addr, shutdown.clone()));
                }
                Err(e) => accept_failed("control", e).await,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => log_task_end(done),
        }
    }
    drop(gateway_listener);
    drop(control_listener);
    tracing::info!(
        connections = tasks.len(),
        "shutting down: draining in-flight requests"
    );
    let drained = tokio::time::timeout(GRACE, async {
        while let Some(done) = tasks.join_next().await {
            log_task_end(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "grace period over: closing remaining connections"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // Blocking store work started by an aborted request may still hold the core; wait for it
    // so the state directory can be reopened as soon as `serve` returns.
    let deadline = tokio::time::Instant::now() + GRACE;
    while Arc::strong_count(&core) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(core);
    tracing::info!("federation-sim stopped");
    Ok(())
}

fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a connection task panicked");
    }
}

/// Accept errors (e.g. out of file descriptors) are logged and retried after a pause.
async fn accept_failed(listener: &str, e: std::io::Error) {
    tracing::warn!(listener, error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn finaliser(core: Arc<Core>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(FINALISE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let has_pending = !core
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if !has_pending {
            continue;
        }
        let c = Arc::clone(&core);
        match tokio::task::spawn_blocking(move || c.finalise_due()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot reveal due 受付 results"),
            Err(e) => tracing::error!(error = %e, "受付 finaliser task failed"),
        }
    }
}

async fn gateway_connection(
    core: Arc<Core>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
    shutdown: CancellationToken,
) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let tls = tokio::select! {
        _ = shutdown.cancelled() => return,
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::info!(peer = %addr, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(peer = %addr, "TLS handshake timed out");
                return;
            }
        },
    };
    let fingerprint = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| certs::fingerprint(cert));
    tracing::debug!(peer = %addr, fingerprint = ?fingerprint, "TLS connection established");
    let peer = Peer { addr, fingerprint };
    // `kill`: a fault asks for the connection to be dropped without a response; `closed`: the
    // connection is gone (cancelled once `serve_connection` has returned).
    let kill = CancellationToken::new();
    let closed = CancellationToken::new();
    let (kill2, closed2, shutdown2) = (kill.clone(), closed.clone(), shutdown.clone());
    let service = service_fn(move |req| {
        let core = Arc::clone(&core);
        let peer = peer.clone();
        let (kill, closed) = (kill2.clone(), closed2.clone());
        let shutdown = shutdown2.clone();
        async move {
            match gateway::respond(core, peer, req, &shutdown).await {
                Outcome::Respond(resp) => Ok(resp),
                Outcome::Drop => {
                    kill.cancel();
                    // HTTP/1.1 drops this future with the connection. An HTTP/2 stream runs in
                    // its own task: it ends once the connection is gone, so the error can no
                    // longer reach the client.
                    closed.cancelled().await;
                    Err(ConnectionDropped)
                }
            }
        }
    });
    serve_connection(TokioIo::new(tls), service, addr, shutdown, kill).await;
    closed.cancel();
}

/// The service error of a request whose fault dropped the connection.
#[derive(Debug)]
struct ConnectionDropped;

impl std::fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for ConnectionDropped {}

async fn control_connection(
    core: Arc<Core>,
    stream: TcpStream,
    addr: SocketAddr,
    shutdown: CancellationToken,
) {
    let service = service_fn(move |req| {
        let core = Arc::clone(&core);
        async move { Ok::<_, Infallible>(crate::control::handle(core, req).await) }
    });
    let never_killed = CancellationToken::new();
    serve_connection(TokioIo::new(stream), service, addr, shutdown, never_killed).await;
}

/// Serves HTTP/1.1 or HTTP/2 on one connection until it ends or shutdown is requested (then
/// finishes in-flight requests and closes). When `kill` is cancelled the connection is dropped
/// at once: the socket closes without writing anything more (no response, no close_notify).
async fn serve_connection<I, S>(
    io: I,
    service: S,
    addr: SocketAddr,
    shutdown: CancellationToken,
    kill: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = crate::reply::Resp>
        + Send
        + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    // `biased`: once a drop is requested the connection is never polled again, so nothing more
    // is written to it.
    let result = tokio::select! {
        biased;
        _ = kill.cancelled() => {
            tracing::debug!(peer = %addr, "connection dropped by a fault");
            return;
        }
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                biased;
                _ = kill.cancelled() => return,
                result = conn.as_mut() => result,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
    }
}
