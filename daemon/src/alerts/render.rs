//! What a person reads: the subject and plain-text body of an alert mail, the JSON body of a
//! webhook (with a ready-made `text` that chat tools show as it is), and the combined message
//! of a daily digest or of a rate-limited burst. Japanese first; English by setting.
//!
//! Invariant: a rendered message names only the offices its delivery may name and carries
//! counts, file names and links, never an insured person's number or name; every message says
//! what to do and links to the admin UI page where it can be done.

use std::collections::BTreeMap;

use serde_json::json;

use super::kinds;
use super::outbox::{Delivery, Phase};
use crate::config::Language;

/// Office numbers → names, for messages.
pub type OfficeNames = BTreeMap<String, String>;

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

fn marker(d: &Delivery, ja: bool) -> &'static str {
    match (d.message.phase, d.message.severity.as_str(), ja) {
        (Phase::Resolved, _, true) => "【解決】",
        (Phase::Resolved, _, false) => "[resolved] ",
        (Phase::Test, _, true) => "【テスト】",
        (Phase::Test, _, false) => "[test] ",
        (_, "error", true) => "【要対応】",
        (_, "error", false) => "[action needed] ",
        (_, "warning", true) => "【注意】",
        (_, "warning", false) => "[warning] ",
        (_, _, true) => "【お知らせ】",
        (_, _, false) => "[notice] ",
    }
}

fn office_list(d: &Delivery, names: &OfficeNames, ja: bool) -> String {
    let list: Vec<String> = d
        .offices()
        .iter()
        .map(|o| match names.get(o) {
            Some(n) if ja => format!("{n}（{o}）"),
            Some(n) => format!("{n} ({o})"),
            None => o.clone(),
        })
        .collect();
    list.join(if ja { "、" } else { ", " })
}

fn short_offices(d: &Delivery, names: &OfficeNames, ja: bool) -> String {
    let offices = d.offices();
    let Some(first) = offices.first() else {
        return String::new();
    };
    let name = names.get(first).cloned().unwrap_or_else(|| first.clone());
    match (offices.len(), ja) {
        (1, _) => name,
        (n, true) => format!("{name} ほか {} 事業所", n - 1),
        (n, false) => format!("{name} and {} more", n - 1),
    }
}

/// The full address of the page a delivery links to.
pub fn link(d: &Delivery, base_url: &str) -> String {
    let path = d.message.link.clone().unwrap_or_else(|| {
        kinds::kind(&d.message.kind)
            .map_or("/", |k| k.page)
            .to_owned()
    });
    format!("{base_url}{path}")
}

fn title(d: &Delivery, ja: bool) -> String {
    let k = kinds::kind(&d.message.kind);
    match (k, ja) {
        (Some(k), true) => k.title_ja.to_owned(),
        (Some(k), false) => k.title_en.to_owned(),
        (None, true) => format!("通知（{}）", d.message.kind),
        (None, false) => format!("Alert ({})", d.message.kind),
    }
}

/// The text of a delivery: the message's own when the recipient may see all its offices,
/// otherwise the kind's general advice for the offices it may see.
fn text(d: &Delivery, ja: bool) -> String {
    if d.restricted_to.is_none() {
        return if ja {
            d.message.text_ja.clone()
        } else {
            d.message.text_en.clone()
        };
    }
    let k = kinds::kind(&d.message.kind);
    let resolved = d.message.phase == Phase::Resolved;
    match (k, ja, resolved) {
        (Some(k), true, false) => k.todo_ja.to_owned(),
        (Some(k), false, false) => k.todo_en.to_owned(),
        (_, true, true) => "この状態は解決しました。".to_owned(),
        (_, false, true) => "This condition has been resolved.".to_owned(),
        (None, true, false) => "管理画面で内容を確認してください。".to_owned(),
        (None, false, false) => "See the admin UI for details.".to_owned(),
    }
}

fn when(d: &Delivery, ja: bool) -> String {
    if ja {
        crate::timefmt::jst_minutes(d.message.at)
    } else {
        format!("{} JST", crate::timefmt::jst_seconds(d.message.at))
    }
}

fn block(d: &Delivery, names: &OfficeNames, base_url: &str, ja: bool) -> String {
    let offices = office_list(d, names, ja);
    let mut s = String::new();
    if ja {
        s.push_str(&format!("{}{}\n\n", marker(d, true), title(d, true)));
        if !offices.is_empty() {
            s.push_str(&format!("事業所: {offices}\n"));
        }
        s.push_str(&format!("日時: {}\n\n{}\n\n", when(d, true), text(d, true)));
        s.push_str(&format!("管理画面で確認する: {}\n", link(d, base_url)));
    } else {
        s.push_str(&format!("{}{}\n\n", marker(d, false), title(d, false)));
        if !offices.is_empty() {
            s.push_str(&format!("Office: {offices}\n"));
        }
        s.push_str(&format!(
            "When: {}\n\n{}\n\n",
            when(d, false),
            text(d, false)
        ));
        s.push_str(&format!("See it on the admin UI: {}\n", link(d, base_url)));
    }
    s
}

fn footer(lang: Language, base_url: &str) -> String {
    let mut s = String::from("\n-- \n");
    if lang.has_ja() {
        s.push_str(&format!(
            "このメールは kaigo-relay（介護給付費の請求の送信装置）が自動で送っています。返信しても届きません。\n受け取る通知は管理画面の「アカウント」で変えられます: {base_url}/account\n"
        ));
    }
    if lang.has_en() {
        s.push_str(&format!(
            "Sent automatically by kaigo-relay, the claim relay of your care office; replies are not read.\nChoose which alerts you receive on the Account page: {base_url}/account\n"
        ));
    }
    s
}

/// The mail for one delivery.
pub fn mail(d: &Delivery, names: &OfficeNames, base_url: &str) -> Rendered {
    let lang = d.language;
    let ja = lang.has_ja();
    let who = short_offices(d, names, ja);
    let subject = format!(
        "[kaigo-relay] {}{}{}",
        marker(d, ja),
        title(d, ja),
        if who.is_empty() {
            String::new()
        } else if ja {
            format!("（{who}）")
        } else {
            format!(" ({who})")
        }
    );
    let mut body = String::new();
    if lang.has_ja() {
        body.push_str(&block(d, names, base_url, true));
    }
    if lang == Language::Both {
        body.push_str("\n---- English ----\n\n");
    }
    if lang.has_en() {
        body.push_str(&block(d, names, base_url, false));
    }
    body.push_str(&footer(lang, base_url));
    Rendered { subject, body }
}

/// Why several deliveries go out as one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combined {
    /// The daily digest.
    Digest,
    /// More than `alerts.max_per_destination_per_hour` in an hour.
    RateLimited,
}

/// One mail for several deliveries to the same destination (all in its language).
pub fn combined_mail(
    ds: &[&Delivery],
    why: Combined,
    names: &OfficeNames,
    base_url: &str,
) -> Rendered {
    let lang = ds.first().map_or(Language::Ja, |d| d.language);
    let ja = lang.has_ja();
    let n = ds.len();
    let subject = match (why, ja) {
        (Combined::Digest, true) => format!("[kaigo-relay] 通知のまとめ（{n} 件）"),
        (Combined::Digest, false) => format!("[kaigo-relay] Alert digest ({n})"),
        (Combined::RateLimited, true) => {
            format!("[kaigo-relay] 通知のまとめ（{n} 件・短時間に多数のため）")
        }
        (Combined::RateLimited, false) => {
            format!("[kaigo-relay] {n} alerts (combined: many in a short time)")
        }
    };
    let mut body = String::new();
    if lang.has_ja() {
        body.push_str(&match why {
            Combined::Digest => format!("前回のまとめ以降の通知が {n} 件あります。\n\n"),
            Combined::RateLimited => {
                format!("短い時間に通知が多く出たため、{n} 件をまとめて送ります。\n\n")
            }
        });
        for (i, d) in ds.iter().enumerate() {
            body.push_str(&format!("{}. ", i + 1));
            body.push_str(&block(d, names, base_url, true));
            body.push('\n');
        }
    }
    if lang == Language::Both {
        body.push_str("---- English ----\n\n");
    }
    if lang.has_en() {
        body.push_str(&match why {
            Combined::Digest => format!("{n} alert(s) since the last digest.\n\n"),
            Combined::RateLimited => {
                format!("Many alerts in a short time: {n} are sent together.\n\n")
            }
        });
        for (i, d) in ds.iter().enumerate() {
            body.push_str(&format!("{}. ", i + 1));
            body.push_str(&block(d, names, base_url, false));
            body.push('\n');
        }
    }
    body.push_str(&footer(lang, base_url));
    Rendered { subject, body }
}

fn item_json(d: &Delivery, names: &OfficeNames, base_url: &str) -> serde_json::Value {
    let offices: Vec<serde_json::Value> = d
        .offices()
        .iter()
        .map(|o| json!({"number": o, "name": names.get(o)}))
        .collect();
    json!({
        "delivery_id": d.id,
        "message_id": d.message.id,
        "key": d.message.key,
        "phase": d.message.phase.as_str(),
        "kind": d.message.kind,
        "group": kinds::group_of(&d.message.kind).as_str(),
        "severity": d.message.severity,
        "offices": offices,
        "title": {"ja": title(d, true), "en": title(d, false)},
        "text": {"ja": text(d, true), "en": text(d, false)},
        "url": link(d, base_url),
        "at": crate::timefmt::jst_rfc3339(d.message.at),
    })
}

/// The webhook body for one delivery or several combined (`why`).
pub fn webhook_body(
    ds: &[&Delivery],
    why: Option<Combined>,
    names: &OfficeNames,
    base_url: &str,
) -> serde_json::Value {
    let text = match (ds, why) {
        ([one], None) => mail(one, names, base_url),
        _ => combined_mail(ds, why.unwrap_or(Combined::Digest), names, base_url),
    };
    let mut v = match (ds, why) {
        ([one], None) => item_json(one, names, base_url),
        _ => json!({
            "combined": match why { Some(Combined::RateLimited) => "rate_limited", _ => "digest" },
            "items": ds.iter().map(|d| item_json(d, names, base_url)).collect::<Vec<_>>(),
        }),
    };
    v["text"] = json!(format!("{}\n\n{}", text.subject, text.body));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::outbox::{Destination, Message};
    use jiff::Timestamp;

    fn delivery(lang: Language, restricted: Option<Vec<String>>) -> Delivery {
        let m = Message::new(
            "window_closing/202611",
            Phase::Raised,
            "window_closing",
            "error",
            vec!["1310000001".into(), "1310000002".into()],
            "さくら（1310000001）、ひまわり（1310000002）が未送信です。".into(),
            "Sakura and Himawari have sent nothing.".into(),
            None,
            "2026-11-10T03:00:00Z".parse::<Timestamp>().unwrap(),
        );
        Delivery::new(
            m,
            Destination::Mail {
                address: "a@example.jp".into(),
                name: "A".into(),
            },
            lang,
            false,
            restricted,
            Timestamp::now(),
        )
    }

    fn names() -> OfficeNames {
        [
            ("1310000001".to_string(), "さくら".to_string()),
            ("1310000002".to_string(), "ひまわり".to_string()),
        ]
        .into()
    }

    #[test]
    fn a_mail_says_what_where_when_and_links() {
        let r = mail(
            &delivery(Language::Ja, None),
            &names(),
            "https://relay.local:8443",
        );
        assert_eq!(
            r.subject,
            "[kaigo-relay] 【要対応】受付締切が近づいています（未送信の事業所があります）（さくら ほか 1 事業所）"
        );
        assert!(
            r.body
                .contains("事業所: さくら（1310000001）、ひまわり（1310000002）"),
            "{}",
            r.body
        );
        assert!(r.body.contains("日時: 2026年11月10日 12:00"), "{}", r.body);
        assert!(
            r.body
                .contains("管理画面で確認する: https://relay.local:8443/"),
            "{}",
            r.body
        );
        assert!(!r.body.contains("English"));
        let en = mail(&delivery(Language::En, None), &names(), "https://x");
        assert!(
            en.subject
                .starts_with("[kaigo-relay] [action needed] The reception window")
        );
        assert!(!en.body.contains("事業所:"));
        let both = mail(&delivery(Language::Both, None), &names(), "https://x");
        assert!(both.body.contains("事業所:") && both.body.contains("Office:"));
    }

    #[test]
    fn a_restricted_delivery_names_only_its_offices() {
        let d = delivery(Language::Both, Some(vec!["1310000002".into()]));
        let r = mail(&d, &names(), "https://x");
        assert!(
            !r.body.contains("さくら") && !r.subject.contains("さくら"),
            "{}",
            r.body
        );
        assert!(!r.body.contains("1310000001") && !r.body.contains("Sakura"));
        assert!(r.body.contains("ひまわり（1310000002）"));
        assert!(
            r.body
                .contains(kinds::kind("window_closing").unwrap().todo_ja)
        );
        let w = webhook_body(&[&d], None, &names(), "https://x");
        assert!(!w.to_string().contains("1310000001"));
    }

    #[test]
    fn a_combined_message_lists_every_item() {
        let a = delivery(Language::Ja, None);
        let b = delivery(Language::Ja, None);
        let r = combined_mail(&[&a, &b], Combined::RateLimited, &names(), "https://x");
        assert!(r.subject.contains("2 件"));
        assert!(r.body.contains("1. 【要対応】") && r.body.contains("2. 【要対応】"));
        let w = webhook_body(&[&a, &b], Some(Combined::Digest), &names(), "https://x");
        assert_eq!(w["items"].as_array().unwrap().len(), 2);
        assert_eq!(w["combined"], "digest");
        assert!(w["text"].as_str().unwrap().contains("通知のまとめ"));
    }
}
