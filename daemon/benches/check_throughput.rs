//! Checking throughput of `claim::check` on a ~10 MB claim file (target: at least 100 MB/s on
//! one core). Run: `cargo bench -p kaigo-relay --bench check_throughput`.
//!
//! The files come from `federation_sim::generate` (ほのぼの and QKAN quoting, ~10 MB each), plus
//! the same ほのぼの file with LF line ends and a wrong count (a refused file, so the cost of
//! reporting is measured too). Each is checked `RUNS` times after a warm-up; the median, best
//! and worst are printed.

use std::time::{Duration, Instant};

use kaigo_relay::claim::{CheckContext, Month, Verdict, check};

const RUNS: usize = 15;
const TARGET_BYTES: usize = 10 * 1024 * 1024;

fn generate(style: federation_sim::Style) -> Vec<u8> {
    // Members needed for ~10 MB: measure one small file first, then scale.
    let gen_with = |members: u32| {
        let opts = federation_sim::GenOptions {
            office: "1379999996".into(),
            processing_month: federation_sim::Month {
                year: 2025,
                month: 6,
            },
            members,
            style,
            seed: 7,
            service_month: None,
            insured_numbers: None,
        };
        federation_sim::generate(&opts)
            .map(|files| {
                files
                    .into_iter()
                    .next()
                    .map(|f| f.bytes)
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    };
    let sample = gen_with(1000).len().max(1);
    let members = (TARGET_BYTES * 1000 / sample) as u32;
    gen_with(members)
}

fn measure(name: &str, bytes: &[u8], expect: Verdict) {
    let ctx = CheckContext {
        processing_month: Month::new(2025, 6),
        offices: None,
    };
    let warm = check(bytes, &ctx);
    assert_eq!(
        warm.verdict(),
        expect,
        "{name}: {:?}",
        warm.findings.first()
    );
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let r = check(bytes, &ctx);
            let d = t.elapsed();
            std::hint::black_box(r);
            d
        })
        .collect();
    times.sort();
    let mb = bytes.len() as f64 / 1e6;
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "{name:<28} {mb:>6.1} MB  median {:>7.1} ms = {:>6.0} MB/s  (best {:.0} MB/s, worst {:.0} MB/s)",
        times[RUNS / 2].as_secs_f64() * 1e3,
        rate(times[RUNS / 2]),
        rate(times[0]),
        rate(times[RUNS - 1]),
    );
}

fn main() {
    let honobono = generate(federation_sim::Style::Honobono);
    let qkan = generate(federation_sim::Style::Qkan);
    println!("claim::check throughput, {RUNS} runs each, one thread");
    measure("711 ほのぼの style (ok)", &honobono, Verdict::Ok);
    measure("711 QKAN style (ok)", &qkan, Verdict::Ok);
    let text = String::from_utf8_lossy(&honobono).replace("\r\n", "\n");
    let broken = text.replacen(",0,", ",0,1", 1).into_bytes();
    measure("711 LF + wrong count (refused)", &broken, Verdict::Refused);
}
