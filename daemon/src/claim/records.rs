//! Reading the bytes of a claim file into records: CP932 decoding, CRLF-terminated lines, and
//! comma-separated items with optional double quotes (claim-format.md §1.1).
//!
//! Invariant: no information is lost between bytes and records. Every line keeps its position
//! (the record number the file should carry) and how it was terminated, so that the checker can
//! report a missing CRLF or a stray byte at the right place; quoted and unquoted items read alike.

use std::borrow::Cow;

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

/// Why a line's quoting is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteError {
    /// A quoted item is not closed before the end of the line.
    Unterminated,
    /// A double quote inside an unquoted item, or text right after a closing quote.
    Stray,
}

/// Splits one line into items: comma-separated, each optionally in double quotes with `""` for a
/// quote inside (claim-format.md §1.1). `out` is cleared first; unquoted items and quoted items
/// without escapes borrow from `line`.
///
/// Hand-written rather than the `csv` crate: the interface specification is stricter than
/// RFC 4180 (a quote may only open an item, never appear inside a bare one, and no item spans
/// lines), the checker must say which line breaks the rule instead of reading on, and a
/// borrowing splitter keeps checking fast enough for the month-start rush.
pub fn split_items<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) -> Result<(), QuoteError> {
    out.clear();
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            // Quoted item: runs to the next quote not followed by another quote.
            let start = i + 1;
            let mut j = start;
            let mut escaped = false;
            loop {
                match bytes[j..].iter().position(|&b| b == b'"') {
                    None => return Err(QuoteError::Unterminated),
                    Some(k) => {
                        j += k;
                        if bytes.get(j + 1) == Some(&b'"') {
                            escaped = true;
                            j += 2;
                        } else {
                            break;
                        }
                    }
                }
            }
            let inner = &line[start..j];
            out.push(if escaped {
                Cow::Owned(inner.replace("\"\"", "\""))
            } else {
                Cow::Borrowed(inner)
            });
            i = j + 1;
            match bytes.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                Some(_) => return Err(QuoteError::Stray),
            }
        } else {
            let end = bytes[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(bytes.len(), |k| i + k);
            let item = &line[i..end];
            if item.contains('"') {
                return Err(QuoteError::Stray);
            }
            out.push(Cow::Borrowed(item));
            if end == bytes.len() {
                return Ok(());
            }
            i = end + 1;
        }
    }
}

/// Splits one line into owned items; `None` if the quoting is broken. Convenience for callers
/// outside the checker's hot path.
pub fn items(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    split_items(line, &mut out).ok()?;
    Some(out.into_iter().map(Cow::into_owned).collect())
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
        let mut out = Vec::new();
        assert_eq!(split_items(r#"a,b"c"#, &mut out), Err(QuoteError::Stray));
        assert_eq!(split_items(r#""a"b,c"#, &mut out), Err(QuoteError::Stray));
        assert_eq!(split_items(r#""a,b",c"#, &mut out), Ok(()));
        assert_eq!(out, vec!["a,b", "c"]);
        assert_eq!(split_items(r#"x,"""#, &mut out), Ok(()));
        assert_eq!(out, vec!["x", ""]);
        assert_eq!(split_items(r#""""""#, &mut out), Ok(()));
        assert_eq!(out, vec!["\""]);
        assert_eq!(split_items("a,", &mut out), Ok(()));
        assert_eq!(out, vec!["a", ""]);
    }
}
