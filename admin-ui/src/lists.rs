//! The list pages' filters and exports: turns a query string into a checked [`ListQuery`]
//! (office, month, kind, status, unread, page), keeps what the form showed so the page can
//! show it again, and writes the returns list as CSV for Excel (CP932) or as UTF-8.
//!
//! Invariant: a value the form could not have sent (a month that is not YYYYMM, a kind or
//! status with characters no choice has, a page that is not a number) is dropped with a
//! message saying so, never passed on and never an error page: the clerk sees the list
//! without that filter and is told why.

use serde::Serialize;

use crate::backend::{ListQuery, OfficeRef, Principal, ReturnRow};
use crate::forms::Form;
use crate::pages::Msg;

/// The filters as the form shows them again (empty string: no filter).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Shown {
    pub month: String,
    pub kind: String,
    pub status: String,
    pub unread_only: bool,
    /// The query string of these filters, without the page (for the pager's links and the
    /// export links), already URL-encoded.
    pub query: String,
}

fn is_month(s: &str) -> bool {
    s.len() == 6
        && s.bytes().all(|b| b.is_ascii_digit())
        && matches!(s[4..].parse::<u8>(), Ok(1..=12))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || matches!(c, '請' | '給' | 'サ'))
}

/// Reads the list filters of `query` for `office`; a value that is not valid is dropped and
/// explained in the returned message.
pub(crate) fn parse(office: &OfficeRef, query: &Form) -> (ListQuery, Shown, Option<Msg>) {
    let mut dropped = false;
    let mut pick = |name: &str, valid: fn(&str) -> bool| -> Option<String> {
        let v = query.opt(name)?;
        let v = v.trim().to_owned();
        if v.is_empty() {
            return None;
        }
        if valid(&v) {
            Some(v)
        } else {
            dropped = true;
            None
        }
    };
    let month = pick("month", is_month);
    let kind = pick("kind", is_token);
    let status = pick("status", is_token);
    let unread_only = query.get("unread") == Some("1");
    let page = match query.opt("page") {
        None => Some(1),
        Some(p) => match p.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                dropped = true;
                Some(1)
            }
        },
    };
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    pairs.append_pair("office", &office.number);
    for (name, v) in [("month", &month), ("kind", &kind), ("status", &status)] {
        if let Some(v) = v {
            pairs.append_pair(name, v);
        }
    }
    if unread_only {
        pairs.append_pair("unread", "1");
    }
    let shown = Shown {
        month: month.clone().unwrap_or_default(),
        kind: kind.clone().unwrap_or_default(),
        status: status.clone().unwrap_or_default(),
        unread_only,
        query: pairs.finish(),
    };
    let msg = dropped.then(|| {
        Msg::error(
            "絞り込みの条件に正しくない値があったため、その条件を外して表示しています。",
            "A filter value was not valid, so the list is shown without it.",
        )
        .coded(Some(crate::help::code::LIST_FILTER_INVALID))
    });
    (
        ListQuery {
            office: office.number.clone(),
            month,
            kind,
            status,
            unread_only,
            page,
        },
        shown,
        msg,
    )
}

/// The office a list page shows: `?office=N` when given, else the session's current office.
pub(crate) fn chosen_office(p: &Principal, query: &Form) -> Option<OfficeRef> {
    match query.opt("office") {
        Some(number) => Some(office_ref(p, number)),
        None => p.current_office.clone(),
    }
}

/// An office number with its name when the principal's menu knows it (display only: the
/// backend decides whether the principal may see it).
pub(crate) fn office_ref(p: &Principal, number: String) -> OfficeRef {
    let name = p
        .offices
        .iter()
        .find(|o| o.number == number)
        .map(|o| o.name.clone())
        .unwrap_or_default();
    OfficeRef { number, name }
}

/// One CSV field: quoted when it holds a comma, a quote or a line break; a leading `=`, `+`,
/// `-` or `@` (a formula to Excel) is prefixed with `'` so that the cell shows text.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The returns list as CSV text, with Japanese column names, CRLF line ends.
pub(crate) fn returns_csv(rows: &[ReturnRow]) -> String {
    let mut out = String::new();
    let head = [
        "事業所番号",
        "審査月",
        "種別",
        "保険者番号",
        "被保険者番号",
        "氏名",
        "サービス提供年月",
        "事由",
        "内容",
        "状態",
        "再請求の送信",
        "メモ",
        "通知ID",
    ];
    out.push_str(&head.join(","));
    out.push_str("\r\n");
    for r in rows {
        let cells = [
            r.office_number.as_str(),
            &r.processing_month,
            &r.form_ja,
            &r.insurer_number,
            &r.insured_number,
            &r.insured_name,
            &r.service_month,
            &r.reason_code,
            &r.content,
            &r.status_ja,
            r.linked_submission.as_deref().unwrap_or(""),
            r.note.as_deref().unwrap_or(""),
            &r.notice_id,
        ];
        let line: Vec<String> = cells.iter().map(|c| field(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Text as CP932 (Shift_JIS as Windows and Excel read it); a character CP932 cannot hold
/// becomes `〓`, the mark Japanese forms use for an unprintable character, and is counted.
pub(crate) fn to_cp932(text: &str) -> (Vec<u8>, usize) {
    let mut encoder = encoding_rs::SHIFT_JIS.new_encoder();
    let mut out = Vec::with_capacity(text.len());
    let mut replaced = 0;
    let mut rest = text;
    loop {
        let mut buf = [0u8; 4096];
        let (result, read, written) =
            encoder.encode_from_utf8_without_replacement(rest, &mut buf, true);
        out.extend_from_slice(&buf[..written]);
        rest = &rest[read..];
        match result {
            encoding_rs::EncoderResult::InputEmpty => break,
            encoding_rs::EncoderResult::OutputFull => {}
            encoding_rs::EncoderResult::Unmappable(_) => {
                replaced += 1;
                // 〓 is 0x81 0xAC in CP932.
                out.extend_from_slice(&[0x81, 0xAC]);
            }
        }
    }
    (out, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> OfficeRef {
        OfficeRef {
            number: "1379999996".into(),
            name: "さくら".into(),
        }
    }

    #[test]
    fn valid_filters_pass_and_bad_ones_are_dropped_with_a_message() {
        let (q, shown, msg) = parse(
            &office(),
            &Form::parse("month=202611&kind=7411&status=open&unread=1&page=3".as_bytes()),
        );
        assert_eq!(q.month.as_deref(), Some("202611"));
        assert_eq!(q.kind.as_deref(), Some("7411"));
        assert_eq!(q.status.as_deref(), Some("open"));
        assert!(q.unread_only);
        assert_eq!(q.page, Some(3));
        assert!(msg.is_none());
        assert_eq!(
            shown.query,
            "office=1379999996&month=202611&kind=7411&status=open&unread=1"
        );

        let (q, shown, msg) = parse(
            &office(),
            &Form::parse("month=2026-11&kind=%3Cscript%3E&status=&page=zero".as_bytes()),
        );
        assert_eq!((q.month, q.kind, q.status), (None, None, None));
        assert_eq!(q.page, Some(1));
        assert!(msg.is_some());
        assert_eq!(shown.query, "office=1379999996");

        let (q, _, msg) = parse(&office(), &Form::parse("month=202613".as_bytes()));
        assert!(q.month.is_none() && msg.is_some(), "there is no 13th month");
        let (q, _, msg) = parse(&office(), &Form::parse("kind=%E7%B5%A6".as_bytes()));
        assert_eq!(q.kind.as_deref(), Some("給"));
        assert!(msg.is_none());
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(field("-1200"), "-1200", "a negative number stays a number");
        assert_eq!(field("line\r\nbreak"), "\"line\r\nbreak\"");
    }

    #[test]
    fn cp932_holds_japanese_and_marks_what_it_cannot() {
        let (bytes, replaced) = to_cp932("ﾃｽﾄ 請求明細書 ①");
        assert_eq!(replaced, 0);
        let (back, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
        assert!(!bad);
        assert_eq!(back, "ﾃｽﾄ 請求明細書 ①");
        let (bytes, replaced) = to_cp932("メモ😀です");
        assert_eq!(replaced, 1);
        assert_eq!(encoding_rs::SHIFT_JIS.decode(&bytes).0, "メモ〓です");
    }
}
