//! The admin UI's backend: implements `admin_ui::Backend` over the store, the login desk and
//! the sessions, and serves the UI over HTTPS.
//!
//! Invariant (architecture invariant 7): every call resolves the principal's account from the
//! store afresh and decides with `Account::may_see` / `may_manage` whether it may; an office,
//! submission, notice or return item the principal may not see answers `NotFound`, exactly
//! like one that does not exist.

pub mod tls;
