//! Reading the bytes of a claim file into records: CP932 decoding, CRLF-terminated lines, and
//! comma-separated items with optional double quotes (claim-format.md §1.1).
//!
//! Invariant: no information is lost between bytes and records. Every line keeps its position
//! (the record number the file should carry) and how it was terminated, so that the checker can
//! report a missing CRLF or a stray byte at the right place; quoted and unquoted items read alike.

use encoding_rs::SHIFT_JIS;

/// How a line ended in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminator {
    /// CR LF, as the interface specification requires.
    CrLf,
    /// A bare LF (a file saved by a Unix tool or converted by an editor).
    Lf,
    /// Nothing: the last line of a file that does not end with a line break.
    None,
}

/// One physical line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based position of the line in the file (= the record number it should carry).
    pub position: u32,
    /// The line without its terminator.
    pub text: &'a str,
    /// How the line ended.
    pub terminator: Terminator,
}

/// Decoding failed at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("byte offset {offset}: not Shift_JIS (CP932)")]
pub struct DecodeError {
    /// Byte offset of the first byte that is not CP932.
    pub offset: usize,
}

/// Decodes CP932 (Windows Shift_JIS; encoding_rs's `SHIFT_JIS` is the WHATWG definition, which
/// is CP932). Errors at the first undecodable byte rather than replacing it.
pub fn decode_cp932(bytes: &[u8]) -> Result<String, DecodeError> {
    match SHIFT_JIS.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => Ok(text.into_owned()),
        None => Err(DecodeError {
            offset: first_bad_offset(bytes),
        }),
    }
}

/// The offset of the first byte sequence CP932 cannot decode.
fn first_bad_offset(bytes: &[u8]) -> usize {
    let mut decoder = SHIFT_JIS.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(bytes.len() * 3 + 16);
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    match result {
        encoding_rs::DecoderResult::Malformed(bad, after) => {
            read.saturating_sub(usize::from(bad) + usize::from(after))
        }
        _ => bytes.len(),
    }
}

/// Splits decoded text into lines, keeping each line's terminator. A file ending with a line
/// break yields no empty trailing line.
pub fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut position = 1u32;
    while !rest.is_empty() {
        let (line, terminator, next) = match rest.find('\n') {
            Some(i) => {
                let (body, t) = match rest[..i].strip_suffix('\r') {
                    Some(b) => (b, Terminator::CrLf),
                    None => (&rest[..i], Terminator::Lf),
                };
                (body, t, &rest[i + 1..])
            }
            None => (rest, Terminator::None, ""),
        };
        out.push(Line {
            position,
            text: line,
            terminator,
        });
        position = position.saturating_add(1);
        rest = next;
    }
    out
}

/// Splits one line into items: comma-separated, each optionally in double quotes with `""` for a
/// quote inside. Returns `None` if the quoting is broken (an unterminated quote).
pub fn items(line: &str) -> Option<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .quoting(true)
        .double_quote(true)
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => {
            // The csv crate accepts a stray quote inside a bare item; the format does not use
            // one, but it is not ours to refuse here. An unterminated quote swallows the rest of
            // the line, which shows as a missing closing quote.
            if unterminated_quote(line) {
                return None;
            }
            Some(record.iter().map(str::to_owned).collect())
        }
        Ok(false) => Some(vec![String::new()]),
        Err(_) => None,
    }
}

fn unterminated_quote(line: &str) -> bool {
    // Count quotes that open or close a quoted item. Inside a quoted item `""` is an escape.
    let mut in_quotes = false;
    let mut at_item_start = true;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (false, '"') if at_item_start => in_quotes = true,
            (true, '"') => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                } else {
                    in_quotes = false;
                }
            }
            _ => {}
        }
        at_item_start = !in_quotes && c == ',';
    }
    in_quotes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_cp932_and_finds_bad_bytes() {
        let (bytes, _, _) = SHIFT_JIS.encode("介護,ｶﾅ,①,髙");
        assert_eq!(decode_cp932(&bytes).unwrap(), "介護,ｶﾅ,①,髙");
        let mut bad = b"1,1,".to_vec();
        bad.extend_from_slice(&[0x81, 0x20]); // lead byte followed by an invalid trail byte
        let err = decode_cp932(&bad).unwrap_err();
        assert_eq!(err.offset, 4);
        assert_eq!(decode_cp932(&[0xA0]).unwrap_err().offset, 0);
    }

    #[test]
    fn lines_keep_positions_and_terminators() {
        let l = lines("a\r\nb\nc");
        assert_eq!(l.len(), 3);
        assert_eq!(
            (l[0].position, l[0].text, l[0].terminator),
            (1, "a", Terminator::CrLf)
        );
        assert_eq!((l[1].text, l[1].terminator), ("b", Terminator::Lf));
        assert_eq!((l[2].position, l[2].terminator), (3, Terminator::None));
        assert_eq!(lines("a\r\n").len(), 1);
        assert!(lines("").is_empty());
    }

    #[test]
    fn quoted_and_bare_items_read_alike() {
        let bare = items("2,2,7111,202505,1379999996").unwrap();
        let quoted = items(r#"2,2,"7111","202505","1379999996""#).unwrap();
        assert_eq!(bare, quoted);
        assert_eq!(items(r#"a,"x""y",,"""#).unwrap(), vec!["a", "x\"y", "", ""]);
        assert_eq!(items("").unwrap(), vec![""]);
        assert!(items(r#"a,"open"#).is_none());
    }
}
