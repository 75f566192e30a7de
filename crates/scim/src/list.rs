//! Listing and searching (RFC 7644 §3.4.2, §3.4.3): the query parameters
//! and the `SearchRequest` body parsed into one [`ListQuery`], sorting
//! (`sortBy`, `sortOrder`), paging (`startIndex` is 1-based, `count`) and
//! the `ListResponse` body.
//!
//! [`list_resources`] does all of it in memory; a store that filters and
//! sorts in SQL uses [`Page`] and [`ListResponse`] only.

use std::cmp::Ordering;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ScimError;
use crate::filter::eval::matches;
use crate::filter::{AttrPath, Filter};
use crate::project::Projection;
use crate::schema::{AttributeType, ResourceType, get_ci};

/// The schema URI of a list response.
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The schema URI of a `POST /.search` body.
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// The default and largest page size.
pub const MAX_RESULTS: usize = 200;

/// A list response.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResponse {
    /// How many resources matched, over all pages.
    pub total_results: usize,
    /// The 1-based index of the first resource of this page.
    pub start_index: usize,
    /// The resources of this page.
    pub resources: Vec<Value>,
}

impl ListResponse {
    /// A single page holding everything (for the discovery endpoints).
    pub fn complete(resources: Vec<Value>) -> Self {
        Self {
            total_results: resources.len(),
            start_index: 1,
            resources,
        }
    }

    /// The `ListResponse` body.
    pub fn to_json(&self) -> Value {
        json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": self.total_results,
            "startIndex": self.start_index,
            "itemsPerPage": self.resources.len(),
            "Resources": self.resources,
        })
    }
}

/// The order of a sorted list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Smallest first; resources without a value last.
    #[default]
    Ascending,
    /// Largest first; resources without a value first.
    Descending,
}

impl SortOrder {
    /// Parses `ascending` or `descending`, case-insensitively.
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        if s.eq_ignore_ascii_case("ascending") {
            Ok(Self::Ascending)
        } else if s.eq_ignore_ascii_case("descending") {
            Ok(Self::Descending)
        } else {
            Err(ScimError::invalid_value(format!(
                "sortOrder must be \"ascending\" or \"descending\", not \"{s}\""
            )))
        }
    }
}

/// A page request, normalised per RFC 7644 §3.4.2.4: a `startIndex` below
/// 1 is 1; a negative `count` is 0; no `count` (or one above the maximum)
/// is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The 1-based index of the first resource.
    pub start_index: usize,
    /// The most resources to return.
    pub count: usize,
}

impl Page {
    /// Normalises raw parameters.
    pub fn new(start_index: Option<i64>, count: Option<i64>, max_results: usize) -> Self {
        let start_index =
            start_index.map_or(1, |s| usize::try_from(s.max(1)).unwrap_or(usize::MAX));
        let count = count.map_or(max_results, |c| {
            usize::try_from(c.max(0))
                .unwrap_or(usize::MAX)
                .min(max_results)
        });
        Self { start_index, count }
    }

    /// How many resources to skip.
    pub fn offset(&self) -> usize {
        self.start_index.saturating_sub(1)
    }

    /// Cuts one page out of all the matching resources.
    pub fn apply(&self, all: Vec<Value>) -> ListResponse {
        let total_results = all.len();
        let resources = all
            .into_iter()
            .skip(self.offset())
            .take(self.count)
            .collect();
        ListResponse {
            total_results,
            start_index: self.start_index,
            resources,
        }
    }
}

/// A list or search request, from query parameters or a `SearchRequest`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    /// `filter`.
    pub filter: Option<Filter>,
    /// `sortBy`.
    pub sort_by: Option<AttrPath>,
    /// `sortOrder`.
    pub sort_order: SortOrder,
    /// `startIndex`, raw.
    pub start_index: Option<i64>,
    /// `count`, raw.
    pub count: Option<i64>,
    /// `attributes` and `excludedAttributes`.
    pub projection: Projection,
}

impl ListQuery {
    /// Parses URL query parameters (already percent-decoded). Parameter
    /// names are case-insensitive; unknown parameters are ignored.
    pub fn from_query_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ScimError> {
        let mut q = Self::default();
        let (mut attributes, mut excluded) = (None, None);
        for (key, value) in pairs {
            match key.to_ascii_lowercase().as_str() {
                "filter" => q.filter = Some(Filter::parse(value)?),
                "sortby" => q.sort_by = Some(parse_sort_by(value)?),
                "sortorder" => q.sort_order = SortOrder::parse(value)?,
                "startindex" => q.start_index = Some(parse_int("startIndex", value)?),
                "count" => q.count = Some(parse_int("count", value)?),
                "attributes" => attributes = Some(value),
                "excludedattributes" => excluded = Some(value),
                _ => {}
            }
        }
        q.projection = Projection::parse(attributes, excluded)?;
        Ok(q)
    }

    /// Parses a `POST /.search` body (RFC 7644 §3.4.3).
    pub fn from_search_request(body: &Value) -> Result<Self, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a SearchRequest must be a JSON object"))?;
        let has_schema = get_ci(obj, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter().any(|v| {
                    v.as_str()
                        .is_some_and(|v| v.eq_ignore_ascii_case(SEARCH_REQUEST_SCHEMA))
                })
            });
        if !has_schema {
            return Err(ScimError::invalid_syntax(format!(
                "\"schemas\" must contain \"{SEARCH_REQUEST_SCHEMA}\""
            )));
        }
        let text = |name: &str| -> Result<Option<&str>, ScimError> {
            match get_ci(obj, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(ScimError::invalid_syntax(format!(
                    "\"{name}\" must be a string"
                ))),
            }
        };
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            match get_ci(obj, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
                    ScimError::invalid_value(format!("\"{name}\" must be an integer"))
                }),
                Some(Value::String(s)) => parse_int(name, s).map(Some),
                Some(_) => Err(ScimError::invalid_syntax(format!(
                    "\"{name}\" must be an integer"
                ))),
            }
        };
        let list = |name: &str| -> Result<Vec<AttrPath>, ScimError> {
            match get_ci(obj, name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(s)) => Projection::parse_list(s),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| match i.as_str() {
                        Some(s) => Projection::parse_list(s),
                        None => Err(ScimError::invalid_syntax(format!(
                            "\"{name}\" must list strings"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| v.into_iter().flatten().collect()),
                Some(_) => Err(ScimError::invalid_syntax(format!(
                    "\"{name}\" must be an array of strings"
                ))),
            }
        };
        Ok(Self {
            filter: text("filter")?.map(Filter::parse).transpose()?,
            sort_by: text("sortBy")?.map(parse_sort_by).transpose()?,
            sort_order: text("sortOrder")?
                .map(SortOrder::parse)
                .transpose()?
                .unwrap_or_default(),
            start_index: int("startIndex")?,
            count: int("count")?,
            projection: Projection::new(list("attributes")?, list("excludedAttributes")?),
        })
    }

    /// The normalised page.
    pub fn page(&self, max_results: usize) -> Page {
        Page::new(self.start_index, self.count, max_results)
    }
}

fn parse_int(name: &str, value: &str) -> Result<i64, ScimError> {
    value.trim().parse().map_err(|_| {
        ScimError::invalid_value(format!("{name} must be an integer, not \"{value}\""))
    })
}

fn parse_sort_by(value: &str) -> Result<AttrPath, ScimError> {
    AttrPath::parse(value.trim())
        .map_err(|e| ScimError::invalid_value(format!("invalid sortBy: {e}")))
}

/// Filters, sorts, pages and projects resources held in memory.
pub fn list_resources(
    rt: &ResourceType,
    resources: impl IntoIterator<Item = Value>,
    query: &ListQuery,
    max_results: usize,
) -> Result<ListResponse, ScimError> {
    let mut selected = Vec::new();
    for r in resources {
        let keep = match &query.filter {
            Some(f) => matches(f, rt, &r)?,
            None => true,
        };
        if keep {
            selected.push(r);
        }
    }
    if let Some(by) = &query.sort_by {
        sort_resources(rt, &mut selected, by, query.sort_order);
    }
    let mut page = query.page(max_results).apply(selected);
    for r in &mut page.resources {
        *r = query.projection.apply(rt, r);
    }
    Ok(page)
}

#[derive(Debug, PartialEq, PartialOrd)]
enum SortKey {
    Bool(bool),
    Number(f64),
    Time(OffsetDateTime),
    Text(String),
}

fn sort_key(rt: &ResourceType, resource: &Value, by: &AttrPath) -> Option<SortKey> {
    let obj = resource.as_object()?;
    let resolved = rt.resolve(&AttrPath {
        sub_attr: None,
        ..by.clone()
    });
    let (container, name) = match resolved {
        Some(r) => match r.extension {
            Some(ext) => (get_ci(obj, ext)?.as_object()?, r.attr.name.as_str()),
            None => (obj, r.attr.name.as_str()),
        },
        None => (obj, by.name.as_str()),
    };
    let mut value = get_ci(container, name)?;
    if let Value::Array(items) = value {
        value = items
            .iter()
            .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| items.first())?;
    }
    if let Value::Object(o) = value {
        value = get_ci(o, by.sub_attr.as_deref().unwrap_or("value"))?;
    }
    let leaf = resolved.and_then(|r| match &by.sub_attr {
        Some(s) => r.attr.sub(s),
        None if r.attr.is_multi_complex() => r.attr.sub("value"),
        None => Some(r.attr),
    });
    match value {
        Value::Bool(b) => Some(SortKey::Bool(*b)),
        Value::Number(n) => n.as_f64().map(SortKey::Number),
        Value::String(s) => {
            if leaf.is_some_and(|l| l.kind == AttributeType::DateTime)
                && let Ok(t) = OffsetDateTime::parse(s, &Rfc3339)
            {
                return Some(SortKey::Time(t));
            }
            let case_exact = leaf.is_some_and(|l| l.case_exact);
            Some(SortKey::Text(if case_exact {
                s.clone()
            } else {
                s.to_lowercase()
            }))
        }
        _ => None,
    }
}

/// Sorts resources by an attribute (RFC 7644 §3.4.2.3): a multi-valued
/// attribute sorts by its primary value, else its first; strings compare
/// case-insensitively unless `caseExact`; resources without a value come
/// last when ascending and first when descending. The sort is stable.
pub fn sort_resources(rt: &ResourceType, resources: &mut [Value], by: &AttrPath, order: SortOrder) {
    let mut keyed: Vec<(Option<SortKey>, Value)> = resources
        .iter_mut()
        .map(|r| (sort_key(rt, r, by), std::mem::take(r)))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        let ord = match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
        };
        match order {
            SortOrder::Ascending => ord,
            SortOrder::Descending => ord.reverse(),
        }
    });
    for (slot, (_, v)) in resources.iter_mut().zip(keyed) {
        *slot = v;
    }
}
