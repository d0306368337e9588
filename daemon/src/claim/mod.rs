//! The claim domain, pure and without I/O: identifiers as typed values, reading CP932 claim
//! files into records, and `check(bytes, context) -> Report`.
//!
//! Invariant: nothing in here touches the file system, the network or the clock, so every rule
//! is testable on bytes alone, and the same bytes always give the same report.

mod check;
mod ids;
pub mod records;
pub mod sample;
mod statements;
pub mod table;

pub use check::{
    CheckContext, ClaimSummary, Completeness, Finding, OfficeStanding, Report, Severity, Verdict,
    check, completeness,
};
pub use ids::{
    FederationUserId, IdError, InsuredNumber, InsurerNumber, Month, OfficeNumber, ProcessingMonth,
    ServiceMonth, mod10_check_digit,
};
pub use statements::{StatementRef, statements};
