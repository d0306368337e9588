//! `kaigo-relay explain [CODE]`: the message catalogue on the command line. Every code the
//! terminal shows (a finding of `validate`, a refusal of `office add`, a note of `status`)
//! can be looked up here with the same text as the admin UI's help page, because both read
//! the one catalogue built into `admin_ui::help`; this module only lays it out for a terminal.

use std::io::Write;

use admin_ui::help::{self, Entry, Severity};

/// How `explain` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The code (or the list) was printed.
    Yes,
    /// No entry has this code; close matches were printed.
    No,
}

/// Prints the entry for `code` in Japanese then English, or every code when `code` is `None`.
pub fn run(code: Option<&str>, out: &mut dyn Write) -> std::io::Result<Found> {
    let Some(code) = code.map(str::trim) else {
        for area in help::AREAS {
            writeln!(out, "{}  {}", area.title_ja, area.title_en)?;
            for e in area.entries {
                writeln!(out, "  {:<40} {}", e.code, e.title_ja)?;
            }
            writeln!(out)?;
        }
        writeln!(
            out,
            "一つのコードの説明: kaigo-relay explain <コード> / One code: kaigo-relay explain <code>"
        )?;
        return Ok(Found::Yes);
    };
    let Some(entry) = help::find(code) else {
        writeln!(
            out,
            "コード「{code}」は説明の一覧にありません / No entry for the code \"{code}\"."
        )?;
        let near: Vec<&Entry> = help::entries()
            .filter(|e| {
                let wanted = code.to_ascii_lowercase();
                e.code.contains(&wanted)
                    || wanted
                        .split(['.', '_'])
                        .any(|w| w.len() >= 4 && e.code.contains(w))
            })
            .take(10)
            .collect();
        if !near.is_empty() {
            writeln!(out, "似たコード / Similar codes:")?;
            for e in near {
                writeln!(out, "  {:<40} {}", e.code, e.title_ja)?;
            }
        }
        writeln!(
            out,
            "すべてのコード: kaigo-relay explain / Every code: kaigo-relay explain"
        )?;
        return Ok(Found::No);
    };
    let (mark_ja, mark_en) = match entry.severity {
        Severity::Error => ("誤り・要対応", "error"),
        Severity::Warning => ("注意", "warning"),
        Severity::Info => ("お知らせ", "information"),
    };
    writeln!(out, "{}  [{mark_ja} / {mark_en}]", entry.code)?;
    writeln!(out)?;
    writeln!(out, "{}", entry.title_ja)?;
    writeln!(out, "意味:")?;
    indent(out, entry.meaning_ja)?;
    writeln!(out, "対処:")?;
    indent(out, entry.remedy_ja)?;
    writeln!(out)?;
    writeln!(out, "{}", entry.title_en)?;
    writeln!(out, "Meaning:")?;
    indent(out, entry.meaning_en)?;
    writeln!(out, "What to do:")?;
    indent(out, entry.remedy_en)?;
    writeln!(out)?;
    writeln!(
        out,
        "管理画面のヘルプ / In the admin UI: {}  ({})",
        help::href(entry.code),
        entry.help_href()
    )?;
    Ok(Found::Yes)
}

fn indent(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
    for line in text.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// The line a command prints under an error that has a catalogue entry.
pub fn hint(code: help::Code) -> String {
    format!("説明と対処 / what to do: kaigo-relay explain {code}")
}

/// An error for the terminal that names its catalogue entry.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub struct Coded {
    /// The entry.
    pub code: help::Code,
    /// What the person reads.
    pub text: String,
}

/// `text` as an error naming `code`.
pub fn coded(code: help::Code, text: impl Into<String>) -> anyhow::Error {
    Coded {
        code,
        text: text.into(),
    }
    .into()
}

/// The catalogue entry of the first error in the chain that has one.
pub fn code_of(e: &anyhow::Error) -> Option<help::Code> {
    use help::code;
    // A context is found by the error itself; the chain finds the causes below it.
    if let Some(c) = e.downcast_ref::<Coded>() {
        return Some(c.code);
    }
    e.chain().find_map(|cause| {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return Some(c.code);
        }
        if let Some(b) = cause.downcast_ref::<crate::backup::BackupError>() {
            return Some(b.code());
        }
        if let Some(o) = cause.downcast_ref::<crate::accounts::offices::OfficeError>() {
            return o.code();
        }
        if cause.downcast_ref::<crate::config::ConfigError>().is_some() {
            return Some(code::SYSTEM_CONFIG_INVALID);
        }
        cause
            .downcast_ref::<crate::store::StoreError>()
            .and_then(|s| match s {
                crate::store::StoreError::AlreadyOpen => Some(code::SYSTEM_STORE_IN_USE),
                crate::store::StoreError::Version { .. } => Some(code::SYSTEM_STORE_VERSION),
                crate::store::StoreError::Db(_) => Some(code::SYSTEM_STORE_OPEN_FAILED),
                _ => None,
            })
    })
}

/// Prints a command's failure to standard error: the whole chain, then where its catalogue
/// entry explains it.
pub fn print_failure(e: &anyhow::Error) {
    if is_broken_pipe(e) {
        return;
    }
    eprintln!("エラー (error): {e:#}");
    if let Some(c) = code_of(e) {
        eprintln!("{}", hint(c));
    }
}

/// Whether the command failed only because its reader went away (`kaigo-relay status | head`):
/// nothing to explain to the person who closed it.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_reader_is_not_reported_but_other_failures_are() {
        let closed = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the status");
        assert!(is_broken_pipe(&closed));
        let full = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull))
            .context("writing the status");
        assert!(!is_broken_pipe(&full));
        assert!(!is_broken_pipe(&coded(
            help::code::OFFICES_EXISTS,
            "already registered"
        )));
    }

    fn text(code: Option<&str>) -> (Found, String) {
        let mut out = Vec::new();
        let found = run(code, &mut out).unwrap();
        (found, String::from_utf8(out).unwrap())
    }

    #[test]
    fn an_entry_is_printed_in_both_languages_with_its_help_page() {
        let (found, out) = text(Some("offices.exists"));
        assert_eq!(found, Found::Yes);
        let e = help::find("offices.exists").unwrap();
        for part in [e.title_ja, e.title_en, "/help/code/offices.exists"] {
            assert!(out.contains(part), "{part} missing from:\n{out}");
        }
        // Every line of the remedy, indented.
        for line in e.remedy_ja.lines().chain(e.remedy_en.lines()) {
            assert!(out.contains(&format!("  {line}\n")), "{line}");
        }
        assert!(out.contains(&e.help_href()));
    }

    #[test]
    fn an_unknown_code_is_refused_with_close_matches() {
        let (found, out) = text(Some("offices.exist"));
        assert_eq!(found, Found::No);
        assert!(out.contains("offices.exists"), "{out}");
        let (found, out) = text(Some("zzz.qqqq_xxxx"));
        assert_eq!(found, Found::No);
        assert!(!out.contains("似たコード"), "{out}");
    }

    #[test]
    fn the_entry_of_a_failure_is_found_down_its_chain() {
        use anyhow::Context as _;
        let e = Err::<(), _>(coded(help::code::SYSTEM_NO_STORE_YET, "no store"))
            .context("status")
            .unwrap_err();
        assert_eq!(code_of(&e), Some(help::code::SYSTEM_NO_STORE_YET));
        let e = Err::<(), _>(std::io::Error::other("denied"))
            .context(Coded {
                code: help::code::SYSTEM_STATE_DIR,
                text: "state".into(),
            })
            .context("start")
            .unwrap_err();
        assert_eq!(code_of(&e), Some(help::code::SYSTEM_STATE_DIR));
        let e = anyhow::Error::from(crate::store::StoreError::AlreadyOpen).context("start");
        assert_eq!(code_of(&e), Some(help::code::SYSTEM_STORE_IN_USE));
        assert_eq!(code_of(&anyhow::anyhow!("plain")), None);
    }

    #[test]
    fn without_a_code_every_code_is_listed() {
        let (found, out) = text(None);
        assert_eq!(found, Found::Yes);
        for e in help::entries() {
            assert!(out.contains(e.code), "{}", e.code);
        }
    }
}
