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

use kaigo_relay::bench_support::{KINDS, NoticeFill, office_number};
use kaigo_relay::claim::Month;
use kaigo_relay::notice;
use kaigo_relay::store::Store;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
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
    let first: Month = "201601".parse()?;
    let plan = NoticeFill::synthetic(total, offices, first);
    let months = plan.months();

    // Ingest: one page per office and month (what a mirror pass stores), one commit each.
    let store = Store::open(&path)?;
    let filled = plan.fill(&store, |n, elapsed| {
        eprintln!("  {n} notices, {:.0}/s", n as f64 / elapsed.as_secs_f64());
    })?;
    let (n, pages) = (filled.notices, filled.pages);
    let ingest = filled.elapsed;
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
