//! The OSCAL datatypes that free text must be fitted into.
//!
//! Titles (`markup-line`) are one line; property values and names
//! (`string`) have no leading or trailing white space and are not empty;
//! date-times carry a zone and a year from 1900 to 2999. Text from people
//! (reasons, evidence) keeps its lines in descriptions, which take any
//! string; only what goes into a title or a property is folded to one line.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::ExportError;

/// Folds `text` onto one line: every control character (line breaks, tabs)
/// and the line and paragraph separators become a space, and the ends are
/// trimmed of white space. Empty text gives `fallback`.
///
/// The schema's patterns are ECMA-262 regular expressions, whose `.` does
/// not match U+2028 and U+2029 and whose `\s` also matches U+FEFF; Rust's
/// `trim` keeps U+FEFF, so it is trimmed here too.
pub(crate) fn line(text: &str, fallback: &str) -> String {
    let folded: String = text
        .chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let trimmed = folded.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if trimmed.is_empty() {
        fallback.to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// `text` as an OSCAL `string` (one line, trimmed), or `None` if nothing is
/// left.
pub(crate) fn value(text: &str) -> Option<String> {
    let folded = line(text, "");
    (!folded.is_empty()).then_some(folded)
}

/// An instant as an OSCAL date-time: RFC 3339 in UTC (`…Z`).
pub(crate) fn datetime(at: OffsetDateTime, what: &'static str) -> Result<String, ExportError> {
    let out_of_range = || ExportError::TimeOutOfRange { what, at };
    let utc = at
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(out_of_range)?;
    if !(1900..=2999).contains(&utc.year()) {
        return Err(out_of_range());
    }
    utc.format(&Rfc3339).map_err(|_| out_of_range())
}

/// Whether `text` is a plausible URI reference (RFC 3986): not empty, only
/// the characters a URI may hold, `%` only as `%HH`, and at most one `#`.
pub(crate) fn is_uri_reference(text: &str) -> bool {
    if text.is_empty() || text.matches('#').count() > 1 {
        return false;
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b);
        if !allowed {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn lines_are_folded_and_trimmed() {
        assert_eq!(line("  a\nb\r\n\tc  ", "x"), "a b   c");
        assert_eq!(line(" \n ", "x"), "x");
        assert_eq!(value("\u{85}"), None);
        assert_eq!(value(" é \u{2028}"), Some("é".to_owned()));
        assert_eq!(value("\u{feff}a\u{2029}b\u{feff}"), Some("a b".to_owned()));
        assert_eq!(value("\u{feff}"), None);
    }

    #[test]
    fn datetimes_are_utc_with_a_zone_and_in_range() {
        let at = datetime!(2026-03-01 12:30:00.25 +05:30);
        assert_eq!(
            datetime(at, "t").as_deref().ok(),
            Some("2026-03-01T07:00:00.25Z")
        );
        assert!(datetime(datetime!(1899-12-31 23:59 UTC), "t").is_err());
        assert!(datetime(datetime!(3000-01-01 00:00 UTC), "t").is_err());
    }

    #[test]
    fn uri_references_are_checked() {
        for good in ["#abc", "/api/v1/x?y=1", "https://h.example/a%20b", "a/b#c"] {
            assert!(is_uri_reference(good), "{good}");
        }
        for bad in ["", "a b", "a#b#c", "%zz", "é", "a\nb", "<x>"] {
            assert!(!is_uri_reference(bad), "{bad}");
        }
    }
}
