//! A client string as an error message shows it: at most [`SHOWN_BYTES_MAX`] bytes.
//!
//! A name in a request may be up to [`STRING_BYTES_MAX`](crate::wire::STRING_BYTES_MAX)
//! bytes, and one request may name it once per partition entry. An error that quoted it
//! whole for each entry would cost the broker that name's length again per entry (a
//! 16 MiB produce can name a 65 KB topic two million times), so every message that
//! quotes a client string quotes it through [`shown`].

use std::fmt;

/// Bytes of a client string a message shows; a longer one is cut and ends in `…`.
pub const SHOWN_BYTES_MAX: usize = 64;

/// A client string cut to its longest prefix of at most [`SHOWN_BYTES_MAX`] bytes that
/// ends on a character boundary, followed by `…` when something was cut. Borrows the
/// string; formatting allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(&'a str);

/// `text` as an error message may quote it; see [`Shown`].
pub fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.len() <= SHOWN_BYTES_MAX {
            return formatter.write_str(text);
        }
        let mut end = SHOWN_BYTES_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        formatter.write_str(text.get(..end).unwrap_or_default())?;
        formatter.write_str("…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_string_is_shown_whole() {
        assert_eq!(shown("").to_string(), "");
        assert_eq!(shown("orders").to_string(), "orders");
        let longest = "t".repeat(SHOWN_BYTES_MAX);
        assert_eq!(shown(&longest).to_string(), longest);
    }

    #[test]
    fn a_long_string_is_cut_and_marked() {
        let long = "t".repeat(65_534);
        let text = shown(&long).to_string();
        assert_eq!(text, format!("{}…", "t".repeat(SHOWN_BYTES_MAX)));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // 'é' is two bytes: byte 64 falls inside the 33rd one, which is dropped whole.
        let accented = "é".repeat(40);
        let text = shown(&accented).to_string();
        assert_eq!(text, format!("{}…", "é".repeat(32)));
        // '€' is three bytes: after the 'a', 21 of them end at byte 64 and a 22nd at 67.
        let euros = format!("a{}", "€".repeat(30));
        let text = shown(&euros).to_string();
        assert_eq!(text, format!("a{}…", "€".repeat(21)));
        for length in 0..200 {
            let mixed: String = "aé€😀".chars().cycle().take(length).collect();
            let text = shown(&mixed).to_string();
            let kept = text.strip_suffix('…').unwrap_or(&text);
            assert!(kept.len() <= SHOWN_BYTES_MAX, "{length}");
            assert!(mixed.starts_with(kept), "{length}");
            assert!(
                SHOWN_BYTES_MAX - kept.len() < 4 || kept == mixed,
                "{length}"
            );
        }
    }
}
