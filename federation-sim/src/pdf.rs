//! The printable payment advice: a one-page PDF 1.4 written by hand.
//!
//! No PDF crate is needed for one page of ASCII text in a standard font: the file has a
//! catalog, a page tree, one A4 landscape page, the built-in Helvetica font (no embedding), one
//! content stream, an info dictionary, a cross-reference table whose offsets are the byte
//! positions of the `N 0 obj` lines, and a trailer ending in `%%EOF`. Invariant: the bytes are a
//! pure function of [`Advice`] (no dates other than those given, no IDs), so the same advice
//! always gives the same file, and every xref offset points at its object (a unit test and the
//! integration tests check that, the way `qpdf --check` would).

use jiff::civil::Date;

use crate::window::Month;

/// What the advice says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advice<'a> {
    pub office_number: &'a str,
    pub processing_month: Month,
    pub transfer_date: Date,
    /// 振込金額 (yen).
    pub amount: i64,
    /// Paid statements (after 過誤).
    pub statements: i64,
    /// Paid units (after 査定 and 過誤).
    pub units: i64,
}

/// A PDF literal string: ASCII only (others become `?`), with `\`, `(` and `)` escaped.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('(');
    for c in text.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push(')');
    out
}

/// `12345678` → `12,345,678`.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The PDF bytes of a payment advice.
pub fn payment_advice(advice: &Advice<'_>) -> Vec<u8> {
    let m = advice.processing_month;
    let d = advice.transfer_date;
    let lines = [
        "Kaigo kyufuhi shiharai kettei tsuchisho (payment advice)".to_owned(),
        String::new(),
        format!("Office number: {}", advice.office_number),
        format!("Processing month: {:04}-{:02} ({m})", m.year, m.month),
        format!(
            "Transfer date: {:04}-{:02}-{:02}",
            d.year(),
            d.month(),
            d.day()
        ),
        format!("Amount: JPY {}", grouped(advice.amount)),
        format!(
            "Paid statements: {}   Units: {}",
            advice.statements,
            grouped(advice.units)
        ),
        String::new(),
        "Synthetic notice issued by federation-sim.".to_owned(),
    ];
    let mut content = String::from("BT\n/F1 16 Tf\n20 TL\n60 520 Td\n");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            content.push_str("T*\n");
        }
        if !line.is_empty() {
            content.push_str(&literal(line));
            content.push_str(" Tj\n");
        }
    }
    content.push_str("ET\n");

    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 842 595] \
         /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
        format!(
            "<< /Title {} /Producer (federation-sim) >>",
            literal(&format!("Payment advice {} {m}", advice.office_number))
        ),
    ];
    // The second line marks the file as binary for transfer tools (PDF 1.4 §3.4.1).
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f\r\n", objects.len() + 1);
    for offset in &offsets {
        // Each entry is exactly 20 bytes: 10 + 1 + 5 + 1 + 1 + CR LF.
        table.push_str(&format!("{offset:010} 00000 n\r\n"));
    }
    out.extend_from_slice(table.as_bytes());
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advice() -> Vec<u8> {
        payment_advice(&Advice {
            office_number: "1379999996",
            processing_month: Month::parse("202506").unwrap(),
            transfer_date: Date::new(2025, 7, 20).unwrap(),
            amount: 1_234_567,
            statements: 9,
            units: 137_174,
        })
    }

    /// Checks the structure the way a PDF reader would: header, trailer, every xref offset at
    /// its `N 0 obj`, the stream length. Returns the content stream.
    fn check_structure(pdf: &[u8]) -> String {
        assert!(pdf.starts_with(b"%PDF-1.4\n"));
        assert!(pdf.ends_with(b"%%EOF"));
        let text = String::from_utf8_lossy(pdf);
        let start = text.rfind("startxref\n").unwrap() + "startxref\n".len();
        let xref: usize = text[start..].lines().next().unwrap().parse().unwrap();
        assert!(pdf[xref..].starts_with(b"xref\n0 7\n"));
        let entries = &pdf[xref + "xref\n0 7\n".len()..];
        for n in 0..7 {
            let entry = &entries[n * 20..(n + 1) * 20];
            assert!(entry.ends_with(b"\r\n"), "20-byte entry {n}");
            let entry = std::str::from_utf8(entry).unwrap();
            let offset: usize = entry[..10].parse().unwrap();
            if n == 0 {
                assert_eq!(entry, "0000000000 65535 f\r\n");
                continue;
            }
            assert_eq!(&entry[10..], " 00000 n\r\n");
            assert!(
                pdf[offset..].starts_with(format!("{n} 0 obj\n").as_bytes()),
                "object {n} at {offset}"
            );
        }
        assert!(text.contains("trailer\n<< /Size 7 /Root 1 0 R /Info 6 0 R >>"));
        let s = text.find("stream\n").unwrap() + "stream\n".len();
        let e = text.find("endstream").unwrap();
        let length: usize = {
            let l = text.find("/Length ").unwrap() + "/Length ".len();
            text[l..].split(' ').next().unwrap().parse().unwrap()
        };
        assert_eq!(e - s, length);
        text[s..e].to_owned()
    }

    #[test]
    fn a_valid_one_page_pdf() {
        let pdf = advice();
        let content = check_structure(&pdf);
        assert!(content.contains("(Office number: 1379999996) Tj"));
        assert!(content.contains("(Processing month: 2025-06 \\(202506\\)) Tj"));
        assert!(content.contains("(Amount: JPY 1,234,567) Tj"));
        assert_eq!(advice(), pdf, "deterministic");
    }

    #[test]
    fn helpers() {
        assert_eq!(literal("a(b)\\c日"), "(a\\(b\\)\\\\c?)");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(-1_234_567), "-1,234,567");
    }
}
