//! Signals to typed commands (signal-hook). SIGTERM and SIGINT request a graceful shutdown. A
//! second one, more than a second later, exits at once: a signal sent to the whole process
//! group often arrives twice together, which must not cut the drain short. Under `run`, SIGHUP
//! asks for a reload of the configuration and SIGUSR1 for a backup now ([`Command`]).
//!
//! Invariant: signal handling only flips the shutdown token or sends a command; the stages
//! themselves decide how to drain, so a signal can never interrupt a store commit halfway.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What a signal asks of the running appliance, besides stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// SIGHUP: read the configuration file again and run with it (a bad one is refused and the
    /// running configuration stays).
    Reload,
    /// SIGUSR1: start a backup now.
    BackupNow,
}

/// Tracks the stop signals: the first cancels `shutdown`, a later one exits.
struct Stop {
    shutdown: CancellationToken,
    first: Option<Instant>,
}

impl Stop {
    fn signal(&mut self, signal: i32) {
        match self.first {
            None => {
                info!(signal, "shutdown requested; finishing in-flight work");
                crate::service::stopping();
                self.first = Some(Instant::now());
                self.shutdown.cancel();
            }
            Some(t) if t.elapsed() > Duration::from_secs(1) => {
                warn!(
                    signal,
                    "停止の指示が2回届いたため、すぐに終了します (second signal; exiting now)"
                );
                std::process::exit(130);
            }
            Some(_) => {}
        }
    }
}

/// Cancels `shutdown` on the first SIGTERM/SIGINT; exits the process (status 130) on another
/// one that comes more than a second later. (The demo: no reload, no backup signal.)
pub fn shutdown_on_signals(
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let mut stop = Stop {
        shutdown,
        first: None,
    };
    Ok(tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            stop.signal(signal);
        }
    }))
}

/// [`shutdown_on_signals`], and SIGHUP and SIGUSR1 as [`Command`]s on the returned channel.
pub fn listen(shutdown: CancellationToken) -> anyhow::Result<mpsc::UnboundedReceiver<Command>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut stop = Stop {
        shutdown,
        first: None,
    };
    tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            let command = match signal {
                SIGHUP => Command::Reload,
                SIGUSR1 => Command::BackupNow,
                _ => {
                    stop.signal(signal);
                    continue;
                }
            };
            info!(signal, ?command, "signal received");
            if tx.send(command).is_err() {
                warn!(
                    signal,
                    "停止中のため、このシグナルは無視します (the appliance is stopping; the signal is ignored)"
                );
            }
        }
    });
    Ok(rx)
}
