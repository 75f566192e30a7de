//! What a template author sees when a file is wrong.
//!
//! A template is edited by hand, often by someone who is not a programmer, so
//! every problem names the file, the line and column, and the field (as a
//! dotted path such as `stage[0].step[1].needs`), in the `file:line:column:`
//! shape that editors and terminals turn into links. Loading reports every
//! problem it finds, not only the first, so one round of fixes is usually
//! enough.

use std::fmt;
use std::ops::Range;

/// One problem in a template file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Where the template came from: a file path, or `builtin/<file>` for the
    /// templates that ship with Gatehouse.
    pub source: String,
    /// 1-based line of the offending text (0 when the whole file is at fault,
    /// for example when it cannot be read).
    pub line: usize,
    /// 1-based column, counted in characters (0 together with `line` 0).
    pub column: usize,
    /// The field, as a dotted path from the top of the file:
    /// `version`, `stage[0].step[1].needs[0]`, `trigger[0].when`. Empty for
    /// TOML syntax errors and for problems with the file as a whole.
    pub field: String,
    /// What is wrong, in words the author can act on.
    pub message: String,
}

impl TemplateError {
    /// A problem with a whole file (it cannot be read, it clashes with
    /// another file), which has no line to point at.
    pub fn whole_file(source: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            line: 0,
            column: 0,
            field: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.source, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

// Written by hand: `thiserror` would take the field named `source` for the
// error's cause.
impl std::error::Error for TemplateError {}

/// Every problem found in one or more template files, in file and line order.
/// Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateErrors(Vec<TemplateError>);

impl TemplateErrors {
    /// Wraps a list of problems; `None` when there are none.
    pub fn from_vec(mut errors: Vec<TemplateError>) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        errors.sort_by(|a, b| {
            (a.source.as_str(), a.line, a.column).cmp(&(b.source.as_str(), b.line, b.column))
        });
        errors.dedup();
        Some(Self(errors))
    }

    /// The problems, in file and line order.
    pub fn as_slice(&self) -> &[TemplateError] {
        &self.0
    }

    /// The problems, in file and line order.
    pub fn into_vec(self) -> Vec<TemplateError> {
        self.0
    }

    /// An iterator over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, TemplateError> {
        self.0.iter()
    }

    /// How many problems there are (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: there is at least one problem. Present for the
    /// `len_without_is_empty` convention.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<TemplateError> for TemplateErrors {
    fn from(error: TemplateError) -> Self {
        Self(vec![error])
    }
}

impl IntoIterator for TemplateErrors {
    type Item = TemplateError;
    type IntoIter = std::vec::IntoIter<TemplateError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a TemplateErrors {
    type Item = &'a TemplateError;
    type IntoIter = std::slice::Iter<'a, TemplateError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for TemplateErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TemplateErrors {}

/// Turns byte offsets into 1-based line and column numbers.
#[derive(Debug)]
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset of the start of every line.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    /// Line and column (both 1-based, column in characters) of the start of
    /// `span`.
    pub(crate) fn position(&self, span: &Range<usize>) -> (usize, usize) {
        let offset = span.start.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self
            .starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        (line.max(1), column + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let index = LineIndex::new("a = 1\nbé = 2\n");
        assert_eq!(index.position(&(0..1)), (1, 1));
        assert_eq!(index.position(&(4..5)), (1, 5));
        assert_eq!(index.position(&(6..7)), (2, 1));
        // `=` on line 2 follows the two-byte `é`.
        assert_eq!(index.position(&(10..11)), (2, 4));
        assert_eq!(index.position(&(99..99)), (3, 1));
    }

    #[test]
    fn display_is_file_line_column_field_message() {
        let error = TemplateError {
            source: "onboarding.toml".into(),
            line: 12,
            column: 3,
            field: "stage[0].step[1].needs".into(),
            message: "no step `x`".into(),
        };
        assert_eq!(
            error.to_string(),
            "onboarding.toml:12:3: stage[0].step[1].needs: no step `x`"
        );
        let syntax = TemplateError {
            field: String::new(),
            ..error
        };
        assert_eq!(syntax.to_string(), "onboarding.toml:12:3: no step `x`");
    }
}
