//! Small pieces the three PSA clients share: id parsing, "missing" answers,
//! vendor date formats, idempotency keys of sub-steps.

use std::time::Duration;

use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::error::ConnectorError;

/// How long one PSA call may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// The header that carries the engine's idempotency key.
pub(crate) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Checks that a configured base URL is an absolute http(s) URL.
pub(crate) fn check_base_url(
    system: &'static str,
    setting: &str,
    url: &str,
) -> Result<reqwest::Url, ConnectorError> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
            Ok(parsed)
        }
        _ => Err(ConnectorError::Config {
            system,
            message: format!("{setting} must be an absolute http(s) URL"),
        }),
    }
}

/// The most pages a client reads of one list: a guard against a server
/// that never ends a list, far above any real MSP's record count.
pub(crate) const MAX_PAGES: u32 = 10_000;

/// The error when a list does not end within [`MAX_PAGES`].
pub(crate) fn too_many_pages(system: &'static str) -> ConnectorError {
    ConnectorError::Rejected {
        system,
        status: None,
        message: format!("a list did not end within {MAX_PAGES} pages"),
    }
}

/// A PSA's numeric id from Gatehouse's text form.
pub(crate) fn parse_id(system: &'static str, id: &str) -> Result<u64, ConnectorError> {
    id.trim().parse().map_err(|_| ConnectorError::Rejected {
        system,
        status: None,
        message: format!("{id:?} is not a {system} id (a number)"),
    })
}

/// `Ok(None)` for a 404 answer, the value or the error otherwise.
pub(crate) fn missing_is_none<T>(
    answer: Result<T, ConnectorError>,
) -> Result<Option<T>, ConnectorError> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(ConnectorError::Rejected {
            status: Some(404), ..
        }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A "not found" rejection for something Gatehouse asked to change.
pub(crate) fn not_found(system: &'static str, what: &str, id: &str) -> ConnectorError {
    ConnectorError::Rejected {
        system,
        status: Some(404),
        message: format!("{what} {id} not found"),
    }
}

/// A rejection for an answer that lacks what the client needs.
pub(crate) fn unreadable(system: &'static str, what: &str) -> ConnectorError {
    ConnectorError::Rejected {
        system,
        status: None,
        message: format!("unreadable answer: {what}"),
    }
}

/// A vendor date: RFC 3339, or ISO 8601 without an offset (HaloPSA, and
/// some Autotask fields), which PSAs mean as UTC.
pub(crate) fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| {
        PrimitiveDateTime::parse(text, &Iso8601::DEFAULT)
            .ok()
            .map(PrimitiveDateTime::assume_utc)
    })
}

/// RFC 3339 text of `at`, whole seconds rounded down, `Z`: the form every
/// PSA's filters accept. Rounding down only widens a `>=` filter; callers
/// filter precisely afterwards.
pub(crate) fn format_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// The idempotency key of one sub-step of a call (`key:agreement`): one
/// engine step may make several creating requests, and each must carry its
/// own key, or a server would replay the first answer for the second.
pub(crate) fn sub_key(key: &str, step: &str) -> String {
    format!("{key}:{step}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_dates_parse_with_and_without_offset() {
        let a = parse_time("2026-03-01T10:00:00Z").unwrap();
        let b = parse_time("2026-03-01T10:00:00").unwrap();
        let c = parse_time("2026-03-01T11:00:00+01:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(parse_time("yesterday").is_none());
        assert_eq!(format_time(c), "2026-03-01T10:00:00Z");
    }

    #[test]
    fn base_urls_must_be_absolute_http() {
        assert!(check_base_url("x", "base_url", "https://api-na.myconnectwise.net").is_ok());
        for bad in ["ftp://host", "api-na.myconnectwise.net", "", "http://"] {
            let error = check_base_url("x", "base_url", bad).unwrap_err();
            assert!(
                matches!(error, ConnectorError::Config { .. }),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn only_a_404_means_missing() {
        let gone: Result<(), _> = Err(not_found("x", "company", "1"));
        assert_eq!(missing_is_none(gone), Ok(None));
        let refused: Result<(), _> = Err(ConnectorError::Auth {
            system: "x",
            status: Some(401),
            message: String::new(),
        });
        assert!(missing_is_none(refused).is_err());
        assert!(parse_id("x", "12a").is_err());
        assert_eq!(parse_id("x", " 12 "), Ok(12));
    }
}
