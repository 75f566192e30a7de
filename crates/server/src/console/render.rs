//! Templates (minijinja, compiled into the binary, HTML auto-escaped) and
//! the responses built from them.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value, context};

use super::Console;
use crate::error::AppError;

/// Every template, by name.
const TEMPLATES: [(&str, &str); 15] = [
    ("base.html", include_str!("../../templates/base.html")),
    ("sign_in.html", include_str!("../../templates/sign_in.html")),
    (
        "approvals.html",
        include_str!("../../templates/approvals.html"),
    ),
    (
        "approval.html",
        include_str!("../../templates/approval.html"),
    ),
    (
        "onboarding.html",
        include_str!("../../templates/onboarding.html"),
    ),
    ("error.html", include_str!("../../templates/error.html")),
    ("tasks.html", include_str!("../../templates/tasks.html")),
    ("task.html", include_str!("../../templates/task.html")),
    (
        "workflow.html",
        include_str!("../../templates/workflow.html"),
    ),
    ("audit.html", include_str!("../../templates/audit.html")),
    ("tenants.html", include_str!("../../templates/tenants.html")),
    (
        "analytics.html",
        include_str!("../../templates/analytics.html"),
    ),
    ("people.html", include_str!("../../templates/people.html")),
    ("person.html", include_str!("../../templates/person.html")),
    (
        "people_of.html",
        include_str!("../../templates/people_of.html"),
    ),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(err) = env.add_template(name, source) {
            // A test renders every template, so this is caught before a
            // release; at run time the page says what is wrong.
            tracing::error!(template = name, error = %err, "a console template does not parse");
        }
    }
    env
});

/// The page `template` with `values`, for `console` (the signed-in
/// operator, for the header and the sign-out form), with `status`.
pub(super) fn page(
    status: StatusCode,
    template: &str,
    console: Option<&Console>,
    values: Value,
) -> Response {
    let who = console.map(|c| context! { name => c.name(), csrf => c.csrf.as_str() });
    let rendered = ENV
        .get_template(template)
        .and_then(|t| t.render(context! { who, ..values }));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(template, error = %err, "rendering a console page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: a console page could not be rendered; the server log has the details",
            )
                .into_response()
        }
    }
}

/// `err` as a page, with its status and the API's message.
pub(super) fn error_page(console: Option<&Console>, err: &AppError) -> Response {
    if matches!(err, AppError::Internal(_)) {
        tracing::error!(error = %err, "console request failed");
    }
    page(
        err.status(),
        "error.html",
        console,
        context! {
            title => err.status().canonical_reason().unwrap_or("Error"),
            status => err.status().as_u16(),
            code => err.code(),
            message => err.public_message(),
        },
    )
}

/// The console's stylesheet.
pub(super) async fn stylesheet() -> Response {
    let mut response = include_str!("../../templates/console.css").into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_escapes_html() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let html = ENV
            .get_template("error.html")
            .unwrap()
            .render(context! { title => "x", status => 400, code => "c", message => "<script>alert(1)</script>" })
            .unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }
}
