//! The web console: server-rendered pages under `/console` for the people
//! who approve, act and audit. No JavaScript is needed; every change is an
//! HTML form, and every form carries a CSRF token.
//!
//! - **Sign-in** (`/console/sign-in`) takes a name, a password and a TOTP
//!   code ([`crate::signin`]). The session lives in a `Secure`, `HttpOnly`,
//!   `SameSite=Strict` cookie.
//! - **CSRF.** Forms of a signed-in operator carry [`csrf_token`] of their
//!   session, which another site cannot compute (it cannot read the
//!   cookie). The sign-in form, which has no session yet, uses a
//!   double-submit cookie. A request whose `Origin` names another site is
//!   refused before either is checked.
//! - **Authorization** is the API's: every page calls the same services,
//!   which ask the Cedar policies ([`crate::authz`]). A page without a
//!   session redirects to the sign-in page; a refusal is shown as a page
//!   with the API's status and message.
//! - **Headers.** Every page is sent with a strict Content Security Policy
//!   (no scripts, no inline styles, nothing from elsewhere), `no-store`
//!   caching, `nosniff` and `frame-ancestors 'none'`.

mod charts;
mod more;
mod pages;
mod people;
mod render;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use gatehouse_core::signin::Session;
use zeroize::Zeroizing;

use crate::app::Actor;
use crate::http::ApiState;
use crate::signin::csrf_token;

/// The session cookie.
pub const SESSION_COOKIE: &str = "gatehouse_session";
/// The sign-in form's double-submit cookie.
pub const SIGN_IN_COOKIE: &str = "gatehouse_sign_in";

/// Who may reach a console route without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (redirects, the stylesheet, the sign-in form).
    Public,
    /// A signed-in operator; the page's service call asks the policies.
    Session,
}

/// Every console route: its method, path and who may reach it. The router
/// is built from this table, so a route cannot exist without being listed,
/// and the tests walk it (`tests/console.rs`).
pub const ROUTES: [(&str, &str, Access); 23] = [
    ("GET", "/", Access::Public),
    ("GET", "/console", Access::Public),
    ("GET", "/console/", Access::Public),
    ("GET", "/console/console.css", Access::Public),
    ("GET", "/console/sign-in", Access::Public),
    ("POST", "/console/sign-in", Access::Public),
    ("POST", "/console/sign-out", Access::Session),
    ("GET", "/console/approvals", Access::Session),
    ("GET", "/console/approvals/{approval}", Access::Session),
    (
        "POST",
        "/console/approvals/{approval}/decide",
        Access::Session,
    ),
    ("GET", "/console/onboarding", Access::Session),
    ("GET", "/console/workflows/{workflow}", Access::Session),
    ("GET", "/console/tasks", Access::Session),
    ("GET", "/console/tasks/{task}", Access::Session),
    ("POST", "/console/tasks/{task}/complete", Access::Session),
    ("GET", "/console/audit", Access::Session),
    ("POST", "/console/audit/verify", Access::Session),
    ("GET", "/console/audit/oscal", Access::Session),
    ("GET", "/console/tenants", Access::Session),
    ("GET", "/console/analytics", Access::Session),
    ("GET", "/console/people", Access::Session),
    ("GET", "/console/people/{tenant}", Access::Session),
    ("GET", "/console/people/{tenant}/{person}", Access::Session),
];

/// The handler of one row of [`ROUTES`]; `None` for a row nobody handles
/// (the tests then fail: every listed route must answer).
fn handler(method: &str, path: &str) -> Option<MethodRouter<ApiState>> {
    Some(match (method, path) {
        ("GET", "/" | "/console") => get(|| async { Redirect::to("/console/") }),
        ("GET", "/console/") => get(|| async { Redirect::to("/console/approvals") }),
        ("GET", "/console/console.css") => get(render::stylesheet),
        ("GET", "/console/sign-in") => get(pages::sign_in_form),
        ("POST", "/console/sign-in") => post(pages::sign_in),
        ("POST", "/console/sign-out") => post(pages::sign_out),
        ("GET", "/console/approvals") => get(pages::approvals),
        ("GET", "/console/approvals/{approval}") => get(pages::approval),
        ("POST", "/console/approvals/{approval}/decide") => post(pages::decide),
        ("GET", "/console/onboarding") => get(pages::onboarding_board),
        ("GET", "/console/workflows/{workflow}") => get(more::workflow),
        ("GET", "/console/tasks") => get(more::tasks),
        ("GET", "/console/tasks/{task}") => get(more::task),
        ("POST", "/console/tasks/{task}/complete") => post(more::complete_task),
        ("GET", "/console/audit") => get(more::audit),
        ("POST", "/console/audit/verify") => post(more::verify),
        ("GET", "/console/audit/oscal") => get(more::oscal),
        ("GET", "/console/tenants") => get(more::tenants),
        ("GET", "/console/analytics") => get(more::analytics),
        ("GET", "/console/people") => get(people::tenants),
        ("GET", "/console/people/{tenant}") => get(people::people),
        ("GET", "/console/people/{tenant}/{person}") => get(people::person),
        _ => return None,
    })
}

/// The console's routes (all under `/console`, and `/` redirects there),
/// from [`ROUTES`].
pub fn routes() -> Router<ApiState> {
    let mut by_path: Vec<(&str, MethodRouter<ApiState>)> = Vec::new();
    for (method, path, _) in ROUTES {
        let Some(handler) = handler(method, path) else {
            tracing::error!(method, path, "a console route has no handler");
            continue;
        };
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => by_path.push((path, handler)),
        }
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
        .layer(axum::middleware::from_fn(protect))
}

/// Refuses cross-site form posts and sets the console's security headers.
async fn protect(request: Request, next: Next) -> Response {
    if request.method() == Method::POST && !same_origin(request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "this form was posted from another site; open the console and try again",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// Whether the request's `Origin` (when it sends one, as browsers do on
/// every POST) is this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), headers.get(HOST).map(|h| h.to_str()))
    else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority == host)
}

/// The value of cookie `name`, if the request sends it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: always `HttpOnly`, `Secure` and `SameSite=Strict`.
fn set_cookie(name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A signed-in operator, from the session cookie. Without a usable session
/// the request is redirected to the sign-in page.
pub struct Console {
    /// Who is acting.
    pub actor: Actor,
    /// Their session.
    pub session: Session,
    /// The token every form of theirs must carry.
    pub csrf: String,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("actor", &self.actor)
            .field("session", &self.session.id)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// The refusal of a form whose token is not this session's; `None`
    /// when the token is right.
    fn csrf_refusal(&self, sent: &str) -> Option<Response> {
        (!same_secret(sent, &self.csrf)).then(|| {
            (
                StatusCode::FORBIDDEN,
                "this form has expired or was not sent by the console; reload the page and try again",
            )
                .into_response()
        })
    }

    /// The operator's handle, for the page header.
    fn name(&self) -> &str {
        match &self.actor {
            Actor::Operator { operator, .. } => operator.name.as_str(),
            Actor::System(_) => "gatehouse",
        }
    }
}

impl FromRequestParts<ApiState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let to_sign_in = || {
            let next = parts.uri.path();
            let target = if next.starts_with("/console/") && !next.contains("//") {
                format!("/console/sign-in?next={next}")
            } else {
                "/console/sign-in".to_owned()
            };
            Redirect::to(&target).into_response()
        };
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in());
        };
        let secret = Zeroizing::new(secret.to_owned());
        match state.app.authenticate_session(&secret).await {
            Ok((actor, session)) => Ok(Self {
                actor,
                session,
                csrf: csrf_token(&secret),
            }),
            Err(crate::error::AppError::Unauthenticated(_)) => Err(to_sign_in()),
            Err(err) => Err(render::error_page(None, &err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; gatehouse_session_x=2; gatehouse_session=3"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("3"));
        assert_eq!(cookie(&headers, "b"), None);
    }

    #[test]
    fn only_this_host_may_post() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(
            same_origin(&headers),
            "no Origin: not a browser's cross-site post"
        );
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
