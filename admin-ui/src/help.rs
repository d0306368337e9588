//! Help (ヘルプ): the message catalogue, the help page of every screen and the operations
//! manual, all from `docs/` (built in by `build.rs`), and the Markdown rendering of them.
//!
//! Invariants kept here: a code is named only through a [`code`] constant, which exists only
//! for an entry of the catalogue, so the program cannot raise a code the help does not explain
//! (the build fails on an entry with a missing text); every page of the UI maps to a help
//! topic ([`topic_of`]) and every message shown links to an explanation ([`href`]); rendered
//! Markdown never carries raw HTML (it is shown as text) or inline style, so the pages keep the
//! CSP; the tests walk every link of the catalogue, the help pages and the manual.

use std::collections::HashMap;
use std::sync::LazyLock;

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde::Serialize;

include!(concat!(env!("OUT_DIR"), "/catalogue.rs"));

/// How serious a catalogued message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Something was refused or failed; a person must act.
    Error,
    /// Done, but worth a look.
    Warning,
    /// For information.
    Info,
}

/// One part of the catalogue (the claim check, the gateway, backups, …).
#[derive(Debug, Serialize)]
pub struct Area {
    /// The file's stem in `docs/messages/`.
    pub id: &'static str,
    /// Heading, Japanese.
    pub title_ja: &'static str,
    /// Heading, English.
    pub title_en: &'static str,
    /// Its entries, in the file's order.
    pub entries: &'static [Entry],
}

/// One message: what it says, what it means, what to do, and where the help explains it.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The stable code, e.g. `file.utf8`.
    pub code: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// The help topic that explains the situation (`submissions`).
    pub help_topic: &'static str,
    /// The section of that topic (`refused`).
    pub help_section: &'static str,
    /// Short heading, Japanese.
    pub title_ja: &'static str,
    /// Short heading, English.
    pub title_en: &'static str,
    /// What it means, Japanese.
    pub meaning_ja: &'static str,
    /// What it means, English.
    pub meaning_en: &'static str,
    /// What to do, Japanese.
    pub remedy_ja: &'static str,
    /// What to do, English.
    pub remedy_en: &'static str,
}

impl Entry {
    /// The address of the screen help section for this entry.
    pub fn help_href(&self) -> String {
        format!("/help/{}#{}", self.help_topic, self.help_section)
    }
}

/// A catalogued code. Only the [`code`] constants make one, so each has an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Code(&'static str);

impl Code {
    /// The code as stored and shown (`file.utf8`).
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// Its catalogue entry.
    pub fn entry(self) -> &'static Entry {
        match find(self.0) {
            Some(e) => e,
            // Unreachable: the constants are generated from the entries.
            None => &AREAS[0].entries[0],
        }
    }

    /// The help page of this code.
    pub fn href(self) -> String {
        format!("/help/code/{}", self.0)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

static BY_CODE: LazyLock<HashMap<&'static str, &'static Entry>> = LazyLock::new(|| {
    AREAS
        .iter()
        .flat_map(|a| a.entries.iter())
        .map(|e| (e.code, e))
        .collect()
});

/// The entry of `code`, if the catalogue has one (a code read back from the store may predate
/// the catalogue).
pub fn find(code: &str) -> Option<&'static Entry> {
    BY_CODE.get(code).copied()
}

/// The code of `code`'s entry, if there is one.
pub fn known(code: &str) -> Option<Code> {
    find(code).map(|e| Code(e.code))
}

/// Where a message with `code` is explained: its own page, or the whole catalogue for a code
/// the catalogue does not know.
pub fn href(code: &str) -> String {
    match find(code) {
        Some(e) => format!("/help/code/{}", e.code),
        None if code.starts_with("gateway.") => code::GATEWAY_OTHER.href(),
        None => "/help/codes".to_owned(),
    }
}

/// The code for an error item or refusal the gateway names `wire` (`bad_credentials`):
/// `gateway.<wire>` when the catalogue knows it, else `gateway.other`.
pub fn gateway(wire: &str) -> Code {
    known(&format!("gateway.{wire}")).unwrap_or(code::GATEWAY_OTHER)
}

/// Every entry, area by area.
pub fn entries() -> impl Iterator<Item = &'static Entry> {
    AREAS.iter().flat_map(|a| a.entries.iter())
}

/// The screens that have a help page, in menu order.
pub const TOPICS: &[&str] = &[
    "home",
    "login",
    "submissions",
    "notices",
    "returns",
    "offices",
    "alerts",
    "accounts",
    "account",
    "system",
    "certificate",
    "backups",
    "audit",
];

/// The help topic of a page (its template's stem): the screen it belongs to.
pub fn topic_of(page: &str) -> &'static str {
    match page {
        "login" | "login_password" | "account_password" | "one_time_password" => "login",
        "submissions" | "submission_detail" => "submissions",
        "notices" | "notice_detail" => "notices",
        "returns" => "returns",
        "offices" | "office_detail" | "office_select" => "offices",
        "alerts" => "alerts",
        "accounts" | "account_detail" | "account_new" => "accounts",
        "account" => "account",
        "system" => "system",
        "certificate" => "certificate",
        "backups" => "backups",
        "audit" => "audit",
        _ => "home",
    }
}

/// A Markdown page of `docs/`, rendered.
#[derive(Debug)]
pub struct Doc {
    /// The text of its first heading.
    pub title: String,
    /// The HTML body.
    pub html: String,
    /// The `id` of every heading that has one, in order.
    pub ids: Vec<String>,
    /// Every link target, as written.
    pub links: Vec<String>,
}

static RENDERED: LazyLock<HashMap<&'static str, Doc>> = LazyLock::new(|| {
    DOCS.iter()
        .map(|(path, text)| (*path, render(text)))
        .collect()
});

/// The page at `path` under `docs/` (`help/ja/home.md`, `manual/en.md`), rendered.
pub fn doc(path: &str) -> Option<&'static Doc> {
    RENDERED.get(path)
}

/// Every embedded page's path under `docs/`.
pub fn doc_paths() -> impl Iterator<Item = &'static str> {
    DOCS.iter().map(|(p, _)| *p)
}

/// The help page of `topic` in `lang` (`ja`, `en`), falling back to Japanese.
pub fn topic_doc(topic: &str, lang: &str) -> Option<&'static Doc> {
    doc(&format!("help/{lang}/{topic}.md")).or_else(|| doc(&format!("help/ja/{topic}.md")))
}

/// The operations manual in `lang`, falling back to Japanese.
pub fn manual(lang: &str) -> Option<&'static Doc> {
    doc(&format!("manual/{lang}.md")).or_else(|| doc("manual/ja.md"))
}

/// CommonMark with tables and `{#id}` heading attributes; raw HTML becomes text.
fn render(text: &str) -> Doc {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_HEADING_ATTRIBUTES | Options::ENABLE_STRIKETHROUGH;
    let mut title = String::new();
    let mut in_title = false;
    let mut ids = Vec::new();
    let mut links = Vec::new();
    let events: Vec<Event<'_>> = Parser::new_ext(text, options)
        .map(|event| match event {
            Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
            Event::Start(Tag::Heading { level, id, .. }) => {
                in_title = level == HeadingLevel::H1 && title.is_empty();
                if let Some(id) = &id {
                    ids.push(id.to_string());
                }
                // Classes and other attributes are not ours to set.
                Event::Start(Tag::Heading {
                    level,
                    id,
                    classes: Vec::new(),
                    attrs: Vec::new(),
                })
            }
            Event::End(TagEnd::Heading(level)) => {
                in_title = false;
                Event::End(TagEnd::Heading(level))
            }
            Event::Text(s) => {
                if in_title {
                    title.push_str(&s);
                }
                Event::Text(s)
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                links.push(dest_url.to_string());
                Event::Start(Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                })
            }
            Event::Start(Tag::Table(alignments)) => {
                // Column alignment would become inline style, which the CSP forbids.
                Event::Start(Tag::Table(
                    alignments
                        .into_iter()
                        .map(|_| pulldown_cmark::Alignment::None)
                        .collect(),
                ))
            }
            other => other,
        })
        .collect();
    let mut html = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    Doc {
        title: title.trim().to_owned(),
        html,
        ids,
        links,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_shown_as_text_and_headings_keep_their_ids() {
        let d = render(
            "# Title\n\n## Part {#part .x}\n\n<script>alert(1)</script>\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n[x](/help/home#overview)\n",
        );
        assert_eq!(d.title, "Title");
        assert_eq!(d.ids, vec!["part".to_owned()]);
        assert_eq!(d.links, vec!["/help/home#overview".to_owned()]);
        assert!(d.html.contains("<h2 id=\"part\">Part</h2>"), "{}", d.html);
        assert!(!d.html.contains("<script>"), "{}", d.html);
        assert!(d.html.contains("&lt;script&gt;"), "{}", d.html);
        assert!(!d.html.contains("style="), "{}", d.html);
        assert!(!d.html.contains("class="), "{}", d.html);
    }

    #[test]
    fn every_page_maps_to_a_topic_with_a_help_page_in_both_languages() {
        for (name, _) in crate::pages::TEMPLATES {
            let topic = topic_of(name.trim_end_matches(".html"));
            assert!(TOPICS.contains(&topic), "{name} → {topic}");
        }
        for topic in TOPICS {
            for lang in ["ja", "en"] {
                let path = format!("help/{lang}/{topic}.md");
                let d = doc(&path).unwrap_or_else(|| panic!("{path} is missing"));
                assert!(!d.title.is_empty(), "{path} has no level-1 heading");
            }
        }
    }

    #[test]
    fn both_languages_have_the_same_sections() {
        for topic in TOPICS {
            let ja = topic_doc(topic, "ja").map(|d| &d.ids);
            let en = topic_doc(topic, "en").map(|d| &d.ids);
            assert_eq!(
                ja, en,
                "help/{{ja,en}}/{topic}.md have different section ids"
            );
        }
        assert_eq!(
            doc("manual/ja.md").map(|d| &d.ids),
            doc("manual/en.md").map(|d| &d.ids),
            "manual/ja.md and manual/en.md have different section ids"
        );
    }

    /// Whether `/help/...#fragment` names a page (and section) that exists.
    fn resolves(link: &str) -> Result<(), String> {
        let (path, fragment) = match link.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (link, None),
        };
        let ids: Vec<String> = match path.strip_prefix("/help") {
            Some("") | Some("/") => vec![],
            Some("/codes") => entries().map(|e| e.code.to_owned()).collect(),
            Some("/manual") => manual("ja").map(|d| d.ids.clone()).unwrap_or_default(),
            Some(rest) => match rest.strip_prefix("/code/") {
                Some(code) if find(code).is_some() => vec![],
                Some(code) => return Err(format!("no catalogue entry {code}")),
                None => {
                    let topic = rest.trim_start_matches('/');
                    if !TOPICS.contains(&topic) {
                        return Err(format!("no help topic {topic}"));
                    }
                    topic_doc(topic, "ja")
                        .map(|d| d.ids.clone())
                        .unwrap_or_default()
                }
            },
            None => return Ok(()),
        };
        match fragment {
            Some(f) if !ids.iter().any(|i| i == f) => Err(format!("no section #{f}")),
            _ => Ok(()),
        }
    }

    #[test]
    fn every_catalogue_entry_has_texts_and_a_help_section_that_exists() {
        let mut n = 0;
        for e in entries() {
            n += 1;
            for (k, t) in [
                ("title_ja", e.title_ja),
                ("title_en", e.title_en),
                ("meaning_ja", e.meaning_ja),
                ("meaning_en", e.meaning_en),
                ("remedy_ja", e.remedy_ja),
                ("remedy_en", e.remedy_en),
            ] {
                assert!(!t.trim().is_empty(), "{}: {k} is empty", e.code);
            }
            if let Err(why) = resolves(&e.help_href()) {
                panic!("{}: help {}: {why}", e.code, e.help_href());
            }
            assert_eq!(known(e.code).map(Code::as_str), Some(e.code));
        }
        assert!(n > 100, "only {n} entries");
    }

    #[test]
    fn every_link_in_the_help_pages_and_the_manual_resolves() {
        for path in doc_paths() {
            let Some(d) = doc(path) else { continue };
            for link in &d.links {
                let link = match link.strip_prefix('#') {
                    // A link within the page.
                    Some(f) => {
                        assert!(
                            d.ids.iter().any(|i| i == f),
                            "{path}: link #{f}: no such section"
                        );
                        continue;
                    }
                    None => link,
                };
                if link.starts_with("/help") {
                    if let Err(why) = resolves(link) {
                        panic!("{path}: link {link}: {why}");
                    }
                } else if link.starts_with('/') {
                    let page = link.split(['#', '?']).next().unwrap_or(link);
                    assert!(
                        matches!(
                            crate::routes::find("GET", page),
                            crate::routes::Matched::Found(..)
                        ),
                        "{path}: link {link}: the UI has no such page"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_gateway_codes_fall_back_and_known_ones_are_found() {
        assert_eq!(gateway("no_such_thing"), code::GATEWAY_OTHER);
        assert_eq!(gateway("bad_credentials"), code::GATEWAY_BAD_CREDENTIALS);
        assert_eq!(href("no.such_code"), "/help/codes");
        assert_eq!(href("file.empty"), "/help/code/file.empty");
        assert_eq!(code::FILE_EMPTY.entry().code, "file.empty");
    }
}
