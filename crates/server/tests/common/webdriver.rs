//! Minimal async W3C WebDriver client for browser tests against headless Chromium.
//!
//! [`Driver::start`] launches Debian's `chromedriver` as a child process with
//! `--port=0` and reads the port it reports (no bind-then-release race), waits for
//! `GET /status` to report ready and opens a headless Chromium session. Binaries come
//! from `GATEHOUSE_CHROMEDRIVER` / `GATEHOUSE_CHROMIUM`, falling back to `chromedriver`
//! / `chromium` on `PATH`. Set `GATEHOUSE_CHROMEDRIVER_LOG=<file>` for a verbose log.
//!
//! Call [`Driver::quit`] at the end of a test. A dropped `Driver` (e.g. on panic)
//! deletes its session with a blocking best-effort request, because Chromium outlives
//! a killed chromedriver, and `kill_on_drop` then stops chromedriver.
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the API"
)]

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// W3C key code for Tab (for [`Element::send_keys`] or [`Driver::press`]).
pub const TAB: &str = "\u{E004}";
/// W3C key code for Enter.
pub const ENTER: &str = "\u{E007}";
/// W3C key code for Escape.
pub const ESCAPE: &str = "\u{E00C}";

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
const CHROMIUM_ARGS: [&str; 7] = [
    "--headless=new",
    "--no-sandbox", // required when running as root (CI containers)
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1280,900",
    "--no-first-run",
    "--no-default-browser-check",
];

/// Everything that can go wrong talking to the browser.
#[derive(Debug, Clone)]
pub enum WdError {
    /// chromedriver/chromium could not be located or started.
    Launch(String),
    /// Transport-level failure talking to chromedriver.
    Http(String),
    /// chromedriver answered with a W3C error (its `error` and `message` fields).
    WebDriver {
        command: String,
        status: u16,
        error: String,
        message: String,
    },
    /// No element matched `selector` on the page at `url` within `waited`.
    NotFound {
        selector: String,
        url: String,
        waited: Duration,
    },
    /// A polling helper gave up.
    Timeout(String),
    /// Local I/O (e.g. writing a screenshot) or an unexpected response shape.
    Other(String),
}

impl Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Launch(m) => write!(f, "webdriver launch failed: {m}"),
            Self::Http(m) => write!(f, "webdriver transport error: {m}"),
            Self::WebDriver {
                command,
                status,
                error,
                message,
            } => {
                let first = message.lines().next().unwrap_or_default();
                write!(
                    f,
                    "webdriver {command} failed (HTTP {status}, {error}): {first}"
                )
            }
            Self::NotFound {
                selector,
                url,
                waited,
            } => {
                write!(
                    f,
                    "no element matches `{selector}` on {url} (waited {waited:?})"
                )
            }
            Self::Timeout(m) => write!(f, "webdriver timeout: {m}"),
            Self::Other(m) => write!(f, "webdriver: {m}"),
        }
    }
}

impl std::error::Error for WdError {}

/// Result alias used throughout this module.
pub type WdResult<T> = Result<T, WdError>;

/// `map_err` adapter: wrap any displayable error as `kind("{what}: {err}")`.
fn ctx<E: Display>(kind: fn(String) -> WdError, what: impl Display) -> impl FnOnce(E) -> WdError {
    move |e| kind(format!("{what}: {e}"))
}

/// A cookie as reported by the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub http_only: bool,
    pub secure: bool,
    /// `"Strict"`, `"Lax"` or `"None"` when the browser reports it.
    pub same_site: Option<String>,
}

impl Cookie {
    fn from_json(c: &Value) -> Cookie {
        let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
        let b = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
        Cookie {
            name: s("name").unwrap_or_default(),
            value: s("value").unwrap_or_default(),
            path: s("path"),
            domain: s("domain"),
            http_only: b("httpOnly"),
            secure: b("secure"),
            same_site: s("sameSite"),
        }
    }
}

/// Path of the chromedriver binary (`GATEHOUSE_CHROMEDRIVER`, else `PATH`), if found.
pub fn chromedriver_path() -> Option<PathBuf> {
    locate("GATEHOUSE_CHROMEDRIVER", "chromedriver")
}

/// Path of the chromium binary (`GATEHOUSE_CHROMIUM`, else `PATH`), if found.
pub fn chromium_path() -> Option<PathBuf> {
    locate("GATEHOUSE_CHROMIUM", "chromium")
}

/// True when both chromedriver and chromium can be found.
pub fn available() -> bool {
    chromedriver_path().is_some() && chromium_path().is_some()
}

fn locate(var: &str, default: &str) -> Option<PathBuf> {
    let name = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let name = name.unwrap_or_else(|| PathBuf::from(default));
    if name.components().count() > 1 {
        return name.is_file().then_some(name);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
}

/// Cheap, cloneable handle on one WebDriver session (`url` = `.../session/<id>`).
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> WdResult<Value> {
        let label = format!(
            "{method} {}",
            if path.is_empty() { "/session" } else { path }
        );
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(ctx(WdError::Http, &label))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.map_err(ctx(WdError::Http, &label))?;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let field = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let (error, message) = (field("error"), field("message"));
        Err(WdError::WebDriver {
            command: label,
            status,
            error,
            message,
        })
    }

    async fn get(&self, path: &str) -> WdResult<Value> {
        self.cmd(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> WdResult<Value> {
        self.cmd(Method::POST, path, Some(body)).await
    }

    /// POST a command whose result is irrelevant.
    async fn run(&self, path: &str, body: Value) -> WdResult<()> {
        self.post(path, body).await.map(drop)
    }

    async fn string(&self, path: &str) -> WdResult<String> {
        match self.get(path).await? {
            Value::String(s) => Ok(s),
            other => Err(WdError::Other(format!(
                "GET {path}: expected a string, got {other}"
            ))),
        }
    }

    /// `POST {from}/elements`; `from` is "" for the document or `/element/<id>`.
    async fn find_now(&self, from: &str, css: &str) -> WdResult<Vec<Element>> {
        let query = json!({ "using": "css selector", "value": css });
        match self.post(&format!("{from}/elements"), query).await? {
            Value::Array(items) => items.iter().map(|e| self.element(e, css)).collect(),
            other => Err(WdError::Other(format!(
                "find `{css}`: expected an array, got {other}"
            ))),
        }
    }

    fn element(&self, v: &Value, selector: &str) -> WdResult<Element> {
        let id = v.get(ELEMENT_KEY).and_then(Value::as_str);
        let id = id.ok_or_else(|| WdError::Other(format!("`{selector}`: not an element: {v}")))?;
        let (id, selector) = (id.to_owned(), selector.to_owned());
        Ok(Element {
            session: self.clone(),
            id,
            selector,
        })
    }
}

/// A running chromedriver plus one headless Chromium session.
pub struct Driver {
    session: Session,
    child: Child,
    quit: bool,
    /// How long [`Driver::find`] polls before giving up (default 5 s).
    pub find_timeout: Duration,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Driver({})", self.session.url)
    }
}

impl Driver {
    /// Launch chromedriver and open a headless Chromium session (window 1280x900).
    pub async fn start() -> WdResult<Driver> {
        let hint = "set GATEHOUSE_CHROMEDRIVER or apt-get install chromium-driver";
        let driver = chromedriver_path()
            .ok_or_else(|| WdError::Launch(format!("chromedriver not found ({hint})")))?;
        let hint = "set GATEHOUSE_CHROMIUM or apt-get install chromium";
        let browser = chromium_path()
            .ok_or_else(|| WdError::Launch(format!("chromium not found ({hint})")))?;

        let mut cmd = Command::new(&driver);
        cmd.arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(log) = std::env::var_os("GATEHOUSE_CHROMEDRIVER_LOG") {
            cmd.arg("--verbose")
                .arg(format!("--log-path={}", Path::new(&log).display()));
        }
        let mut child = cmd
            .kill_on_drop(true)
            .spawn()
            .map_err(ctx(WdError::Launch, format!("spawn {}", driver.display())))?;
        let port = tokio::time::timeout(STARTUP_TIMEOUT, read_port(&mut child))
            .await
            .map_err(|_| {
                WdError::Launch(format!("no port reported within {STARTUP_TIMEOUT:?}"))
            })??;

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .map_err(ctx(WdError::Launch, "http client"))?;
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&http, &base).await?;

        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": browser.to_string_lossy(), "args": CHROMIUM_ARGS },
        }}});
        let root = Session {
            http: http.clone(),
            url: format!("{base}/session"),
        };
        let v = root.post("", caps).await?;
        let id = v.get("sessionId").and_then(Value::as_str);
        let id = id.ok_or_else(|| WdError::Launch(format!("new session: no sessionId in {v}")))?;
        let session = Session {
            http,
            url: format!("{base}/session/{id}"),
        };
        Ok(Driver {
            session,
            child,
            quit: false,
            find_timeout: Duration::from_secs(5),
        })
    }

    /// Navigate to `url` and wait for the page load.
    pub async fn goto(&self, url: &str) -> WdResult<()> {
        self.session.run("/url", json!({ "url": url })).await
    }

    /// URL of the current page.
    pub async fn current_url(&self) -> WdResult<String> {
        self.session.string("/url").await
    }

    /// Title of the current page.
    pub async fn title(&self) -> WdResult<String> {
        self.session.string("/title").await
    }

    /// Serialized DOM of the current page.
    pub async fn page_source(&self) -> WdResult<String> {
        self.session.string("/source").await
    }

    /// First element matching `css`, polling up to [`Driver::find_timeout`].
    pub async fn find(&self, css: &str) -> WdResult<Element> {
        self.wait_for(css, |_| true, self.find_timeout).await
    }

    /// All elements matching `css` right now (possibly none; no waiting).
    pub async fn find_all(&self, css: &str) -> WdResult<Vec<Element>> {
        self.session.find_now("", css).await
    }

    /// Poll until an element matching `css` has text satisfying `pred`, or `timeout` passes.
    pub async fn wait_for(
        &self,
        css: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> WdResult<Element> {
        let start = Instant::now();
        let mut last_text = None;
        loop {
            for el in self.session.find_now("", css).await? {
                // An element can go stale between find and read; then just poll again.
                if let Ok(text) = el.text().await {
                    if pred(&text) {
                        return Ok(el);
                    }
                    last_text = Some(text);
                }
            }
            if start.elapsed() >= timeout {
                let url = self
                    .current_url()
                    .await
                    .unwrap_or_else(|e| format!("<url: {e}>"));
                return Err(match last_text {
                    None => WdError::NotFound {
                        selector: css.into(),
                        url,
                        waited: timeout,
                    },
                    Some(t) => WdError::Timeout(format!(
                        "`{css}` on {url}: predicate still false after {timeout:?}; text: {t:?}"
                    )),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Run synchronous JavaScript (`return ...;`) with `args` and return its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> WdResult<Value> {
        self.session
            .post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// The currently focused element (`document.activeElement`).
    pub async fn active_element(&self) -> WdResult<Element> {
        let v = self.session.get("/element/active").await?;
        self.session.element(&v, ":focus")
    }

    /// Press and release one key (e.g. [`TAB`], [`ENTER`]) wherever focus is.
    pub async fn press(&self, key: &str) -> WdResult<()> {
        let keys = [
            json!({"type": "keyDown", "value": key}),
            json!({"type": "keyUp", "value": key}),
        ];
        let source = json!({ "type": "key", "id": "keyboard", "actions": keys });
        self.session
            .run("/actions", json!({ "actions": [source] }))
            .await?;
        self.session
            .cmd(Method::DELETE, "/actions", None)
            .await
            .map(drop)
    }

    /// All cookies visible to the current page, including HttpOnly ones.
    pub async fn cookies(&self) -> WdResult<Vec<Cookie>> {
        match self.session.get("/cookie").await? {
            Value::Array(items) => Ok(items.iter().map(Cookie::from_json).collect()),
            other => Err(WdError::Other(format!(
                "cookies: expected an array, got {other}"
            ))),
        }
    }

    /// Resize the window. Headless: viewport width == `width`, height ~140 px less.
    pub async fn set_window_size(&self, width: u32, height: u32) -> WdResult<()> {
        self.session
            .run("/window/rect", json!({ "width": width, "height": height }))
            .await
    }

    /// Save a PNG screenshot of the viewport to `path`, creating parent directories.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> WdResult<()> {
        let path = path.as_ref();
        let b64 = self.session.string("/screenshot").await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(ctx(WdError::Other, "screenshot base64"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let what = format!("create {}", dir.display());
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(ctx(WdError::Other, what))?;
        }
        let what = format!("write {}", path.display());
        tokio::fs::write(path, png)
            .await
            .map_err(ctx(WdError::Other, what))
    }

    /// End the session (closing Chromium) and stop chromedriver.
    pub async fn quit(mut self) -> WdResult<()> {
        self.quit = true;
        let res = self.session.cmd(Method::DELETE, "", None).await.map(drop);
        let _ = self.child.kill().await;
        res
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.quit {
            delete_session_blocking(&self.session.url);
        }
    }
}

/// Send `DELETE <session url>` over a plain blocking socket (usable from `Drop`).
fn delete_session_blocking(session_url: &str) {
    use std::io::{Read, Write};
    let Some((host, path)) = session_url.trim_start_matches("http://").split_once('/') else {
        return;
    };
    let Ok(addr) = host.parse::<std::net::SocketAddr>() else {
        return;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_ok() {
        let _ = s.read(&mut [0u8; 512]); // wait until chromedriver has closed Chromium
    }
}

/// Read chromedriver's stdout until it reports the port it bound (`--port=0`).
async fn read_port(child: &mut Child) -> WdResult<u16> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| WdError::Launch("no stdout pipe".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(ctx(WdError::Launch, "read stdout"))?
    {
        let port = line.split("started successfully on port ").nth(1);
        if let Some(port) = port.and_then(|p| p.trim().trim_end_matches('.').parse::<u16>().ok()) {
            // Keep draining stdout so chromedriver never blocks on a full pipe.
            let mut rest = lines.into_inner();
            tokio::spawn(async move { tokio::io::copy(&mut rest, &mut tokio::io::sink()).await });
            return Ok(port);
        }
        seen.push(line);
    }
    let status = match child.try_wait() {
        Ok(Some(s)) => s.to_string(),
        _ => "still running".into(),
    };
    let seen = seen.join(" | ");
    Err(WdError::Launch(format!(
        "chromedriver exited without a port ({status}): {seen}"
    )))
}

/// Poll `GET /status` until chromedriver reports `ready: true`.
async fn wait_ready(http: &reqwest::Client, base: &str) -> WdResult<()> {
    let start = Instant::now();
    let mut last = String::from("no response");
    while start.elapsed() < STARTUP_TIMEOUT {
        match http.get(format!("{base}/status")).send().await {
            Ok(r) => match r.json::<Value>().await {
                Ok(v) if v["value"]["ready"] == json!(true) => return Ok(()),
                Ok(v) => last = v["value"]["message"].as_str().unwrap_or("not ready").into(),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL).await;
    }
    let msg = format!("chromedriver at {base} not ready after {STARTUP_TIMEOUT:?}: {last}");
    Err(WdError::Launch(msg))
}

/// A DOM element, bound to the session it was found in.
#[derive(Clone)]
pub struct Element {
    session: Session,
    id: String,
    selector: String,
}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({:?}, {})", self.selector, self.id)
    }
}

impl Element {
    fn at(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    /// Click the element (scrolling it into view first).
    pub async fn click(&self) -> WdResult<()> {
        self.session.run(&self.at("/click"), json!({})).await
    }

    /// Focus the element and type `text` (may contain [`TAB`] / [`ENTER`]).
    pub async fn send_keys(&self, text: &str) -> WdResult<()> {
        self.session
            .run(&self.at("/value"), json!({ "text": text }))
            .await
    }

    /// Clear an input or textarea.
    pub async fn clear(&self) -> WdResult<()> {
        self.session.run(&self.at("/clear"), json!({})).await
    }

    /// Rendered (visible) text.
    pub async fn text(&self) -> WdResult<String> {
        self.session.string(&self.at("/text")).await
    }

    /// HTML attribute `name`, or `None` when absent.
    pub async fn attr(&self, name: &str) -> WdResult<Option<String>> {
        let v = self
            .session
            .get(&self.at(&format!("/attribute/{name}")))
            .await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// DOM property `name` (e.g. `value` of an input, which reflects typed text).
    pub async fn prop(&self, name: &str) -> WdResult<Value> {
        self.session
            .get(&self.at(&format!("/property/{name}")))
            .await
    }

    /// Descendants of this element matching `css` (no waiting).
    pub async fn find_all(&self, css: &str) -> WdResult<Vec<Element>> {
        self.session.find_now(&self.at(""), css).await
    }
}
