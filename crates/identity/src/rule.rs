//! Attribute rules: the SCIM filter language (RFC 7644 §3.4.2.2) over a
//! person's canonical attributes, e.g.
//! `department eq "Sales" and (location eq "Paris" or location eq "Berlin")`.
//!
//! One grammar for SCIM filters and for rules means one parser to fuzz and
//! one language for MSP engineers to learn. Comparisons are on strings,
//! case-insensitive like SCIM's default (`eq`, `ne`, `co`, `sw`, `ew`, and
//! `gt`/`ge`/`lt`/`le`, which order ISO dates correctly); `pr` is "has a
//! value". Besides the canonical attributes a rule may name `kind`
//! (`client_user`, `msp_staff`, `contractor`). Value paths (`emails[…]`)
//! have no meaning here and are refused when the policy is loaded.

use std::cmp::Ordering;

use gatehouse_scim::filter::{AttrPath, CompValue, CompareOp, Filter};

use crate::person::{Person, is_attribute};

/// A parsed, checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    filter: Filter,
}

impl Rule {
    /// Parses and checks a rule; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let filter = Filter::parse(text).map_err(|e| e.to_string())?;
        check(&filter)?;
        Ok(Self { filter })
    }

    /// Whether `person` satisfies the rule.
    pub fn matches(&self, person: &Person) -> bool {
        eval(&self.filter, person)
    }
}

fn name(path: &AttrPath) -> Result<String, String> {
    if path.sub_attr.is_some() || path.uri.is_some() {
        return Err(format!("`{path}`: rules name plain attributes"));
    }
    let name = path.name.to_ascii_lowercase();
    if name == "kind" || is_attribute(&name) {
        Ok(name)
    } else {
        Err(format!(
            "`{}` is not an attribute a rule can test (kind, {})",
            path.name,
            crate::person::ATTRIBUTES.join(", ")
        ))
    }
}

fn check(filter: &Filter) -> Result<(), String> {
    match filter {
        Filter::Compare { path, value, .. } => {
            name(path)?;
            match value {
                CompValue::String(_) | CompValue::Null => Ok(()),
                other => Err(format!("compare `{path}` with a string, not {other}")),
            }
        }
        Filter::Present(path) => name(path).map(|_| ()),
        Filter::And(items) | Filter::Or(items) => items.iter().try_for_each(check),
        Filter::Not(inner) => check(inner),
        Filter::ValuePath { path, .. } => Err(format!(
            "`{path}[…]`: value paths have no meaning in a rule"
        )),
    }
}

fn value<'a>(person: &'a Person, path: &AttrPath) -> Option<&'a str> {
    let name = path.name.to_ascii_lowercase();
    if name == "kind" {
        return Some(person.kind.as_str());
    }
    person
        .attributes
        .get(&name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn eval(filter: &Filter, person: &Person) -> bool {
    match filter {
        Filter::Compare {
            path,
            op,
            value: literal,
        } => {
            let held = value(person, path);
            let CompValue::String(literal) = literal else {
                // `eq null` is "has no value"; `ne null` has one.
                return match op {
                    CompareOp::Eq => held.is_none(),
                    CompareOp::Ne => held.is_some(),
                    _ => false,
                };
            };
            let Some(held) = held else {
                return *op == CompareOp::Ne;
            };
            let held = held.to_lowercase();
            let literal = literal.to_lowercase();
            match op {
                CompareOp::Eq => held == literal,
                CompareOp::Ne => held != literal,
                CompareOp::Co => held.contains(&literal),
                CompareOp::Sw => held.starts_with(&literal),
                CompareOp::Ew => held.ends_with(&literal),
                CompareOp::Gt => held.cmp(&literal) == Ordering::Greater,
                CompareOp::Ge => held.cmp(&literal) != Ordering::Less,
                CompareOp::Lt => held.cmp(&literal) == Ordering::Less,
                CompareOp::Le => held.cmp(&literal) != Ordering::Greater,
            }
        }
        Filter::Present(path) => value(person, path).is_some(),
        Filter::And(items) => items.iter().all(|f| eval(f, person)),
        Filter::Or(items) => items.iter().any(|f| eval(f, person)),
        Filter::Not(inner) => !eval(inner, person),
        Filter::ValuePath { .. } => false,
    }
}
