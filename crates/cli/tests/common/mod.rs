//! Running the real `gatehouse` binary: one-shot commands with a bounded
//! wait, and a server guard that reads the address from standard output,
//! waits for `/healthz`, and kills the process if a test fails.

use std::ffi::OsStr;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gatehouse_store::testing::TestDatabase;
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// The longest a one-shot command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest a server may take to start, answer or stop.
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a test's database lives.
#[derive(Debug, Clone)]
pub struct Backend {
    /// `None`: the default SQLite file in the data directory.
    pub database_url: Option<String>,
}

impl Backend {
    /// The default: SQLite in the data directory.
    pub fn sqlite() -> Self {
        Self { database_url: None }
    }

    /// Whether this is the SQLite default.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.is_none()
    }

    /// The backend name `gatehouse` reports.
    pub fn name(&self) -> &'static str {
        if self.is_sqlite() {
            "sqlite"
        } else {
            "postgres"
        }
    }
}

/// Runs `case` on SQLite.
pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    case(Backend::sqlite()).await;
}

/// Runs `case` on a fresh PostgreSQL schema, dropped afterwards even if the
/// case fails; skips when `GATEHOUSE_TEST_DATABASE_URL` is not set.
pub async fn on_postgres<F, Fut>(label: &str, case: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let configured = std::env::var(gatehouse_store::testing::TEST_DATABASE_URL)
        .is_ok_and(|url| !url.trim().is_empty());
    let db = if configured {
        TestDatabase::postgres(label)
            .await
            .expect("creating a PostgreSQL test schema")
    } else {
        None
    };
    let Some(db) = db else {
        eprintln!(
            "skipped {label}: set {} to run the PostgreSQL variant",
            gatehouse_store::testing::TEST_DATABASE_URL
        );
        return;
    };
    let backend = Backend {
        database_url: Some(db.url.clone()),
    };
    // A task, so a failed assertion comes back as a JoinError and the
    // schema is still dropped.
    let outcome = tokio::spawn(case(backend)).await;
    db.cleanup().await;
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("the test task failed: {err}"),
        }
    }
}

/// A `gatehouse` command with a clean environment: no `GATEHOUSE_*`
/// variable of the developer's leaks in, and `--data-dir` is `data_dir`.
pub fn gatehouse(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GATEHOUSE_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd.arg("--data-dir").arg(data_dir);
    cmd
}

/// One test's installation: a temporary data directory and a database.
#[derive(Debug)]
pub struct Install {
    dir: tempfile::TempDir,
    backend: Backend,
}

impl Install {
    /// A new, empty data directory on `backend`.
    pub fn new(backend: &Backend) -> Self {
        Self {
            dir: tempfile::tempdir().expect("creating a temporary data directory"),
            backend: backend.clone(),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database the installation's commands use.
    #[allow(
        dead_code,
        reason = "not every test binary that includes this module reads the database"
    )]
    pub fn database_url(&self) -> String {
        match &self.backend.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.path("gatehouse.db").display()),
        }
    }

    /// A file in the data directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `gatehouse --data-dir D [--database-url URL] ARGS…`, not yet run.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = gatehouse(self.data_dir());
        if let Some(url) = &self.backend.database_url {
            cmd.arg("--database-url").arg(url);
        }
        cmd.args(args);
        cmd
    }

    /// Runs a command to completion with empty standard input.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        run(self.command(args), None)
    }

    /// Runs a command to completion, feeding `stdin`.
    pub fn run_with_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Run {
        run(self.command(args), Some(stdin.to_vec()))
    }

    /// Starts `gatehouse … serve --listen 127.0.0.1:0 EXTRA…`.
    pub async fn serve(&self, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start(self.command(&args)).await
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    what: String,
}

impl Run {
    /// Fails the test unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Fails the test unless the command failed cleanly: a non-zero exit
    /// and an `error:` message, not a crash.
    #[track_caller]
    pub fn fails(self) -> Self {
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "`{}` should have failed with an exit code, but: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "`{}` panicked:\n{}",
            self.what,
            self.stderr
        );
        self
    }

    /// The `error: …` message of a failed command, from its first line to
    /// the end of standard error (lower-cased).
    #[track_caller]
    pub fn error_message(&self) -> String {
        let start = self.stderr.find("error: ").unwrap_or_else(|| {
            panic!(
                "`{}` printed no `error:` message on stderr:\n{}",
                self.what, self.stderr
            )
        });
        self.stderr[start..].to_lowercase()
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("`{}` did not print JSON ({e}):\n{}", self.what, self.stdout)
        })
    }

    /// The API token a command printed (an indented `gth_…` line).
    #[track_caller]
    pub fn token(&self) -> String {
        token_in(&self.stdout)
            .unwrap_or_else(|| panic!("`{}` printed no token:\n{}", self.what, self.stdout))
    }
}

/// The first `gth_…` token on a line of its own in `text`.
pub fn token_in(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("gth_"))
        .map(str::to_owned)
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends `signal` (`TERM`, `KILL`) to a process.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `cmd` to completion, within [`COMMAND_TIMEOUT`].
fn run(mut cmd: Command, stdin: Option<Vec<u8>>) -> Run {
    let what = describe(&cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let pid = child.id();
    let mut input = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        if let Some(bytes) = stdin {
            // The command may exit without reading everything; that is its business.
            let _ = input.write_all(&bytes);
        }
        // Dropping `input` closes the pipe: end of input.
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => output.unwrap_or_else(|e| panic!("waiting for `{what}`: {e}")),
        Err(_) => {
            signal(pid, "KILL");
            panic!("`{what}` did not finish within {COMMAND_TIMEOUT:?}");
        }
    };
    let _ = writer.join();
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        what,
    }
}

/// A running `gatehouse serve`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    lines: Mutex<Receiver<String>>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    client: reqwest::Client,
    what: String,
}

/// A server that has exited.
#[derive(Debug)]
pub struct Stopped {
    /// How it ended.
    pub status: ExitStatus,
    /// All it printed on standard output.
    pub stdout: String,
    /// All it logged on standard error.
    pub stderr: String,
}

/// An HTTP response: status and JSON body (`Null` if empty or not JSON).
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Server {
    async fn start(mut cmd: Command) -> Self {
        let what = describe(&cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        let mut server = Self {
            child,
            base: String::new(),
            lines: Mutex::new(rx),
            stdout: Vec::new(),
            stderr: Some(stderr),
            client: reqwest::Client::builder()
                .timeout(SERVER_TIMEOUT)
                .build()
                .expect("an HTTP client"),
            what,
        };
        let listening = server.wait_for_line(|l| l.starts_with("Gatehouse is listening on "));
        server.base = listening
            .trim_start_matches("Gatehouse is listening on ")
            .trim()
            .to_owned();
        assert!(
            server.base.starts_with("http://127.0.0.1:") && !server.base.ends_with(":0"),
            "unexpected address line: {listening}"
        );
        server.wait_until_healthy().await;
        server
    }

    /// Reads standard output until a line matches; fails the test if the
    /// server exits or prints no such line within [`SERVER_TIMEOUT`].
    #[track_caller]
    pub fn wait_for_line(&mut self, matches: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.stdout.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self.lines.lock().expect("stdout lock").recv_timeout(left);
            match next {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail("printed no expected line in time"),
                Err(RecvTimeoutError::Disconnected) => self.fail("exited (stdout closed)"),
            }
        }
    }

    /// The administrator token printed on first start.
    #[track_caller]
    pub fn bootstrap_token(&mut self) -> String {
        self.wait_for_line(|l| l.trim().starts_with("gth_"))
            .trim()
            .to_owned()
    }

    /// Kills the server and fails the test, showing what it printed.
    #[track_caller]
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        panic!(
            "`{}` {why}\n--- stdout\n{}\n--- stderr\n{stderr}",
            self.what,
            self.stdout.join("\n")
        );
    }

    async fn wait_until_healthy(&mut self) {
        let url = format!("{}/healthz", self.base);
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            match self.client.get(&url).send().await {
                Ok(response) if response.status().is_success() => return,
                _ if Instant::now() >= deadline => self.fail("never answered /healthz"),
                _ => {}
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("exited with {status} before answering"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Response {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(reqwest::Method::GET, path, token, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(reqwest::Method::PUT, path, token, Some(body))
            .await
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns
    /// everything it printed.
    #[track_caller]
    pub fn terminate(mut self) -> Stopped {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + SERVER_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => self.fail("did not exit within 30 s of SIGTERM"),
                Err(e) => self.fail(&format!("cannot be waited for: {e}")),
            }
        };
        // The process is gone, so its pipes are closed: drain them.
        let rest: Vec<String> = self.lines.lock().expect("stdout lock").iter().collect();
        self.stdout.extend(rest);
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Stopped {
            status,
            stdout: self.stdout.join("\n"),
            stderr,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Harmless if it has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file in `dir` whose name starts with `prefix` (a database and its
/// `-wal` and `-shm` companions), with its contents.
pub fn files_starting_with(dir: &Path, prefix: &str) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("reading the data directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .map(|path| {
            let bytes = std::fs::read(&path).expect("reading a database file");
            (path, bytes)
        })
        .collect()
}
