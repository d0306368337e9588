//! Synthetic notices for benchmarks: the store filled at scale through the same call the mirror
//! makes, shared by `daemon/benches/notice_store.rs` (the store alone) and
//! `tests/benches/ui_load.rs` (the admin UI over a filled store). Not part of the product.
//!
//! The fill is ten years of monthly notices per office (the CSV kinds 7211/7311/7411/7513/7521,
//! PDF forms and お知らせ), one page per office and month committed in one transaction with its
//! cursor, each CSV parsed and its 返戻 rows turned into return items, exactly as a mirror pass
//! stores them. Bodies are unique and shaped like the real thing.

use std::time::{Duration, Instant};

use encoding_rs::SHIFT_JIS;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::claim::{Month, mod10_check_digit};
use crate::notice;
use crate::store::{IncomingNotice, MirrorCursor, NoticeRecord, Store, StoreError};

/// The kinds each office receives every month, in turn.
pub const KINDS: [&str; 7] = ["7211", "7311", "7411", "7513", "7521", "PDF", "TXT"];

/// Notices of one office in one month (one page): every kind six times.
pub const PER_OFFICE_MONTH: u64 = KINDS.len() as u64 * 6;

/// A synthetic office number (`1371000xxC`, valid check digit), distinct for each `i`.
pub fn office_number(i: usize) -> String {
    let body = format!("137{:06}", 100_000 + i);
    // The body is all digits, so the check digit always exists.
    let check = mod10_check_digit(&body).unwrap_or(0);
    format!("{body}{check}")
}

/// The federation user ID the fill lists office `i`'s notices under (`KJ000000ii`: never one of
/// a test harness's configured users, so the daemon's mirror never resumes from these cursors).
pub fn user_id(i: usize) -> String {
    format!("KJ{i:08}")
}

/// The bytes and media type of notice `n` of `kind` for `office` in `month`.
pub fn notice_body(n: u64, kind: &str, office: &str, month: Month) -> (Vec<u8>, &'static str) {
    let head = |dt: &str, rows: usize| {
        format!(
            "1,1,0,{},{dt},0,0,{office},0,7,{month},0\r\n2,2,{kind},H1,{office},ケアセンター{n},{month},20250630,1,東京都国民健康保険団体連合会\r\n",
            rows + 1
        )
    };
    let text = match kind {
        "7411" => format!(
            "{}2,3,7411,D1,139998,千代田区,{:010},ﾋﾎｹﾝｼﾔ ﾀﾛｳ,請,{},11,{},B,受給者台帳に該当がありません（ＡＳＢ１）,,111111\r\n3,4\r\n",
            head("741", 1),
            n % 10_000_000_000,
            month.previous(),
            n % 5000
        ),
        "7311" => format!(
            "{}2,3,7311,D1,139998,{:010},ﾋﾎｹﾝｼﾔ ﾊﾅｺ,{},11,1111,-{},D,算定要件を満たしていません,確定単位数(1800)、請求単位数(2000)\r\n3,4\r\n",
            head("731", 1),
            n % 10_000_000_000,
            month.previous(),
            n % 200
        ),
        "7211" | "7521" => {
            let mut t = head(if kind == "7211" { "721" } else { "752" }, 6);
            for r in 0..6u64 {
                t.push_str(&format!(
                    "2,{},{kind},D1,139998,{},11,{},{},{},{},{},{},0,0,0,0,0,0,0,0\r\n",
                    r + 3,
                    month.previous(),
                    n % 97 + r,
                    r * 3,
                    (n + r) % 9000,
                    r,
                    n % 13,
                    r
                ));
            }
            t.push_str("3,9\r\n");
            t
        }
        "7513" => format!(
            "1,1,0,1,751,0,0,{office},0,7,{month},0\r\n2,2,7513,H1,{month},100,0001,東京都千代田区一丁目,ケアセンター{n},山田太郎,{office},{},{},0,0,0,0,0,0,{},みずほ銀行,本店,20250715,東京都国民健康保険団体連合会\r\n3,3\r\n",
            n * 7 % 9_000_000,
            n * 7 % 9_000_000,
            n * 7 % 9_000_000
        ),
        "TXT" => format!(
            "お知らせ（{month} 審査分）\r\n通知番号 {n}\r\n支払予定日は翌月 20 日です。\r\n"
        ),
        _ => {
            return (
                format!("%PDF-1.4\n% notice {n}\n{}\n%%EOF\n", "0".repeat(1500)).into_bytes(),
                "application/pdf",
            );
        }
    };
    let media = if kind == "TXT" {
        "text/plain; charset=Shift_JIS"
    } else {
        "text/csv; charset=Shift_JIS"
    };
    (SHIFT_JIS.encode(&text).0.into_owned(), media)
}

/// What to fill: `total` notices spread over `offices` (their numbers; office `i` lists under
/// [`user_id`]`(i)`), month after month from `first_month`, every office receiving
/// [`PER_OFFICE_MONTH`] notices a month until `total` is reached.
#[derive(Debug, Clone)]
pub struct NoticeFill {
    /// Notices in all.
    pub total: u64,
    /// The offices' numbers.
    pub offices: Vec<String>,
    /// The processing month of the first page.
    pub first_month: Month,
}

/// What a fill stored.
#[derive(Debug, Clone, Copy)]
pub struct Filled {
    /// Notices stored (IDs `N0000000001`…).
    pub notices: u64,
    /// Pages (one commit each).
    pub pages: u64,
    /// Months begun.
    pub months: u64,
    /// The last month every office received its full page in (`None` when none did).
    pub last_full_month: Option<Month>,
    /// Wall time of the fill.
    pub elapsed: Duration,
}

impl NoticeFill {
    /// `total` notices over the synthetic offices `0..offices` ([`office_number`]).
    pub fn synthetic(total: u64, offices: usize, first_month: Month) -> NoticeFill {
        NoticeFill {
            total,
            offices: (0..offices).map(office_number).collect(),
            first_month,
        }
    }

    /// Months the fill spans.
    pub fn months(&self) -> u64 {
        self.total
            .div_ceil(self.offices.len().max(1) as u64 * PER_OFFICE_MONTH)
            .max(1)
    }

    /// Stores the notices in `store`, one page per office and month (one commit each).
    /// `progress(notices so far, elapsed)` is called every 2000 pages.
    pub fn fill(
        &self,
        store: &Store,
        mut progress: impl FnMut(u64, Duration),
    ) -> Result<Filled, StoreError> {
        let started = Instant::now();
        let (mut n, mut pages, mut months) = (0u64, 0u64, 0u64);
        let mut last_full_month = None;
        let mut month = self.first_month;
        'fill: for _ in 0..self.months() {
            months += 1;
            for (o, office) in self.offices.iter().enumerate() {
                let user = user_id(o);
                let mut page = Vec::with_capacity(PER_OFFICE_MONTH as usize);
                for k in 0..PER_OFFICE_MONTH {
                    if n >= self.total {
                        break;
                    }
                    n += 1;
                    let kind = KINDS[(k % KINDS.len() as u64) as usize];
                    let (bytes, media) = notice_body(n, kind, office, month);
                    let parsed = if media.starts_with("text/csv") {
                        notice::parse(&bytes).ok()
                    } else {
                        None
                    };
                    page.push(IncomingNotice {
                        record: NoticeRecord {
                            notice_id: format!("N{n:010}"),
                            user_id: user.clone(),
                            office_number: office.clone(),
                            kind_id: kind.into(),
                            title: kind.into(),
                            processing_month: month.to_string(),
                            issued_at: String::new(),
                            media_type: media.into(),
                            size: bytes.len() as u64,
                            sha256: hex::encode(Sha256::digest(&bytes)),
                            received_at: Timestamp::now(),
                        },
                        body: bytes,
                        parsed,
                    });
                }
                if page.is_empty() {
                    break 'fill;
                }
                let full = page.len() as u64 == PER_OFFICE_MONTH;
                let cursor = MirrorCursor {
                    cursor: Some(n.to_string()),
                    ..MirrorCursor::default()
                };
                store.store_notice_page_blocking(&user, page, cursor)?;
                pages += 1;
                if pages.is_multiple_of(2000) {
                    progress(n, started.elapsed());
                }
                if full && o + 1 == self.offices.len() {
                    last_full_month = Some(month);
                }
            }
            month = month.next();
        }
        Ok(Filled {
            notices: n,
            pages,
            months,
            last_full_month,
            elapsed: started.elapsed(),
        })
    }
}
