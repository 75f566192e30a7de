//! The slice of OData query options the emulator understands: `$filter`
//! with `eq` clauses joined by `and`, `$select`, `$top` and paging by
//! `$skiptoken` with an absolute `@odata.nextLink`.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value, json};

use super::model::Fault;

/// Page size when the caller sends no `$top`.
pub(super) const DEFAULT_PAGE: usize = 100;
/// The largest `$top` accepted.
pub(super) const MAX_PAGE: usize = 999;

/// The query options of one list request.
#[derive(Debug, Default)]
pub(super) struct Options {
    /// `(property path, value)` pairs that must all match.
    pub filter: Vec<(String, String)>,
    raw_filter: Option<String>,
    pub select: Option<Vec<String>>,
    raw_select: Option<String>,
    top: Option<usize>,
    skip: usize,
}

impl Options {
    /// Parses the query string's options (with or without the `$`).
    pub fn parse(query: &HashMap<String, String>) -> Result<Self, Fault> {
        let get = |name: &str| {
            query
                .get(&format!("${name}"))
                .or_else(|| query.get(name))
                .cloned()
        };
        let mut options = Self::default();
        if let Some(filter) = get("filter") {
            options.filter = parse_filter(&filter)?;
            options.raw_filter = Some(filter);
        }
        if let Some(select) = get("select") {
            options.select = Some(
                select
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            );
            options.raw_select = Some(select);
        }
        if let Some(top) = get("top") {
            let n: usize = top.trim().parse().map_err(|_| {
                Fault::bad_request(format!("Invalid value '{top}' for query option $top."))
            })?;
            if n == 0 || n > MAX_PAGE {
                return Err(Fault::bad_request(format!(
                    "Invalid page size specified: '{n}'. Must be between 1 and {MAX_PAGE} inclusive."
                )));
            }
            options.top = Some(n);
        }
        if let Some(token) = get("skiptoken") {
            options.skip = token
                .strip_prefix("X")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Fault::bad_request("Invalid skip token."))?;
        }
        Ok(options)
    }

    /// The value an `eq` clause on `path` asks for, if there is one.
    pub fn equals(&self, path: &str) -> Option<&str> {
        self.filter
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(path))
            .map(|(_, want)| want.as_str())
    }

    /// Whether `item` matches every filter clause (strings compare without
    /// regard to case, as Graph's `eq` on names does).
    pub fn matches(&self, item: &Value) -> bool {
        self.filter.iter().all(|(path, want)| {
            let mut at = item;
            for part in path.split('/') {
                match at.get(part) {
                    Some(v) => at = v,
                    None => return false,
                }
            }
            match at {
                Value::String(s) => s.eq_ignore_ascii_case(want),
                Value::Bool(b) => b.to_string() == *want,
                _ => false,
            }
        })
    }

    /// Checks every filtered property is known on `sample` (any item of
    /// the collection's type), as Graph refuses unknown ones.
    pub fn check_filter(&self, sample: &Value, type_name: &str) -> Result<(), Fault> {
        for (path, _) in &self.filter {
            let mut at = sample;
            for part in path.split('/') {
                at = at
                    .get(part)
                    .ok_or_else(|| unknown_property(part, type_name))?;
            }
        }
        Ok(())
    }

    /// One page of `items` as Graph answers a list: `@odata.context`,
    /// `value` (with `$select`, or `default_fields` if given and none was
    /// selected) and, when more remain, an absolute `@odata.nextLink` on the
    /// host the caller used.
    pub fn page(
        &self,
        items: Vec<Value>,
        default_fields: Option<&[&str]>,
        type_name: &str,
        headers: &HeaderMap,
        path: &str,
        context: &str,
    ) -> Result<Value, Fault> {
        let top = self.top.unwrap_or(DEFAULT_PAGE);
        let total = items.len();
        let mut value = Vec::new();
        for item in items.into_iter().skip(self.skip).take(top) {
            value.push(self.project(item, default_fields, type_name)?);
        }
        let mut page = json!({
            "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#{context}"),
            "value": value,
        });
        let next = self.skip + top;
        if next < total {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("graph.microsoft.com");
            let mut params = Vec::new();
            if let Some(f) = &self.raw_filter {
                params.push(format!("$filter={}", encode(f)));
            }
            if let Some(s) = &self.raw_select {
                params.push(format!("$select={}", encode(s)));
            }
            if let Some(t) = self.top {
                params.push(format!("$top={t}"));
            }
            params.push(format!("$skiptoken=X{next}"));
            page["@odata.nextLink"] = json!(format!("http://{host}{path}?{}", params.join("&")));
        }
        Ok(page)
    }

    /// `item` reduced to the selected (or default) properties.
    pub fn project(
        &self,
        item: Value,
        default_fields: Option<&[&str]>,
        type_name: &str,
    ) -> Result<Value, Fault> {
        let fields: Vec<String> = match (&self.select, default_fields) {
            (Some(s), _) => s.clone(),
            (None, Some(d)) => d.iter().map(|s| (*s).to_owned()).collect(),
            (None, None) => return Ok(item),
        };
        let mut out = Map::new();
        if let Some(t) = item.get("@odata.type") {
            out.insert("@odata.type".to_owned(), t.clone());
        }
        for field in fields {
            let v = item
                .get(&field)
                .ok_or_else(|| unknown_property(&field, type_name))?;
            out.insert(field, v.clone());
        }
        Ok(Value::Object(out))
    }
}

fn unknown_property(name: &str, type_name: &str) -> Fault {
    Fault::new(
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
        format!("Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."),
    )
}

/// `a eq 'x' and b/c eq 'y'` → `[(a, x), (b/c, y)]`; `''` inside a value
/// is one quote.
fn parse_filter(filter: &str) -> Result<Vec<(String, String)>, Fault> {
    let unsupported = || {
        Fault::new(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            format!("Unsupported or invalid query filter clause specified: '{filter}'."),
        )
    };
    let mut clauses = Vec::new();
    let mut rest = filter.trim();
    loop {
        let (path, after) = rest.split_once(" eq ").ok_or_else(unsupported)?;
        let path = path.trim();
        if path.is_empty()
            || !path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_')
        {
            return Err(unsupported());
        }
        let after = after.trim_start();
        let body = after.strip_prefix('\'').ok_or_else(unsupported)?;
        let mut value = String::new();
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if matches!(chars.peek(), Some((_, '\''))) {
                    chars.next();
                    value.push('\'');
                } else {
                    end = Some(i + 1);
                    break;
                }
            } else {
                value.push(c);
            }
        }
        let end = end.ok_or_else(unsupported)?;
        clauses.push((path.to_owned(), value));
        let tail = body[end..].trim();
        if tail.is_empty() {
            return Ok(clauses);
        }
        rest = tail.strip_prefix("and ").ok_or_else(unsupported)?;
    }
}

/// Percent-encodes a query value.
pub(super) fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b',') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `application/x-www-form-urlencoded` pairs.
pub(super) fn decode_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_with_quotes_and_paths() {
        let f = parse_filter("customer/tenantId eq 'abc' and displayName eq 'O''Brien'").unwrap();
        assert_eq!(
            f,
            [
                ("customer/tenantId".to_owned(), "abc".to_owned()),
                ("displayName".to_owned(), "O'Brien".to_owned())
            ]
        );
        assert!(parse_filter("startswith(displayName,'a')").is_err());
        assert!(parse_filter("a eq 'x' or b eq 'y'").is_err());
        assert!(parse_filter("a eq 'unterminated").is_err());
    }

    #[test]
    fn forms_decode() {
        let f =
            decode_form(b"scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&a=b+c&bad=%zz&end=%4");
        assert_eq!(f["scope"], "https://graph.microsoft.com/.default");
        assert_eq!(f["a"], "b c");
        assert_eq!(f["bad"], "%zz");
        assert_eq!(f["end"], "%4");
    }
}
