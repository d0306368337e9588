#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The help catalogue against the other side: every error code the federation gateway
//! (federation-sim, the independent implementation of federation-api.md) can answer — an HTTP
//! refusal or a 到達 / 受付 error item — has a `gateway.<code>` entry, so a clerk who sees one
//! on a submission gets its meaning and remedy, never a bare code.

use std::collections::BTreeSet;

/// The codes federation-sim's non-test code passes to the constructors of its error answers.
fn simulator_codes() -> BTreeSet<String> {
    let sources = [
        include_str!("../../federation-sim/src/gateway.rs"),
        include_str!("../../federation-sim/src/reply.rs"),
        include_str!("../../federation-sim/src/reception.rs"),
        include_str!("../../federation-sim/src/faults.rs"),
    ];
    let mut out = BTreeSet::new();
    for src in sources {
        let src = src.split("#[cfg(test)]").next().unwrap();
        for marker in ["ApiError::new(", "Issue::file(", "Issue::record("] {
            for part in src.split(marker).skip(1) {
                let head: String = part.chars().take(240).collect();
                // A helper that passes its caller's code on has no literal here; its callers
                // are walked instead.
                if head
                    .trim_start()
                    .starts_with("StatusCode::BAD_REQUEST, code")
                {
                    continue;
                }
                let code = head
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .find(|lit| {
                        !lit.is_empty()
                            && lit
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    })
                    .unwrap_or_else(|| panic!("no code after {marker}{head}"));
                out.insert(code.to_owned());
            }
        }
    }
    out
}

#[test]
fn every_code_the_gateway_can_answer_is_explained() {
    let codes = simulator_codes();
    assert!(
        codes.len() >= 30,
        "the walk found only {} codes: {codes:?}",
        codes.len()
    );
    for must in ["bad_credentials", "bad_insurer_number", "withdraw_closed"] {
        assert!(codes.contains(must), "the walk missed {must}: {codes:?}");
    }
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| admin_ui::help::find(&format!("gateway.{c}")).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "gateway codes without a help entry: {missing:?}"
    );
    assert_eq!(
        admin_ui::help::gateway("a_code_from_a_newer_gateway"),
        admin_ui::help::code::GATEWAY_OTHER
    );
}
