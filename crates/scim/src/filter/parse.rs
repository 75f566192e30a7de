//! A recursive-descent parser for the RFC 7644 §3.4.2.2 grammar:
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! logExp    = FILTER SP ("and" / "or") SP FILTER
//! attrPath  = [URI ":"] ATTRNAME *1subAttr
//! ```
//!
//! Precedence is `not` > `and` > `or`; keywords, operators and the
//! literals `true`, `false` and `null` are case-insensitive (ABNF strings
//! are). Whitespace between tokens may be any run of ASCII whitespace.
//! Recursion happens only at `(`, `[` and `not`, and is capped at
//! [`MAX_DEPTH`]; the input is capped at [`MAX_FILTER_LEN`] bytes.

use super::{AttrPath, CompValue, CompareOp, Filter, PatchPath};

/// The longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 8 * 1024;

/// The deepest nesting of parentheses, `not` and value paths accepted.
pub const MAX_DEPTH: usize = 32;

/// Why a filter or path did not parse, and where (a byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct FilterError {
    /// The byte offset in the input where the problem was found.
    pub position: usize,
    /// What was expected or wrong.
    pub message: String,
}

pub(crate) fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input)?;
    let f = p.filter(false)?;
    p.expect_end()?;
    Ok(f)
}

pub(crate) fn parse_attr_path(input: &str) -> Result<AttrPath, FilterError> {
    let mut p = Parser::new(input)?;
    p.skip_ws();
    let path = p.attr_path()?;
    p.expect_end()?;
    Ok(path)
}

pub(crate) fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    let mut p = Parser::new(input)?;
    p.skip_ws();
    let attr = p.attr_path()?;
    let mut filter = None;
    let mut sub_attr = None;
    if p.peek() == Some(b'[') {
        if attr.sub_attr.is_some() {
            return Err(p.err("a value filter cannot follow a sub-attribute"));
        }
        p.pos += 1;
        p.depth += 1;
        filter = Some(p.filter(true)?);
        p.skip_ws();
        p.expect(b']')?;
        if p.peek() == Some(b'.') {
            p.pos += 1;
            let start = p.pos;
            let word = p.word();
            if !is_attr_name(word) {
                return Err(p.err_at(start, "expected a sub-attribute name"));
            }
            sub_attr = Some(word.to_owned());
        }
    }
    p.expect_end()?;
    Ok(PatchPath {
        attr,
        filter,
        sub_attr,
    })
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, FilterError> {
        if src.len() > MAX_FILTER_LEN {
            return Err(FilterError {
                position: MAX_FILTER_LEN,
                message: format!("the filter is longer than {MAX_FILTER_LEN} bytes"),
            });
        }
        Ok(Self {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            depth: 0,
        })
    }

    fn err(&self, message: impl Into<String>) -> FilterError {
        self.err_at(self.pos, message)
    }

    fn err_at(&self, position: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            position,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn expect(&mut self, b: u8) -> Result<(), FilterError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected '{}'", b as char)))
        }
    }

    fn expect_end(&mut self) -> Result<(), FilterError> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.err("unexpected text")),
        }
    }

    /// A run of name characters (letters, digits, `-`, `_`, `:`, `.`, `$`).
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_word_byte) {
            self.pos += 1;
        }
        self.src.get(start..self.pos).unwrap_or_default()
    }

    /// The next word, without consuming it.
    fn peek_word(&self) -> &'a str {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|b| !is_word_byte(*b))
            .map_or(self.bytes.len(), |n| self.pos + n);
        self.src.get(self.pos..end).unwrap_or_default()
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("the filter nests deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// `or` has the lowest precedence.
    fn filter(&mut self, in_value_path: bool) -> Result<Filter, FilterError> {
        let mut items = vec![self.and(in_value_path)?];
        while self.keyword_follows("or") {
            items.push(self.and(in_value_path)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::Or(items)
        })
    }

    fn and(&mut self, in_value_path: bool) -> Result<Filter, FilterError> {
        let mut items = vec![self.unary(in_value_path)?];
        while self.keyword_follows("and") {
            items.push(self.unary(in_value_path)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::And(items)
        })
    }

    /// Consumes whitespace, `keyword` and whitespace if they come next.
    fn keyword_follows(&mut self, keyword: &str) -> bool {
        let save = self.pos;
        let had_ws = self.skip_ws();
        let at_group_end = save > 0 && matches!(self.bytes.get(save - 1), Some(b')' | b']' | b'"'));
        if (had_ws || at_group_end) && self.peek_word().eq_ignore_ascii_case(keyword) {
            self.pos += keyword.len();
            if self.skip_ws() || matches!(self.peek(), Some(b'(') | None) {
                return true;
            }
        }
        self.pos = save;
        false
    }

    fn unary(&mut self, in_value_path: bool) -> Result<Filter, FilterError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.err("expected an expression")),
            Some(b'(') => {
                self.enter()?;
                self.pos += 1;
                let inner = self.filter(in_value_path)?;
                self.skip_ws();
                self.expect(b')')?;
                self.depth -= 1;
                Ok(inner)
            }
            Some(_) => {
                let word = self.peek_word();
                if word.eq_ignore_ascii_case("not") {
                    let save = self.pos;
                    self.pos += word.len();
                    self.skip_ws();
                    if self.peek() == Some(b'(') {
                        self.enter()?;
                        self.pos += 1;
                        let inner = self.filter(in_value_path)?;
                        self.skip_ws();
                        self.expect(b')')?;
                        self.depth -= 1;
                        return Ok(Filter::Not(Box::new(inner)));
                    }
                    self.pos = save;
                }
                self.attr_exp(in_value_path)
            }
        }
    }

    fn attr_exp(&mut self, in_value_path: bool) -> Result<Filter, FilterError> {
        let path_start = self.pos;
        let path = self.attr_path()?;
        if self.peek() == Some(b'[') {
            if in_value_path {
                return Err(self.err("a value filter cannot be nested in another"));
            }
            if path.sub_attr.is_some() {
                return Err(self.err_at(
                    path_start,
                    "a value filter applies to an attribute, not a sub-attribute",
                ));
            }
            self.enter()?;
            self.pos += 1;
            let inner = self.filter(true)?;
            self.skip_ws();
            self.expect(b']')?;
            self.depth -= 1;
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(inner),
            });
        }
        if !self.skip_ws() {
            return Err(self.err("expected an operator after the attribute"));
        }
        let op_start = self.pos;
        let op = self.word();
        if op.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::from_name(op) else {
            return Err(self.err_at(
                op_start,
                "expected an operator (eq ne co sw ew gt ge lt le pr)",
            ));
        };
        // RFC 7644's own examples write `value eq\"…\"`: allow a string
        // to follow the operator without a space.
        if !self.skip_ws() && self.peek() != Some(b'"') {
            return Err(self.err("expected a value after the operator"));
        }
        let value = self.comp_value()?;
        Ok(Filter::Compare { path, op, value })
    }

    fn comp_value(&mut self) -> Result<CompValue, FilterError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                loop {
                    match self.peek() {
                        None => return Err(self.err_at(start, "unterminated string")),
                        Some(b'\\') => self.pos += 2,
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => self.pos += 1,
                    }
                }
                let raw = self.src.get(start..self.pos).unwrap_or_default();
                serde_json::from_str::<String>(raw)
                    .map(CompValue::String)
                    .map_err(|e| self.err_at(start, format!("invalid string: {e}")))
            }
            Some(b'-' | b'0'..=b'9') => {
                while self.peek().is_some_and(|b| {
                    b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
                }) {
                    self.pos += 1;
                }
                let raw = self.src.get(start..self.pos).unwrap_or_default();
                parse_number(raw)
                    .map(CompValue::Number)
                    .ok_or_else(|| self.err_at(start, "invalid number"))
            }
            _ => {
                let word = self.word();
                if word.eq_ignore_ascii_case("true") {
                    Ok(CompValue::Bool(true))
                } else if word.eq_ignore_ascii_case("false") {
                    Ok(CompValue::Bool(false))
                } else if word.eq_ignore_ascii_case("null") {
                    Ok(CompValue::Null)
                } else {
                    Err(self.err_at(
                        start,
                        "expected a value: a string, number, true, false or null",
                    ))
                }
            }
        }
    }

    fn attr_path(&mut self) -> Result<AttrPath, FilterError> {
        let start = self.pos;
        let word = self.word();
        if word.is_empty() {
            return Err(self.err("expected an attribute name"));
        }
        let (uri, rest) = match word.rfind(':') {
            Some(i) => (Some(&word[..i]), &word[i + 1..]),
            None => (None, word),
        };
        if let Some(uri) = uri
            && !is_uri(uri)
        {
            return Err(self.err_at(start, "invalid schema URI before the attribute name"));
        }
        let (name, sub) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        if !is_attr_name(name) {
            return Err(self.err_at(start, "invalid attribute name"));
        }
        if let Some(sub) = sub
            && !is_attr_name(sub)
        {
            return Err(self.err_at(start, "invalid sub-attribute name"));
        }
        Ok(AttrPath {
            uri: uri.map(str::to_owned),
            name: name.to_owned(),
            sub_attr: sub.map(str::to_owned),
        })
    }
}

/// A JSON number. serde_json checks the syntax; a non-integer is then
/// parsed by the standard library, which rounds correctly, so that a
/// printed number always parses back to the same value.
fn parse_number(raw: &str) -> Option<serde_json::Number> {
    let n = raw.parse::<serde_json::Number>().ok()?;
    if n.is_f64() {
        serde_json::Number::from_f64(raw.parse::<f64>().ok()?)
    } else {
        Some(n)
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.' | b'$')
}

/// `ATTRNAME = ALPHA *(nameChar)`, plus `$ref` (RFC 7643 uses it).
pub(crate) fn is_attr_name(s: &str) -> bool {
    if s.eq_ignore_ascii_case("$ref") {
        return true;
    }
    let mut chars = s.bytes();
    chars.next().is_some_and(|b| b.is_ascii_alphabetic())
        && chars.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A URN such as `urn:ietf:params:scim:schemas:core:2.0:User`.
fn is_uri(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.split(':').all(|seg| !seg.is_empty())
        && s.contains(':')
}
