//! Signals to typed commands (signal-hook): SIGTERM and SIGINT request a graceful shutdown; a
//! second one, more than a second later, exits at once (a signal sent to the whole process group
//! often arrives twice together, which must not cut the drain short).
//!
//! Invariant: signal handling only flips the shutdown token; the stages themselves decide how to
//! drain, so a signal can never interrupt a store commit halfway.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Cancels `shutdown` on the first SIGTERM/SIGINT; exits the process (status 130) on another
/// one that comes more than a second later.
pub fn shutdown_on_signals(
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    Ok(tokio::spawn(async move {
        let mut first: Option<Instant> = None;
        while let Some(signal) = signals.next().await {
            match first {
                None => {
                    info!(signal, "shutdown requested; finishing in-flight work");
                    first = Some(Instant::now());
                    shutdown.cancel();
                }
                Some(t) if t.elapsed() > Duration::from_secs(1) => {
                    warn!(signal, "second signal; exiting now");
                    std::process::exit(130);
                }
                Some(_) => {}
            }
        }
    }))
}
