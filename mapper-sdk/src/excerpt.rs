//! Bounded log output for values that come from outside (payloads, desired values, device
//! replies): [`Excerpt`] shows the start of a text and its full length, so one hostile
//! message cannot turn into a megabyte log line.

use std::fmt;

/// Characters of a value shown in a log line before it is cut.
pub const EXCERPT_CHARS: usize = 80;

/// Displays at most [`EXCERPT_CHARS`] characters of a text; a longer text is cut and
/// followed by its length, e.g. `"aaaa…" (1000192 bytes)`.
#[derive(Debug, Clone, Copy)]
pub struct Excerpt<'a>(pub &'a str);

/// An [`Excerpt`] of `text`, for log fields: `value = %excerpt(&text)`.
pub fn excerpt(text: &str) -> Excerpt<'_> {
    Excerpt(text)
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(EXCERPT_CHARS) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// The text quoted like `{:?}` would, cut as [`Excerpt`] cuts it (for error messages).
pub fn quoted(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_shown_whole_and_long_ones_cut_with_their_length() {
        assert_eq!(excerpt("21.5").to_string(), "21.5");
        let long = "é".repeat(500_000);
        let shown = excerpt(&long).to_string();
        assert!(shown.len() < 200, "{shown}");
        assert!(shown.ends_with("… (1000000 bytes)"), "{shown}");
        assert!(shown.starts_with("éé"));
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        assert!(quoted(&long).ends_with("\"… (1000000 bytes)"));
        let exact = "x".repeat(EXCERPT_CHARS);
        assert_eq!(excerpt(&exact).to_string(), exact);
    }
}
