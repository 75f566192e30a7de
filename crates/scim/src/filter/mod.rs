//! The SCIM filter language (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2).
//!
//! A filter is parsed once, at the boundary, into the [`Filter`] AST; its
//! `Display` prints the canonical text, which parses back to the same AST
//! (the property test checks this). Parsing is bounded by
//! [`MAX_FILTER_LEN`] and [`MAX_DEPTH`] and never panics; errors carry the
//! byte position and map to `400 invalidFilter` (or `invalidPath` for a
//! PATCH path). Evaluation against a resource is in [`eval`].

pub mod eval;
mod parse;

use std::fmt;

pub use parse::{FilterError, MAX_DEPTH, MAX_FILTER_LEN};

use crate::error::ScimError;

/// An attribute path: `[URI ":"] ATTRNAME ["." subAttr]`.
///
/// Names keep the case the client wrote; every comparison of names is
/// case-insensitive (RFC 7643 §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URI prefix, e.g. `urn:ietf:params:scim:schemas:core:2.0:User`.
    pub uri: Option<String>,
    /// The attribute name.
    pub name: String,
    /// The sub-attribute name, for complex attributes.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A path to a top-level attribute without a schema prefix.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            uri: None,
            name: name.into(),
            sub_attr: None,
        }
    }

    /// The same path with a sub-attribute.
    pub fn with_sub(mut self, sub: impl Into<String>) -> Self {
        self.sub_attr = Some(sub.into());
        self
    }

    /// Parses a bare attribute path (as in `sortBy`, `attributes`).
    pub fn parse(input: &str) -> Result<Self, FilterError> {
        parse::parse_attr_path(input)
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uri) = &self.uri {
            write!(f, "{uri}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// A comparison operator (`pr` is [`Filter::Present`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `eq`: equal.
    Eq,
    /// `ne`: not equal.
    Ne,
    /// `co`: contains.
    Co,
    /// `sw`: starts with.
    Sw,
    /// `ew`: ends with.
    Ew,
    /// `gt`: greater than.
    Gt,
    /// `ge`: greater than or equal.
    Ge,
    /// `lt`: less than.
    Lt,
    /// `le`: less than or equal.
    Le,
}

impl CompareOp {
    /// The operator as written in a filter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Co => "co",
            Self::Sw => "sw",
            Self::Ew => "ew",
            Self::Gt => "gt",
            Self::Ge => "ge",
            Self::Lt => "lt",
            Self::Le => "le",
        }
    }

    /// Parses an operator, case-insensitively.
    pub fn from_name(s: &str) -> Option<Self> {
        const ALL: [CompareOp; 9] = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ];
        ALL.into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s))
    }
}

/// A comparison value. SCIM has no dateTime literal: a dateTime is a
/// string compared chronologically when the attribute's type is dateTime.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A JSON number.
    Number(serde_json::Number),
    /// A JSON string (escapes resolved).
    String(String),
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
        }
    }
}

/// A parsed filter.
///
/// `And` and `Or` hold two or more operands; a chain `a and b and c` is
/// one `And` of three, and parentheses the client wrote survive as nesting.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath compareOp compValue`.
    Compare {
        /// The attribute.
        path: AttrPath,
        /// The operator.
        op: CompareOp,
        /// The literal.
        value: CompValue,
    },
    /// `attrPath pr`.
    Present(AttrPath),
    /// Operands joined by `and`.
    And(Vec<Filter>),
    /// Operands joined by `or`.
    Or(Vec<Filter>),
    /// `not ( filter )`.
    Not(Box<Filter>),
    /// `attrPath [ valFilter ]`: some value of a multi-valued complex
    /// attribute matches the inner filter, whose paths name sub-attributes.
    ValuePath {
        /// The multi-valued (or complex) attribute.
        path: AttrPath,
        /// The filter over its sub-attributes.
        filter: Box<Filter>,
    },
}

impl Filter {
    /// Parses a filter (RFC 7644 §3.4.2.2).
    pub fn parse(input: &str) -> Result<Self, FilterError> {
        parse::parse_filter(input)
    }

    fn fmt_operand(&self, f: &mut fmt::Formatter<'_>, parent_is_and: bool) -> fmt::Result {
        let needs_parens = match self {
            Filter::Or(_) => true,
            Filter::And(_) => parent_is_and,
            _ => false,
        };
        if needs_parens {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {} {value}", op.as_str()),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::And(items) | Filter::Or(items) => {
                let is_and = matches!(self, Filter::And(_));
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(if is_and { " and " } else { " or " })?;
                    }
                    item.fmt_operand(f, is_and)?;
                }
                Ok(())
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A PATCH operation's path (RFC 7644 §3.5.2):
/// `attrPath` or `valuePath [subAttr]`, e.g. `emails[type eq "work"].value`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute (with a sub-attribute when there is no filter).
    pub attr: AttrPath,
    /// The value selection filter, if any.
    pub filter: Option<Filter>,
    /// The sub-attribute after the filter, if any.
    pub sub_attr: Option<String>,
}

impl PatchPath {
    /// Parses a PATCH path. Errors map to `invalidPath`.
    pub fn parse(input: &str) -> Result<Self, FilterError> {
        parse::parse_patch_path(input)
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl From<FilterError> for ScimError {
    fn from(e: FilterError) -> Self {
        ScimError::invalid_filter(e.to_string())
    }
}
