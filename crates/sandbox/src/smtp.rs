//! An SMTP sink: accepts mail on loopback and keeps it for tests.
//!
//! It speaks enough RFC 5321 for a plain client: a `220` greeting, `EHLO`
//! (a multi-line `250`), `HELO`, `MAIL FROM`, `RCPT TO`, `DATA` (undoing
//! dot-stuffing), `RSET`, `NOOP` and `QUIT`. No TLS, no AUTH. Every message
//! accepted with `250` is kept (envelope sender, recipients, data) before
//! the `250` is sent, so a client that saw `250` finds its message here.
//! Fault knob: [`SmtpSink::fail_next`] answers the next messages' end of
//! data with a given reply instead of accepting them.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub to: Vec<String>,
    /// The message (headers and body) with CRLF line ends, dot-stuffing
    /// undone, without the terminating `.` line.
    pub data: String,
}

#[derive(Default)]
struct State {
    mail: Vec<ReceivedMail>,
    /// Replies to send instead of accepting the next messages.
    failures: Vec<String>,
}

/// Handle to a running SMTP sink; dropping it stops the server.
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl SmtpSink {
    /// Starts on 127.0.0.1 with a random port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => {
                            let state = Arc::clone(&shared);
                            tokio::spawn(async move {
                                if let Err(error) = session(socket, state).await {
                                    tracing::debug!(%error, "smtp sink session ended with an error");
                                }
                            });
                        }
                        Err(error) => tracing::warn!(%error, "smtp sink accept failed"),
                    },
                }
            }
        });
        Ok(Self {
            addr,
            state,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Messages accepted so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.state).mail.clone()
    }

    /// Fault knob: the next `count` messages are answered with `reply`
    /// (such as `451 4.3.0 try again later`) after their data, and not kept.
    pub fn fail_next(&self, count: usize, reply: &str) {
        let mut state = lock(&self.state);
        state
            .failures
            .extend(std::iter::repeat_n(reply.to_owned(), count));
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let Self { stop, task, .. } = self;
        stop.send(()).ok();
        if let Err(error) = task.await {
            tracing::warn!(%error, "smtp sink task failed");
        }
    }
}

/// The address inside `MAIL FROM:<…>` / `RCPT TO:<…>`.
fn path_of(argument: &str) -> Option<String> {
    let start = argument.find('<')?;
    let end = argument.rfind('>')?;
    argument.get(start + 1..end).map(str::to_owned)
}

async fn session(socket: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut stream = BufReader::new(socket);
    stream
        .write_all(b"220 sandbox.invalid ESMTP sink\r\n")
        .await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    loop {
        let mut line = String::new();
        if (&mut stream).take(4096).read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-sandbox.invalid\r\n250-8BITMIME\r\n250 SIZE 10485760".into()
        } else if upper.starts_with("HELO") {
            "250 sandbox.invalid".into()
        } else if upper.starts_with("MAIL FROM:") {
            match path_of(line) {
                Some(path) => {
                    from = Some(path);
                    to.clear();
                    "250 2.1.0 ok".into()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>".into(),
            }
        } else if upper.starts_with("RCPT TO:") {
            match (&from, path_of(line)) {
                (None, _) => "503 5.5.1 MAIL first".into(),
                (Some(_), Some(path)) => {
                    to.push(path);
                    "250 2.1.5 ok".into()
                }
                (Some(_), None) => "501 5.5.4 syntax: RCPT TO:<address>".into(),
            }
        } else if upper == "DATA" {
            if from.is_none() || to.is_empty() {
                "503 5.5.1 RCPT first".into()
            } else {
                stream
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                stream.flush().await?;
                let data = read_data(&mut stream).await?;
                let failure = {
                    let mut state = lock(&state);
                    if state.failures.is_empty() {
                        state.mail.push(ReceivedMail {
                            from: from.take().unwrap_or_default(),
                            to: std::mem::take(&mut to),
                            data,
                        });
                        None
                    } else {
                        Some(state.failures.remove(0))
                    }
                };
                from = None;
                to.clear();
                failure.unwrap_or_else(|| "250 2.0.0 queued".into())
            }
        } else if upper == "RSET" {
            from = None;
            to.clear();
            "250 2.0.0 ok".into()
        } else if upper == "NOOP" {
            "250 2.0.0 ok".into()
        } else if upper == "QUIT" {
            stream.write_all(b"221 2.0.0 bye\r\n").await?;
            stream.flush().await?;
            return Ok(());
        } else {
            "500 5.5.2 command not recognised".into()
        };
        stream.write_all(format!("{reply}\r\n").as_bytes()).await?;
        stream.flush().await?;
    }
}

/// Reads message data up to the `.` line, undoing dot-stuffing.
async fn read_data(stream: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut data = String::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the client closed the connection during DATA",
            ));
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok(data);
        }
        match line.strip_prefix('.') {
            Some(rest) => data.push_str(rest),
            None => data.push_str(&line),
        }
    }
}
