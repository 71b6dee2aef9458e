//! How `strata consume` prints a record: a format string of `%` fields and `\` escapes
//! (the `--print-*` flags are shorthands for one), or one JSON object per line.
//!
//! Bytes are printed so that no record can be mistaken for another:
//! - in text, a key, value or header value is written as it is where it is valid UTF-8,
//!   and each byte that is not is written as `\xNN` (two lowercase hex digits). A missing
//!   key or value (null) prints nothing, so a key whose text is `null` stays `null`;
//!   `--format json` also tells a missing key from an empty one.
//! - in JSON, a key, value or header value is `null` when missing, a string when it is
//!   valid UTF-8, and otherwise an object `{"base64": "..."}` holding its bytes in
//!   standard base64 with padding (RFC 4648), so every record round-trips exactly.

use std::io::{self, Write};

use serde::Serialize;
use strata_client::ConsumerRecord;

/// What `--format` accepts, for the help text and error messages.
pub const FORMAT_HELP: &str = "%t topic, %p partition, %o offset, %k key, %v value, \
     %T timestamp (ms since the Unix epoch), %h headers (name=value,...), %% a percent sign; \
     \\n newline, \\t tab, \\\\ backslash";

/// One piece of a format string: literal text or a record's field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text printed as it is.
    Literal(String),
    /// `%t`.
    Topic,
    /// `%p`.
    Partition,
    /// `%o`.
    Offset,
    /// `%k`.
    Key,
    /// `%v`.
    Value,
    /// `%T`.
    Timestamp,
    /// `%h`.
    Headers,
}

/// How each record is printed. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// A format string, parsed.
    Template(Vec<Piece>),
    /// One JSON object per line.
    Json,
}

impl Format {
    /// Parses a `--format` value: `json`, or a format string.
    ///
    /// # Errors
    /// An unknown `%` field or `\` escape, named with what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "json" {
            return Ok(Format::Json);
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(char) = chars.next() {
            let field = match char {
                '%' => match chars.next() {
                    Some('%') => {
                        literal.push('%');
                        continue;
                    }
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('v') => Piece::Value,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    other => return Err(unknown("field %", other)),
                },
                '\\' => {
                    match chars.next() {
                        Some('n') => literal.push('\n'),
                        Some('t') => literal.push('\t'),
                        Some('\\') => literal.push('\\'),
                        other => return Err(unknown("escape \\", other)),
                    }
                    continue;
                }
                char => {
                    literal.push(char);
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(field);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Format::Template(pieces))
    }

    /// The format the `--print-*` flags ask for: `[%T\t][%p:%o\t][%k\t]%v\n`.
    pub fn from_print_flags(timestamp: bool, offset: bool, key: bool) -> Self {
        let mut text = String::new();
        if timestamp {
            text.push_str("%T\\t");
        }
        if offset {
            text.push_str("%p:%o\\t");
        }
        if key {
            text.push_str("%k\\t");
        }
        text.push_str("%v\\n");
        Format::parse(&text).expect("a valid format")
    }

    /// Writes one record.
    ///
    /// # Errors
    /// Errors of `out`.
    pub fn write(&self, out: &mut impl Write, record: &ConsumerRecord) -> io::Result<()> {
        let pieces = match self {
            Format::Json => return write_json(out, record),
            Format::Template(pieces) => pieces,
        };
        for piece in pieces {
            match piece {
                Piece::Literal(text) => out.write_all(text.as_bytes())?,
                Piece::Topic => out.write_all(record.topic.as_bytes())?,
                Piece::Partition => write!(out, "{}", record.partition)?,
                Piece::Offset => write!(out, "{}", record.offset)?,
                Piece::Timestamp => write!(out, "{}", record.timestamp)?,
                Piece::Key => write_text(out, record.key.as_deref())?,
                Piece::Value => write_text(out, record.value.as_deref())?,
                Piece::Headers => {
                    for (index, header) in record.headers.iter().enumerate() {
                        if index > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(header.key.as_bytes())?;
                        if let Some(value) = &header.value {
                            out.write_all(b"=")?;
                            write_text(out, Some(value))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn unknown(what: &str, found: Option<char>) -> String {
    match found {
        Some(char) => format!("unknown {what}{char}; use {FORMAT_HELP}, or json"),
        None => format!("the format ends in an unfinished {what}; use {FORMAT_HELP}, or json"),
    }
}

/// Writes `bytes` as text: valid UTF-8 as it is, each other byte as `\xNN`; nothing for
/// `None`.
fn write_text(out: &mut impl Write, bytes: Option<&[u8]>) -> io::Result<()> {
    let Some(bytes) = bytes else { return Ok(()) };
    for chunk in bytes.utf8_chunks() {
        out.write_all(chunk.valid().as_bytes())?;
        for byte in chunk.invalid() {
            write!(out, "\\x{byte:02x}")?;
        }
    }
    Ok(())
}

/// Bytes in JSON: a string if they are UTF-8, else `{"base64": ...}`.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonBytes<'a> {
    Text(&'a str),
    Binary { base64: String },
}

impl<'a> JsonBytes<'a> {
    fn new(bytes: Option<&'a [u8]>) -> Option<Self> {
        bytes.map(|bytes| match std::str::from_utf8(bytes) {
            Ok(text) => JsonBytes::Text(text),
            Err(_) => JsonBytes::Binary {
                base64: base64(bytes),
            },
        })
    }
}

#[derive(Serialize)]
struct JsonHeader<'a> {
    key: &'a str,
    value: Option<JsonBytes<'a>>,
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<JsonBytes<'a>>,
    value: Option<JsonBytes<'a>>,
    headers: Vec<JsonHeader<'a>>,
}

fn write_json(out: &mut impl Write, record: &ConsumerRecord) -> io::Result<()> {
    let json = JsonRecord {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: JsonBytes::new(record.key.as_deref()),
        value: JsonBytes::new(record.value.as_deref()),
        headers: record
            .headers
            .iter()
            .map(|header| JsonHeader {
                key: &header.key,
                value: JsonBytes::new(header.value.as_deref()),
            })
            .collect(),
    };
    serde_json::to_writer(&mut *out, &json)?;
    out.write_all(b"\n")
}

/// Standard base64 (RFC 4648) with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |group, (index, byte)| {
            group | (u32::from(*byte) << (16 - 8 * index))
        });
        for index in 0..4 {
            if index <= chunk.len() {
                let sextet = (group >> (18 - 6 * index)) & 0x3f;
                text.push(char::from(ALPHABET[sextet as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use strata_client::Header;

    use super::*;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("orders"),
            partition: 2,
            offset: 17,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![
                Header::new("trace", "a1"),
                Header {
                    key: "empty".into(),
                    value: None,
                },
            ],
        }
    }

    fn printed(format: &Format, record: &ConsumerRecord) -> String {
        let mut out = Vec::new();
        format.write(&mut out, record).expect("write to a Vec");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn format_strings_print_every_field_and_escape() {
        let format = Format::parse("%t/%p/%o %T [%k] %v {%h} 100%%\\t\\\\\\n").unwrap();
        assert_eq!(
            printed(&format, &record()),
            "orders/2/17 1700000000000 [k] v {trace=a1,empty} 100%\t\\\n"
        );
        assert_eq!(
            printed(&Format::from_print_flags(true, true, true), &record()),
            "1700000000000\t2:17\tk\tv\n"
        );
        assert_eq!(
            printed(&Format::from_print_flags(false, false, false), &record()),
            "v\n"
        );
    }

    #[test]
    fn bad_format_strings_say_what_is_accepted() {
        for (format, expected) in [
            ("%x", "unknown field %x; use %t topic"),
            ("value %", "the format ends in an unfinished field %"),
            ("\\q", "unknown escape \\q"),
            ("\\", "the format ends in an unfinished escape \\"),
        ] {
            let error = Format::parse(format).unwrap_err();
            assert!(error.starts_with(expected), "{format}: {error}");
        }
    }

    #[test]
    fn missing_keys_print_nothing_and_invalid_utf8_is_escaped() {
        let format = Format::parse("[%k]\\t[%v]").unwrap();
        let keyless = ConsumerRecord {
            key: None,
            value: Some(Bytes::from_static(b"null")),
            ..record()
        };
        assert_eq!(printed(&format, &keyless), "[]\t[null]");
        let binary = ConsumerRecord {
            key: Some(Bytes::from_static(b"\xff")),
            value: Some(Bytes::from_static(b"\xc3\xbc\x00\xc3")),
            ..record()
        };
        assert_eq!(printed(&format, &binary), "[\\xff]\t[ü\u{0}\\xc3]");
    }

    #[test]
    fn json_keeps_missing_empty_and_binary_bytes_apart() {
        let record = ConsumerRecord {
            key: None,
            value: Some(Bytes::from_static(b"\x00\xff\xfe")),
            headers: vec![Header::new("h", "")],
            ..record()
        };
        let line = printed(&Format::Json, &record);
        assert!(line.ends_with('\n'));
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "topic": "orders", "partition": 2, "offset": 17, "timestamp": 1_700_000_000_000_i64,
                "key": null, "value": {"base64": "AP/+"},
                "headers": [{"key": "h", "value": ""}],
            })
        );
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (b"\xff\xff\xff", "////"),
        ] {
            assert_eq!(base64(bytes), text);
        }
    }
}
