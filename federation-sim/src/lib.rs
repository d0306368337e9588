//! federation-sim: a stand-in for the 国保連合会 federation gateway of
//! `federation-api.md` v1, used by tests, benchmarks and `kaigo-relay demo`.
//!
//! It owns the other side of the wire: a mutual-TLS HTTPS gateway (`/v1/...`) that applies the
//! 到達 and 受付 rules of `claim-format.md` to claim files, and a loopback control API
//! (`/sim/...`) that moves a virtual clock, registers offices and accounts for every
//! submission it recorded, and injects seeded, deterministic faults ([`faults`]) into the
//! gateway on demand. It is an independent implementation (it does not depend on the
//! daemon), which is what makes it a useful test peer. The invariant it keeps above all:
//! one idempotency key is one submission, recorded durably before it is acknowledged.
//!
//! At the simulated month end and in the middle of the next month it reviews every statement
//! of the month's claims by deterministic rules and issues the federation's notices per office
//! (7211 / 7311 / 7411 / お知らせ, then 7513 / 7521 / 7611 / 7621 / a PDF advice), listed and
//! downloaded through `/v1/notices` (modules `statements`, `review`, `notices`, `pdf`,
//! `phases`).
//!
//! It also generates synthetic claim files ([`generate`], module [`gen`](crate::r#gen)) that its
//! own 到達/受付 checks accept with ○: test and benchmark input for the daemon.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use federation_sim::{SimConfig, Simulator};
//! let sim = Simulator::open(SimConfig::new("/tmp/sim-state"))?;
//! sim.set_clock("2025-06-03T10:00:00+09:00".parse()?)?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let (tx, rx) = tokio::sync::oneshot::channel();
//! let server = tokio::spawn(sim.serve(shutdown.clone(), Some(tx)));
//! let listening = rx.await?;
//! println!("{}", listening.gateway_url);
//! shutdown.cancel();
//! server.await??;
//! # Ok(()) }
//! ```

mod certs;
mod claims;
mod clock;
pub mod config;
mod control;
pub mod faults;
mod gateway;
pub mod r#gen;
mod ids;
mod notices;
mod pdf;
mod phases;
mod reception;
mod reply;
mod review;
mod server;
mod sim;
mod state;
mod statements;
mod window;

pub use config::{ConfigError, DayOfMonth, NoticesConfig, OfficeConfig, SimConfig, WindowConfig};
pub use faults::{FaultKind, FaultPlan, FaultPlanError, FaultStatus};
pub use r#gen::{GenError, GenOptions, GeneratedFile, Style, generate};
pub use sim::{Listening, Simulator};
pub use window::Month;
