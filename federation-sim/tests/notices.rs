//! Notices end to end: claims submitted over mutual TLS, the month-end and payment phases run
//! through `/sim/advance` or by the clock, notices listed and downloaded through `/v1/notices`
//! and compared with the review rules of the README ("Notices").

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use federation_sim::{GenOptions, Month, OfficeConfig, Style};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use common::*;

const OFFICE: &str = "1379999996";
const OTHER_OFFICE: &str = "1379999988";
const OTHER_USER: (&str, &str) = ("KJ00000002", "other");
/// An agent office of USER (registered in `start`).
const AGENT_OFFICE: &str = "1210600472";

async fn start(dir: &std::path::Path, auto: bool, clock: Option<&str>) -> Running {
    let mut c = config(dir);
    c.notices.auto = auto;
    c.offices.push(OfficeConfig {
        office_number: AGENT_OFFICE.into(),
        name: String::new(),
        user_id: USER.into(),
        password: PASSWORD.into(),
        certificate_fingerprints: vec![],
    });
    Running::start(c, clock).await
}

fn generated(
    office: &str,
    processing: &str,
    service: Option<&str>,
    insured: &[u64],
) -> Vec<federation_sim::GeneratedFile> {
    federation_sim::generate(&GenOptions {
        office: office.into(),
        processing_month: Month::parse(processing).unwrap(),
        members: insured.len() as u32,
        style: Style::Honobono,
        seed: 3,
        service_month: service.map(|s| Month::parse(s).unwrap()),
        insured_numbers: Some(insured.to_vec()),
    })
    .unwrap()
}

/// Submits as USER with office 1379999996's certificate; returns the receipt ID.
async fn submit(sim: &Running, key: &str, name: &str, body: &[u8]) -> String {
    let mut req = post_claim(key, body);
    req.headers_mut()
        .insert("x-file-name", name.parse().unwrap());
    let (status, receipt) = sim.gateway(req).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt["status"], "arrived", "{receipt}");
    receipt["receipt_id"].as_str().unwrap().to_owned()
}

async fn advance(sim: &Running, body: Value) -> Value {
    let (status, run) = sim
        .control(Method::POST, "/sim/advance", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}: {run}");
    run
}

async fn sim_notices(sim: &Running) -> Vec<Value> {
    let (status, list) = sim.control(Method::GET, "/sim/notices", None).await;
    assert_eq!(status, StatusCode::OK);
    list.as_array().unwrap().clone()
}

async fn sim_returns(sim: &Running) -> Vec<Value> {
    let (status, list) = sim.control(Method::GET, "/sim/returns", None).await;
    assert_eq!(status, StatusCode::OK);
    list.as_array().unwrap().clone()
}

/// A GET over mutual TLS with `cert_office`'s certificate and the given credentials.
async fn fetch(
    sim: &Running,
    cert_office: &str,
    (user, password): (&str, &str),
    path: &str,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let stream = sim
        .connect(Some(cert_office), &[b"http/1.1"])
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", basic(user, password))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

async fn list_page(
    sim: &Running,
    cert_office: &str,
    cred: (&str, &str),
    query: &str,
) -> (StatusCode, Value) {
    let (status, _, body) = fetch(sim, cert_office, cred, &format!("/v1/notices{query}")).await;
    (status, serde_json::from_slice(&body).unwrap())
}

/// Every notice of the user, paging with `limit`; checks the paging contract on the way.
async fn list_all(
    sim: &Running,
    cert_office: &str,
    cred: (&str, &str),
    limit: usize,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            None => format!("?limit={limit}"),
            Some(c) => format!("?after={c}&limit={limit}"),
        };
        let (status, page) = list_page(sim, cert_office, cred, &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let notices = page["notices"].as_array().unwrap();
        let next = page["next_cursor"].as_str().unwrap().to_owned();
        assert!(notices.len() <= limit);
        if notices.is_empty() {
            assert_eq!(next, cursor.clone().unwrap_or_else(|| "0".into()));
            return out;
        }
        if let Some(c) = &cursor {
            assert!(
                next.parse::<u64>().unwrap() > c.parse::<u64>().unwrap(),
                "monotonic"
            );
        }
        out.extend(notices.iter().cloned());
        cursor = Some(next);
    }
}

/// Downloads a notice as its owner and checks the headers against the listing.
async fn content(sim: &Running, notice: &Value) -> Vec<u8> {
    let id = notice["notice_id"].as_str().unwrap();
    let (status, headers, body) = fetch(
        sim,
        OFFICE,
        (USER, PASSWORD),
        &format!("/v1/notices/{id}/content"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{id}");
    assert_eq!(
        headers["content-type"],
        notice["media_type"].as_str().unwrap()
    );
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        body.len().to_string()
    );
    assert_eq!(body.len() as u64, notice["size"].as_u64().unwrap());
    let digest = Sha256::digest(&body);
    assert_eq!(hex::encode(digest), notice["sha256"].as_str().unwrap());
    assert_eq!(
        headers["content-digest"].to_str().unwrap(),
        format!("sha-256=:{}:", BASE64.encode(digest))
    );
    body
}

/// Strict CP932 decoding.
fn decode(bytes: &[u8]) -> String {
    encoding_rs::SHIFT_JIS
        .decode_without_bom_handling_and_without_replacement(bytes)
        .expect("CP932")
        .into_owned()
}

/// CSV items of one record (bare or quoted with `""`).
fn split_items(record: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut chars = record.chars().peekable();
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next().expect("closed quote") {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        item.push('"');
                    }
                    '"' => break,
                    c => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                assert_ne!(c, '"', "stray quote in {record:?}");
                item.push(c);
                chars.next();
            }
        }
        items.push(item);
        match chars.next() {
            None => return items,
            Some(',') => {}
            Some(c) => panic!("{c:?} after an item in {record:?}"),
        }
    }
}

/// A CSV notice: checks the envelope and returns its data records' items after
/// `2,<recno>,` (ID first).
fn csv(bytes: &[u8], kind_id: &str, office: &str, month: &str) -> Vec<Vec<String>> {
    let text = decode(bytes);
    let body = text.strip_suffix("\r\n").expect("final CRLF");
    let records: Vec<Vec<String>> = body.split("\r\n").map(split_items).collect();
    let n = records.len();
    let control = &records[0];
    assert_eq!(control.len(), 12);
    assert_eq!(control[..3], ["1", "1", "0"]);
    assert_eq!(control[3], (n - 2).to_string());
    assert_eq!(control[4], &kind_id[..3]);
    assert_eq!(control[7], office);
    assert_eq!((control[9].as_str(), control[10].as_str()), ("7", month));
    assert_eq!(records[n - 1], ["3".to_owned(), n.to_string()]);
    records[1..n - 1]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r[0], "2");
            assert_eq!(r[1], (i + 2).to_string());
            assert_eq!(r[2], kind_id);
            r[2..].to_vec()
        })
        .collect()
}

fn rows<'a>(records: &'a [Vec<String>], kind: &str) -> Vec<&'a [String]> {
    records
        .iter()
        .filter(|r| r[1] == kind)
        .map(|r| &r[2..])
        .collect()
}

fn num(s: &str) -> i64 {
    s.parse()
        .unwrap_or_else(|_| panic!("{s:?} is not a number"))
}

/// Checks a PDF the way a reader would: header, `%%EOF`, xref offsets at `N 0 obj`.
fn check_pdf(pdf: &[u8]) {
    assert!(pdf.starts_with(b"%PDF-1.4"));
    assert!(pdf.ends_with(b"%%EOF"));
    let text = String::from_utf8_lossy(pdf);
    let at = text.rfind("startxref\n").unwrap() + "startxref\n".len();
    let xref: usize = text[at..].lines().next().unwrap().parse().unwrap();
    assert!(pdf[xref..].starts_with(b"xref\n0 "));
    let header_end = xref
        + pdf[xref..]
            .iter()
            .skip(5)
            .position(|b| *b == b'\n')
            .unwrap()
        + 6;
    let count: usize = std::str::from_utf8(&pdf[xref + 7..header_end - 1])
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 2);
    for n in 1..count {
        let entry = &pdf[header_end + n * 20..header_end + (n + 1) * 20];
        let offset: usize = std::str::from_utf8(&entry[..10]).unwrap().parse().unwrap();
        assert_eq!(&entry[10..], b" 00000 n\r\n");
        assert!(
            pdf[offset..].starts_with(format!("{n} 0 obj").as_bytes()),
            "object {n} at {offset}"
        );
    }
    assert!(text.contains(&format!("/Size {count} /Root 1 0 R")));
}

/// (insured, 種別, outcome, 事由) of `/sim/returns` entries of one month and office.
fn outcomes(
    returns: &[Value],
    month: &str,
    office: &str,
) -> BTreeSet<(String, String, String, String)> {
    returns
        .iter()
        .filter(|r| r["processing_month"] == month && r["office_number"] == office)
        .map(|r| {
            (
                r["insured_number"].as_str().unwrap().to_owned(),
                r["kind"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
                r["reason_code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str, &str, &str)]) -> BTreeSet<(String, String, String, String)> {
    items
        .iter()
        .map(|(a, b, c, d)| ((*a).into(), (*b).into(), (*c).into(), (*d).into()))
        .collect()
}

/// 居宅介護支援 statements (8124): 3000000006 (→ D) and 3000000008 (→ 査定).
const PLAN_FILE: &str = "1,1,0,3,711,0,0,1379999996,0,7,202506,1\r\n\
2,2,\"7111\",202505,1379999996,1,0,02,2,2152,24532,24532,0,0,0,0,0,0,0,0\r\n\
2,3,\"8124\",1379999996,1,202505,139998,1140,\"3000000006\",,,19400101,2,22,20240401,20260331,20240401,01,431111,1076,1,1076,1076,12266,13012345,\"\"\r\n\
2,4,\"8124\",1379999996,1,202505,139998,1140,\"3000000008\",,,19400101,2,22,20240401,20260331,20240401,01,431111,1076,1,1076,1076,12266,13012345,\"\"\r\n\
3,5\r\n";

#[tokio::test]
async fn month_end_follows_the_rules_and_notices_are_served_to_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path(), false, Some(IN_WINDOW)).await;

    // Ten members: every last digit once.
    let members: Vec<u64> = (1_000_000_000..1_000_000_010).collect();
    let files = generated(OFFICE, "202506", None, &members);
    submit(&sim, "k-711", "KK250601.CSV", &files[0].bytes).await;
    submit(&sim, "k-821", "KY250601.CSV", &files[1].bytes).await;
    // △: every record of the statement has an insurer number with a bad check digit.
    let returns_file = cp932(&EXAMPLE.replace("1379999996,00139998", "1379999996,00139997"));
    submit(&sim, "k-triangle", "KK250602.CSV", &returns_file).await;
    // Services 25 months before the processing month: 時効 (E beats B for ...7).
    let old = generated(
        OFFICE,
        "202506",
        Some("202305"),
        &[2_000_000_007, 2_000_000_001],
    );
    submit(&sim, "k-old", "KK250603.CSV", &old[0].bytes).await;
    submit(&sim, "k-plan", "KK250604.CSV", &cp932(PLAN_FILE)).await;
    // Not reviewed: a rejected (×) claim and a withdrawn one.
    let rejected = cp932(
        &EXAMPLE
            .replace(",7,202506,1", ",7,202505,1")
            .replace("0000123456", "0000123457"),
    );
    submit(&sim, "k-rejected", "KK250605.CSV", &rejected).await;
    let withdrawn = submit(
        &sim,
        "k-withdrawn",
        "KK250606.CSV",
        &cp932(&EXAMPLE.replace("0000123456", "0000123457")),
    )
    .await;
    let delete = Request::builder()
        .method(Method::DELETE)
        .uri(format!("/v1/claims/{withdrawn}"))
        .header("host", "localhost")
        .header("authorization", basic(USER, PASSWORD))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(sim.gateway(delete).await.0, StatusCode::OK);
    // Another user's office, so that notices of two users exist.
    let mut req = post_claim(
        "k-other",
        &cp932(&EXAMPLE.replace("1,1,0,4,711,0,0,1379999996", "1,1,0,4,711,0,0,1379999988")),
    );
    req.headers_mut().insert(
        "authorization",
        basic(OTHER_USER.0, OTHER_USER.1).parse().unwrap(),
    );
    let (status, _) = sim.gateway_as(Some(OTHER_OFFICE), req).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);

    // Nothing before the phase.
    let (status, page) = list_page(&sim, OFFICE, (USER, PASSWORD), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!({"notices": [], "next_cursor": "0"}));

    let run = advance(&sim, json!({"phase": "month_end"})).await;
    assert_eq!(run["processing_month"], "202506");
    assert_eq!(run["already_done"], false);
    assert_eq!(
        run["finalised"], 7,
        "the reception phase ran first (not the withdrawn one)"
    );
    let issued = run["notices"].as_array().unwrap();
    let kinds = |office: &str| -> Vec<&str> {
        issued
            .iter()
            .filter(|n| n["office_number"] == office)
            .map(|n| n["kind_id"].as_str().unwrap())
            .collect()
    };
    assert_eq!(kinds(OFFICE), ["7211", "7311", "7411", "TXT1"]);
    assert_eq!(kinds(OTHER_OFFICE), ["7211", "7311", "7411", "TXT1"]);
    assert!(kinds(AGENT_OFFICE).is_empty(), "no submission, no notices");

    // The rules, statement by statement.
    let returns = sim_returns(&sim).await;
    let expected = set(&[
        ("1000000007", "請", "returned", "B"),
        ("1000000008", "請", "assessed", "D"),
        ("1000000009", "請", "held", "C"),
        ("1000000007", "給", "returned", "B"),
        ("1000000009", "給", "held", "C"),
        ("0000123456", "請", "returned", "A"),
        ("2000000007", "請", "returned", "E"),
        ("2000000001", "請", "returned", "E"),
        ("3000000006", "サ", "returned", "D"),
        ("3000000008", "サ", "assessed", "D"),
    ]);
    assert_eq!(outcomes(&returns, "202506", OFFICE), expected);
    // The other office's example statement (0000123456, 請) is accepted.
    assert!(outcomes(&returns, "202506", OTHER_OFFICE).is_empty());
    for r in &returns {
        assert_eq!(r["held"], r["outcome"] == "held");
        assert_eq!(r["resubmission"], false);
    }
    let a = returns.iter().find(|r| r["reason_code"] == "A").unwrap();
    assert!(
        a["content"]
            .as_str()
            .unwrap()
            .contains("エラーコード bad_insurer_number"),
        "{a}"
    );

    // Listing: USER sees exactly its office's notices, once each, whatever the page size.
    let all = sim_notices(&sim).await;
    let mine: Vec<&Value> = all
        .iter()
        .filter(|n| n["office_number"] == OFFICE)
        .collect();
    assert_eq!(mine.len(), 4);
    for limit in [1, 3, 100] {
        let listed = list_all(&sim, OFFICE, (USER, PASSWORD), limit).await;
        assert_eq!(listed.iter().collect::<Vec<_>>(), mine, "limit {limit}");
    }
    // A page after the last notice is empty and keeps the cursor.
    let last = mine[3]["notice_id"].as_str().unwrap()[1..]
        .parse::<u64>()
        .unwrap();
    let (_, page) = list_page(&sim, OFFICE, (USER, PASSWORD), &format!("?after={last}")).await;
    assert_eq!(
        page,
        json!({"notices": [], "next_cursor": last.to_string()})
    );
    for bad in ["?after=x", "?after=-1", "?after=", "?limit=0", "?limit=ten"] {
        let (status, err) = list_page(&sim, OFFICE, (USER, PASSWORD), bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let code = err["error"]["code"].as_str().unwrap();
        assert!(code == "bad_cursor" || code == "bad_limit", "{bad}: {err}");
    }
    let (status, page) = list_page(&sim, OFFICE, (USER, PASSWORD), "?limit=5000").await;
    assert_eq!(status, StatusCode::OK, "large limits are clamped");
    assert_eq!(page["notices"].as_array().unwrap().len(), 4);

    // The other user sees only its own, and gets 404 for USER's notices.
    let theirs = list_all(&sim, OTHER_OFFICE, OTHER_USER, 2).await;
    assert_eq!(theirs.len(), 4);
    assert!(theirs.iter().all(|n| n["office_number"] == OTHER_OFFICE));
    for n in &mine {
        let path = format!("/v1/notices/{}/content", n["notice_id"].as_str().unwrap());
        let (status, _, body) = fetch(&sim, OTHER_OFFICE, OTHER_USER, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["error"]["code"], "not_found");
    }
    for id in ["N99999999", "N1", "X", "N00000001x"] {
        let (status, _, _) = fetch(
            &sim,
            OFFICE,
            (USER, PASSWORD),
            &format!("/v1/notices/{id}/content"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
    }

    // Contents: digests, sizes, CP932, and the rows the rules predict.
    let mut bodies = BTreeMap::new();
    for n in &mine {
        let body = content(&sim, n).await;
        assert_eq!(n["processing_month"], "202506");
        assert!(n["issued_at"].as_str().unwrap().ends_with("+09:00"));
        decode(&body);
        bodies.insert(
            n["kind_id"].as_str().unwrap().to_owned(),
            ((*n).clone(), body),
        );
    }
    assert_eq!(
        bodies["7411"].0["title"],
        "請求明細書・給付管理票返戻（保留）一覧表"
    );
    assert_eq!(
        bodies["TXT1"].0["media_type"],
        "text/plain; charset=Shift_JIS"
    );
    assert_eq!(
        bodies["7211"].0["media_type"],
        "text/csv; charset=Shift_JIS"
    );

    let r7411 = csv(&bodies["7411"].1, "7411", OFFICE, "202506");
    let h1 = rows(&r7411, "H1");
    assert_eq!(h1[0][0], OFFICE);
    assert_eq!(h1[0][2], "202506");
    assert_eq!(h1[0][5], "東京都国民健康保険団体連合会");
    let d1 = rows(&r7411, "D1");
    assert!(d1.iter().all(|r| r.len() == 12));
    let listed: BTreeSet<(String, String, String, String)> = d1
        .iter()
        .map(|r| {
            let outcome = if r[10] == "保留" {
                "held"
            } else {
                "returned"
            };
            (r[2].clone(), r[4].clone(), outcome.to_owned(), r[8].clone())
        })
        .collect();
    let returned_or_held: BTreeSet<_> = expected
        .iter()
        .filter(|(_, _, o, _)| o != "assessed")
        .cloned()
        .collect();
    assert_eq!(listed, returned_or_held);
    for r in &d1 {
        match r[4].as_str() {
            "給" => assert_eq!(
                r[0], OFFICE,
                "a 給付管理票 lists the 居宅介護支援事業所番号"
            ),
            _ => assert_eq!(r[0].len(), 6, "6-digit insurer number: {r:?}"),
        }
        assert!(!r[3].is_empty(), "カナ氏名");
        assert!(r[9].contains("エラーコード"), "{r:?}");
        assert_eq!(
            r[5],
            if r[2].starts_with('2') {
                "202305"
            } else {
                "202505"
            }
        );
    }

    // 7311: one D1 per 査定, −max(1, units/10).
    let r7311 = csv(&bodies["7311"].1, "7311", OFFICE, "202506");
    assert_eq!(rows(&r7311, "H1")[0].len(), 8);
    let assessed: BTreeMap<String, i64> = returns
        .iter()
        .filter(|r| r["outcome"] == "assessed")
        .map(|r| {
            let units = r["units"].as_i64().unwrap();
            assert_eq!(r["adjustment"].as_i64().unwrap(), -(units / 10).max(1));
            (r["insured_number"].as_str().unwrap().to_owned(), units)
        })
        .collect();
    let d1 = rows(&r7311, "D1");
    assert_eq!(d1.len(), 2);
    for r in d1 {
        let units = assessed[&r[1]];
        let cut = (units / 10).max(1);
        assert_eq!(num(&r[6]), -cut);
        assert_eq!(r[7], "D");
        assert_eq!(
            r[9],
            format!("確定単位数({})、請求単位数({units})", units - cut)
        );
    }

    // 7211: D1 groups sum to T1; the counts are those of the 請/サ returns.
    let r7211 = csv(&bodies["7211"].1, "7211", OFFICE, "202506");
    let d1 = rows(&r7211, "D1");
    let t1 = rows(&r7211, "T1");
    assert_eq!(t1.len(), 1);
    let mut sums = [0i64; 16];
    for r in &d1 {
        assert_eq!(r.len(), 18);
        for (k, v) in r[2..].iter().enumerate() {
            sums[k] += num(v);
        }
    }
    let totals: Vec<i64> = t1[0][4..].iter().map(|v| num(v)).collect();
    assert_eq!(totals, sums);
    let count = |outcome: &str| {
        returns
            .iter()
            .filter(|r| {
                r["outcome"] == outcome && r["kind"] != "給" && r["office_number"] == OFFICE
            })
            .count() as i64
    };
    let units = |outcome: &str, field: &str| -> i64 {
        returns
            .iter()
            .filter(|r| {
                r["outcome"] == outcome && r["kind"] != "給" && r["office_number"] == OFFICE
            })
            .map(|r| r[field].as_i64().unwrap())
            .sum()
    };
    assert_eq!(
        (sums[0], sums[2]),
        (count("returned"), units("returned", "units"))
    );
    assert_eq!(
        (sums[4], sums[6]),
        (count("assessed"), units("assessed", "adjustment"))
    );
    assert_eq!((sums[8], sums[10]), (count("held"), units("held", "units")));
    assert_eq!((sums[12], sums[14]), (0, 0), "nothing revived");
    assert_eq!(num(&t1[0][0]), -(sums[0] + sums[8]));
    assert_eq!(num(&t1[0][2]), -(sums[2] + sums[10]) + sums[6]);

    let text = decode(&bodies["TXT1"].1);
    assert!(text.starts_with("令和7年6月審査分の返戻件数と支払予定日のお知らせ\r\n"));
    assert!(text.ends_with("\r\n"));
    // Returned 請/サ statements plus the returned 給付管理票.
    assert!(text.contains(&format!("返戻件数：{}件", count("returned") + 1)));

    sim.stop().await;
}

#[tokio::test]
async fn phases_are_idempotent_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path(), false, Some(IN_WINDOW)).await;
    let files = generated(OFFICE, "202506", None, &[10, 17, 18, 19, 15]);
    submit(&sim, "k-711", "KK250601.CSV", &files[0].bytes).await;

    let first = advance(&sim, json!({"phase": "month_end"})).await;
    assert_eq!(first["notices"].as_array().unwrap().len(), 4);
    let again = advance(&sim, json!({"phase": "month_end"})).await;
    assert_eq!(again["already_done"], true);
    assert_eq!(again["notices"], json!([]));
    let before = sim_notices(&sim).await;
    let returns_before = sim_returns(&sim).await;
    assert_eq!(before.len(), 4);
    sim.stop().await;

    // Reopen the state directory: notices, bodies and markers are all there.
    let sim = start(dir.path(), false, None).await;
    assert_eq!(sim_notices(&sim).await, before);
    assert_eq!(sim_returns(&sim).await, returns_before);
    for n in &before {
        content(&sim, n).await;
    }
    let again = advance(&sim, json!({"phase": "month_end"})).await;
    assert_eq!(again["already_done"], true);
    let pay = advance(&sim, json!({"phase": "payment"})).await;
    let kinds: Vec<&str> = pay["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind_id"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["7513", "7521", "7611", "7621", "PDF1"]);
    let pay_again = advance(
        &sim,
        json!({"phase": "payment", "processing_month": "202506"}),
    )
    .await;
    assert_eq!(pay_again["already_done"], true);
    assert_eq!(pay_again["notices"], json!([]));
    let after_payment = sim_notices(&sim).await;
    assert_eq!(after_payment.len(), 9);
    assert_eq!(after_payment[..4], before[..]);
    sim.stop().await;

    // Identical inputs on a fresh simulator (same day) give byte-identical notices.
    let dir2 = tempfile::tempdir().unwrap();
    let sim = start(dir2.path(), false, Some(IN_WINDOW)).await;
    submit(&sim, "k-711", "KK250601.CSV", &files[0].bytes).await;
    advance(&sim, json!({"phase": "payment"})).await;
    let digests = |list: &[Value]| -> Vec<(String, String)> {
        list.iter()
            .map(|n| {
                (
                    n["kind_id"].as_str().unwrap().to_owned(),
                    n["sha256"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(digests(&sim_notices(&sim).await), digests(&after_payment));
    sim.stop().await;
}

#[tokio::test]
async fn payment_notices_and_the_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path(), false, Some(IN_WINDOW)).await;
    // 1379999996: a 過誤 (…5) and a 査定 (…8); 1210600472 (agent office of USER): neither.
    let members: Vec<u64> = (1_000_000_000..1_000_000_010).collect();
    let files = generated(OFFICE, "202506", None, &members);
    submit(&sim, "k-711", "KK250601.CSV", &files[0].bytes).await;
    submit(&sim, "k-821", "KY250601.CSV", &files[1].bytes).await;
    let agent = generated(
        AGENT_OFFICE,
        "202506",
        None,
        &[1_210_000_000, 1_210_000_001, 1_210_000_004],
    );
    submit(&sim, "k-agent", "KK250602.CSV", &agent[0].bytes).await;

    // Payment without a month end first: both sets are issued, month end first.
    let run = advance(&sim, json!({"phase": "payment"})).await;
    assert_eq!(run["processing_month"], "202506");
    let kinds = |office: &str| -> Vec<String> {
        run["notices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["office_number"] == office)
            .map(|n| n["kind_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        kinds(OFFICE),
        [
            "7211", "7311", "7411", "TXT1", "7513", "7521", "7611", "7621", "PDF1"
        ]
    );
    assert_eq!(
        kinds(AGENT_OFFICE),
        ["7211", "7311", "7411", "TXT1", "7513", "7521", "PDF1"]
    );

    let listed = list_all(&sim, OFFICE, (USER, PASSWORD), 4).await;
    assert_eq!(listed.len(), 16, "both offices of the user");
    let returns = sim_returns(&sim).await;
    for office in [OFFICE, AGENT_OFFICE] {
        let notices: BTreeMap<String, Value> = listed
            .iter()
            .filter(|n| n["office_number"] == office)
            .map(|n| (n["kind_id"].as_str().unwrap().to_owned(), n.clone()))
            .collect();
        let r7521 = csv(
            &content(&sim, &notices["7521"]).await,
            "7521",
            office,
            "202506",
        );
        let t = |k: &str| -> Vec<i64> { rows(&r7521, k)[0].iter().map(|v| num(v)).collect() };
        let (t1, t2, t3) = (t("T1"), t("T2"), t("T3"));
        assert_eq!(t1.len(), 9);
        let diff: Vec<i64> = t1.iter().zip(&t2).map(|(a, b)| a - b).collect();
        assert_eq!(t3, diff, "T3 = T1 − T2");
        // D1 lines add up to T1.
        let mut sums = vec![0i64; 9];
        for r in rows(&r7521, "D1") {
            assert_eq!(r.len(), 13);
            for (k, v) in r[4..].iter().enumerate() {
                sums[k] += num(v);
            }
        }
        assert_eq!(sums, t1);
        // 金額 = units × 10, 介護給付費 = 90 %.
        assert_eq!(t1[3], t1[2] * 10);
        assert_eq!(t1[4], t1[3] * 9 / 10);

        let r7513 = csv(
            &content(&sim, &notices["7513"]).await,
            "7513",
            office,
            "202506",
        );
        let h1 = rows(&r7513, "H1");
        assert_eq!(h1.len(), 1);
        assert_eq!(h1[0].len(), 20);
        assert_eq!(h1[0][0], "202506");
        assert_eq!(h1[0][6], office);
        assert_eq!(num(&h1[0][7]), t3[4], "振込金額");
        assert_eq!(num(&h1[0][8]), t3[4], "介護給付費支払額");
        assert_eq!(num(&h1[0][15]), t3[4], "合計金額");
        assert_eq!(h1[0][18], "20250720");

        let pdf = content(&sim, &notices["PDF1"]).await;
        assert_eq!(notices["PDF1"]["media_type"], "application/pdf");
        check_pdf(&pdf);
        let pdf_text = String::from_utf8_lossy(&pdf);
        assert!(pdf_text.contains(&format!("(Office number: {office}) Tj")));
        assert!(pdf_text.contains("202506"));

        if office == OFFICE {
            // 7611 for the …5 statement; T2 of 7521 equals its totals.
            let r7611 = csv(
                &content(&sim, &notices["7611"]).await,
                "7611",
                office,
                "202506",
            );
            let d1 = rows(&r7611, "D1");
            assert_eq!(d1.len(), 1);
            assert_eq!(d1[0][2], "1000000005");
            let t = &rows(&r7611, "T1")[0];
            assert_eq!((num(&t[0]), num(&t[1]), num(&t[2])), (t2[0], t2[2], t2[4]));
            // 7621 for the 査定 (…8), result 01.
            let r7621 = csv(
                &content(&sim, &notices["7621"]).await,
                "7621",
                office,
                "202506",
            );
            let d1 = rows(&r7621, "D1");
            assert_eq!(d1.len(), 1);
            assert_eq!(d1[0][2], "1000000008");
            assert_eq!(d1[0][9], "01");
            let a = returns
                .iter()
                .find(|r| r["insured_number"] == "1000000008" && r["kind"] == "請")
                .unwrap();
            let units = a["units"].as_i64().unwrap();
            let paid = units + a["adjustment"].as_i64().unwrap();
            assert_eq!(
                d1[0][10..14].iter().map(|v| num(v)).collect::<Vec<_>>(),
                [units, paid, units, paid]
            );
        } else {
            assert!(!notices.contains_key("7611") && !notices.contains_key("7621"));
            assert_eq!(t2, vec![0; 9]);
            // The agent office has no registered name: a synthetic one.
            let r7521_h1 = &rows(&r7521, "H1")[0];
            assert_eq!(r7521_h1[1], "事業所１２１０６００４７２");
        }
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_resubmission_of_a_returned_statement_is_accepted_next_month() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path(), false, Some(IN_WINDOW)).await;
    let insured = [4_000_000_007, 4_000_000_009, 4_000_000_001];
    let june = generated(OFFICE, "202506", None, &insured);
    submit(&sim, "k-june", "KK250601.CSV", &june[0].bytes).await;
    advance(&sim, json!({"phase": "month_end"})).await;
    let returns = sim_returns(&sim).await;
    assert_eq!(
        outcomes(&returns, "202506", OFFICE),
        set(&[
            ("4000000007", "請", "returned", "B"),
            ("4000000009", "請", "held", "C"),
        ])
    );

    // July's window: the same statements (service month 202505) again.
    let (status, _) = sim
        .control(
            Method::POST,
            "/sim/clock",
            Some(json!({"now": "2025-07-03T10:00:00+09:00"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let july = generated(OFFICE, "202507", Some("202505"), &insured);
    submit(&sim, "k-july", "KK250701.CSV", &july[0].bytes).await;
    let run = advance(&sim, json!({"phase": "month_end"})).await;
    assert_eq!(run["processing_month"], "202507");
    let returns = sim_returns(&sim).await;
    assert!(
        outcomes(&returns, "202507", OFFICE).is_empty(),
        "{returns:?}"
    );
    assert_eq!(
        outcomes(&returns, "202506", OFFICE).len(),
        2,
        "history kept"
    );

    // July's 7411 has no detail; its 7211 counts the held statement as 保留復活.
    let july_notices: BTreeMap<String, Value> = sim_notices(&sim)
        .await
        .into_iter()
        .filter(|n| n["processing_month"] == "202507")
        .map(|n| (n["kind_id"].as_str().unwrap().to_owned(), n))
        .collect();
    let r7411 = csv(
        &content(&sim, &july_notices["7411"]).await,
        "7411",
        OFFICE,
        "202507",
    );
    assert!(rows(&r7411, "D1").is_empty());
    let r7211 = csv(
        &content(&sim, &july_notices["7211"]).await,
        "7211",
        OFFICE,
        "202507",
    );
    let t1 = &rows(&r7211, "T1")[0];
    assert_eq!(num(&t1[16]), 1, "保留復活 件数");
    assert!(num(&t1[18]) > 0, "保留復活 単位数");
    assert_eq!(num(&t1[0]), 0, "no 請求差");
    sim.stop().await;
}

async fn wait_for_notices(sim: &Running, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let all = sim_notices(sim).await;
        if all.len() >= n {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} notices: {all:?}",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn phases_run_by_themselves_on_the_clock_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path(), true, Some(IN_WINDOW)).await;
    let june = generated(OFFICE, "202506", None, &[10, 11, 12]);
    submit(&sim, "k-june", "KK250601.CSV", &june[0].bytes).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sim_notices(&sim).await.is_empty(), "nothing is due yet");

    // Two seconds before June's month end.
    sim.control(
        Method::POST,
        "/sim/clock",
        Some(json!({"now": "2025-06-30T16:59:58+09:00"})),
    )
    .await;
    let all = wait_for_notices(&sim, 4).await;
    assert_eq!(all.len(), 4);
    for n in &all {
        assert_eq!(n["issued_at"], "2025-06-30T17:00:00+09:00");
        assert_eq!(n["processing_month"], "202506");
    }
    let r7211 = csv(&content(&sim, &all[0]).await, "7211", OFFICE, "202506");
    assert_eq!(
        rows(&r7211, "H1")[0][3],
        "20250630",
        "dated the scheduled day"
    );

    // July's window, then far ahead: June's payment, July's month end and payment, in order.
    sim.control(
        Method::POST,
        "/sim/clock",
        Some(json!({"now": "2025-07-03T10:00:00+09:00"})),
    )
    .await;
    let july = generated(OFFICE, "202507", None, &[20, 21]);
    submit(&sim, "k-july", "KK250701.CSV", &july[0].bytes).await;
    sim.control(
        Method::POST,
        "/sim/clock",
        Some(json!({"now": "2025-09-01T00:00:00+09:00"})),
    )
    .await;
    let all = wait_for_notices(&sim, 4 + 3 + 4 + 3).await;
    let runs: Vec<(String, String)> = all
        .iter()
        .map(|n| {
            (
                n["issued_at"].as_str().unwrap().to_owned(),
                n["kind_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("2025-06-30T17:00:00+09:00", "7211"),
        ("2025-06-30T17:00:00+09:00", "7311"),
        ("2025-06-30T17:00:00+09:00", "7411"),
        ("2025-06-30T17:00:00+09:00", "TXT1"),
        ("2025-07-15T17:00:00+09:00", "7513"),
        ("2025-07-15T17:00:00+09:00", "7521"),
        ("2025-07-15T17:00:00+09:00", "PDF1"),
        ("2025-07-31T17:00:00+09:00", "7211"),
        ("2025-07-31T17:00:00+09:00", "7311"),
        ("2025-07-31T17:00:00+09:00", "7411"),
        ("2025-07-31T17:00:00+09:00", "TXT1"),
        ("2025-08-15T17:00:00+09:00", "7513"),
        ("2025-08-15T17:00:00+09:00", "7521"),
        ("2025-08-15T17:00:00+09:00", "PDF1"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(runs, expected);
    // Nothing more is issued later, and a manual run finds the phases done.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim_notices(&sim).await.len(), 14);
    let run = advance(
        &sim,
        json!({"phase": "payment", "processing_month": "202507"}),
    )
    .await;
    assert_eq!(run["already_done"], true);
    sim.stop().await;
}

/// `GET` on the control listener at `addr` (plain HTTP/1.1).
async fn control_get(addr: std::net::SocketAddr, path: &str) -> Value {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

/// The binary runs a due month end by itself and is killed with SIGKILL right after: the
/// notices and the phase marker are there when the directory is opened again.
#[tokio::test]
async fn notices_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(dir.path(), false, Some(IN_WINDOW)).await;
    let files = generated(OFFICE, "202506", None, &[17, 18, 19]);
    submit(&sim, "k-711", "KK250601.CSV", &files[0].bytes).await;
    // Past June's month end; the virtual clock is persisted.
    sim.control(
        Method::POST,
        "/sim/clock",
        Some(json!({"now": "2025-07-01T09:00:00+09:00"})),
    )
    .await;
    sim.stop().await;

    let mut c = config(dir.path());
    c.notices.auto = true;
    c.offices.push(OfficeConfig {
        office_number: AGENT_OFFICE.into(),
        name: String::new(),
        user_id: USER.into(),
        password: PASSWORD.into(),
        certificate_fingerprints: vec![],
    });
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, c.to_toml().unwrap()).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_federation-sim"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let control = line
        .trim()
        .rsplit_once("control=http://")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let seen = loop {
        let list = control_get(control, "/sim/notices").await;
        if list.as_array().unwrap().len() == 4 {
            break list;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let sim = start(dir.path(), false, None).await;
    assert_eq!(Value::Array(sim_notices(&sim).await), seen);
    for n in seen.as_array().unwrap() {
        assert_eq!(n["issued_at"], "2025-06-30T17:00:00+09:00");
        content(&sim, n).await;
    }
    let run = advance(
        &sim,
        json!({"phase": "month_end", "processing_month": "202506"}),
    )
    .await;
    assert_eq!(run["already_done"], true);
    assert_eq!(
        outcomes(&sim_returns(&sim).await, "202506", OFFICE),
        set(&[
            ("0000000017", "請", "returned", "B"),
            ("0000000018", "請", "assessed", "D"),
            ("0000000019", "請", "held", "C"),
        ])
    );
    sim.stop().await;
}
