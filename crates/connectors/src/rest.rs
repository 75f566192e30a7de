//! Small pieces the RMM and documentation-platform clients share: URLs
//! built from escaped path segments, the idempotency header, reading a JSON
//! answer into a type.

use reqwest::{RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;

use crate::error::ConnectorError;

/// Parses a configured base URL; it must be `http` or `https`.
pub(crate) fn parse_base(system: &'static str, base: &str) -> Result<Url, ConnectorError> {
    let config = |message: String| ConnectorError::Config { system, message };
    let url = Url::parse(base).map_err(|e| config(format!("base URL: {e}")))?;
    if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
        return Err(config("the base URL must be an http(s) URL".to_owned()));
    }
    Ok(url)
}

/// `base` with `segments` appended as path segments, each one escaped, so
/// an id can never change the path it is put in.
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// Adds the engine's idempotency key as `Idempotency-Key`.
pub(crate) fn with_key(request: RequestBuilder, key: &str) -> RequestBuilder {
    request.header("Idempotency-Key", key)
}

/// Reads a successful answer's JSON body into `T`.
pub(crate) async fn read_json<T: DeserializeOwned>(
    system: &'static str,
    response: Response,
) -> Result<T, ConnectorError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|_| ConnectorError::Retryable {
            system,
            message: "the answer broke off".to_owned(),
            retry_after: None,
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ConnectorError::Rejected {
        system,
        status: None,
        message: format!("unreadable answer: {e}"),
    })
}
