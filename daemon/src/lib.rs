//! kaigo-relay: relays 介護給付費 claim files from a drop folder to the federation gateway over
//! mutual TLS, exactly once, and keeps the truth about every submission in an embedded redb store.
//!
//! The map is `architecture.md`: `intake` takes complete files from the drop folder and commits
//! them through `store`; `relay` sends them with `federation`'s client and follows them to their
//! 受付 result; `app` runs the stages; `cli` is the command line; `demo` runs the whole path
//! against an embedded `federation-sim`.

pub mod accounts;
pub mod admin;
pub mod alerts;
pub mod app;
pub mod backup;
#[doc(hidden)]
pub mod bench_support;
pub mod claim;
pub mod cli;
pub mod config;
pub mod deadline;
pub mod demo;
pub mod disk_guard;
pub mod explain;
pub mod failpoint;
pub mod federation;
pub mod intake;
pub mod listing;
pub mod mirror;
pub mod notice;
pub mod recent_log;
pub mod relay;
pub mod returns;
pub mod service;
pub mod setup;
pub mod signals;
pub mod status;
pub mod store;
pub mod submission;
pub mod support;
pub mod timefmt;
pub mod transport;
pub mod validate;
pub mod withdraw;

/// Installs the process-wide rustls crypto provider (ring). Call once at the start of `main`;
/// calling again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
