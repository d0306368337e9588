//! Notice store at scale: fills a fresh store with 1 000 000 notices across 200 offices (ten
//! years of monthly notices: the CSV kinds 7211/7311/7411/7513/7521, PDF forms and お知らせ),
//! through the same call the mirror makes (one commit per page of notices, each CSV parsed and
//! its 返戻 rows turned into return items), then reopens it and measures what the admin UI does
//! most: list one office's notices of one month, and open one notice (record, body, parse).
//!
//! `cargo bench -p kaigo-relay --bench notice_store -- [--notices N] [--offices K] [--dir D]`
//!
//! Reports: ingest rate (notices/s), store size, p50/p99 of both queries, peak RSS.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed step stops it

use std::time::{Duration, Instant};

use encoding_rs::SHIFT_JIS;
use jiff::Timestamp;
use kaigo_relay::claim::{Month, mod10_check_digit};
use kaigo_relay::notice;
use kaigo_relay::store::{IncomingNotice, MirrorCursor, NoticeRecord, Store};
use sha2::{Digest, Sha256};

const KINDS: [&str; 7] = ["7211", "7311", "7411", "7513", "7521", "PDF", "TXT"];

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn office_number(i: usize) -> String {
    let body = format!("137{:06}", 100_000 + i);
    format!("{body}{}", mod10_check_digit(&body).unwrap())
}

/// A body for notice `n` of `kind`: unique, and shaped like the real thing.
fn body(n: u64, kind: &str, office: &str, month: Month) -> (Vec<u8>, &'static str) {
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> anyhow::Result<()> {
    kaigo_relay::install_crypto_provider();
    let total: u64 = arg("--notices").map_or(Ok(1_000_000), |s| s.parse())?;
    let offices: usize = arg("--offices").map_or(Ok(200), |s| s.parse())?;
    let tmp = tempfile::tempdir_in(arg("--dir").unwrap_or_else(|| "/tmp".into()))?;
    let path = tmp.path().join("bench.redb");
    let per_office_month = KINDS.len() as u64 * 6;
    let months = total.div_ceil(offices as u64 * per_office_month).max(1);
    let first: Month = "201601".parse()?;

    // Ingest: one page per office and month (what a mirror pass stores), one commit each.
    let store = Store::open(&path)?;
    let started = Instant::now();
    let mut n = 0u64;
    let mut pages = 0u64;
    let mut month = first;
    'fill: for _ in 0..months {
        for o in 0..offices {
            let office = office_number(o);
            let user = format!("KJ{o:08}");
            let mut page = Vec::with_capacity(per_office_month as usize);
            for k in 0..per_office_month {
                if n >= total {
                    break;
                }
                n += 1;
                let kind = KINDS[(k % KINDS.len() as u64) as usize];
                let (bytes, media) = body(n, kind, &office, month);
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
            let cursor = MirrorCursor {
                cursor: Some(n.to_string()),
                ..MirrorCursor::default()
            };
            store.store_notice_page_blocking(&user, page, cursor)?;
            pages += 1;
            if pages.is_multiple_of(2000) {
                eprintln!(
                    "  {n} notices, {:.0}/s",
                    n as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        month = month.next();
    }
    let ingest = started.elapsed();
    drop(store);
    let size = std::fs::metadata(&path)?.len();
    let returns_made = n / KINDS.len() as u64;

    // Queries on the reopened store (redb's cache is cold; the OS page cache is not dropped).
    let store = Store::open(&path)?;
    let samples = 2000;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut list_times = Vec::with_capacity(samples);
    let mut listed = 0usize;
    for _ in 0..samples {
        let o = office_number((next() % offices as u64) as usize);
        let m = {
            let mut m = first;
            for _ in 0..(next() % months) {
                m = m.next();
            }
            m
        };
        let t = Instant::now();
        let list = store.notices_of(&o, Some(m))?;
        list_times.push(t.elapsed());
        listed += list.len();
    }
    let mut open_times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let id = format!("N{:010}", next() % n + 1);
        let t = Instant::now();
        let rec = store.notice(&id)?.expect("notice");
        let bytes = store.notice_body(&rec.sha256)?.expect("body");
        if rec.media_type.starts_with("text/csv") {
            let p = notice::parse(&bytes).expect("parse");
            std::hint::black_box(p);
        }
        open_times.push(t.elapsed());
    }
    list_times.sort();
    open_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("notice store benchmark");
    println!(
        "  filled: {n} notices, {offices} offices, {months} months, {pages} pages (one commit each); ~{returns_made} return items derived"
    );
    println!(
        "  ingest: {:.1} s = {:.0} notices/s",
        ingest.as_secs_f64(),
        n as f64 / ingest.as_secs_f64()
    );
    println!(
        "  store size: {:.1} MiB ({:.0} bytes/notice)",
        size as f64 / 1048576.0,
        size as f64 / n as f64
    );
    println!(
        "  list one office's notices of one month ({} samples, {:.1} notices each): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        samples,
        listed as f64 / samples as f64,
        ms(percentile(&list_times, 0.5)),
        ms(percentile(&list_times, 0.99)),
        ms(*list_times.last().unwrap())
    );
    println!(
        "  open one notice (record + body + parse) ({samples} samples): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(percentile(&open_times, 0.5)),
        ms(percentile(&open_times, 0.99)),
        ms(*open_times.last().unwrap())
    );
    println!(
        "  peak RSS: {:.1} MiB",
        peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    Ok(())
}
