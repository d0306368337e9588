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

/// The text of every non-test source file of the daemon and the admin UI, and every template.
fn product_sources() -> String {
    fn walk(dir: &std::path::Path, out: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            match p.extension().and_then(|x| x.to_str()) {
                // A module's own tests raise nothing the product shows.
                Some("rs") => out.push_str(text.split("\n#[cfg(test)]\nmod tests").next().unwrap()),
                Some("html") => out.push_str(&text),
                _ => {}
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = String::new();
    for dir in ["daemon/src", "admin-ui/src", "admin-ui/templates"] {
        walk(&root.join(dir), &mut out);
    }
    out
}

/// The other direction: every entry of the catalogue is raised by the product (its `code::`
/// constant named in the code, its code written in a log field or template link), so the
/// catalogue explains only what a person can actually meet. The `gateway.*` entries are the
/// gateway's (walked above); the `alert.*` ones are the alert kinds' (alerts::kinds walks
/// those).
#[test]
fn every_entry_is_raised_somewhere_in_the_product() {
    let src = product_sources();
    let named = |c: &str| {
        let constant: String = c
            .chars()
            .map(|ch| {
                if ch == '.' {
                    '_'
                } else {
                    ch.to_ascii_uppercase()
                }
            })
            .collect();
        src.match_indices(&format!("code::{constant}"))
            .any(|(at, m)| {
                !src[at + m.len()..].starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_')
            })
            || src.contains(&format!("\"{c}\""))
            || src.contains(&format!("/help/code/{c}\""))
    };
    let unraised: Vec<&str> = admin_ui::help::entries()
        .map(|e| e.code)
        .filter(|c| !c.starts_with("gateway.") && !c.starts_with("alert."))
        .filter(|c| !named(c))
        .collect();
    assert!(
        unraised.is_empty(),
        "catalogue entries nothing raises (wire them or remove them): {unraised:?}"
    );
}
