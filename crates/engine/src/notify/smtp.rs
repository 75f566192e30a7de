//! E-mail over SMTP (RFC 5321): a minimal client over plain TCP.
//!
//! One connection per message: greeting, `EHLO` (falling back to `HELO`
//! when the server does not know it), `MAIL FROM`, `RCPT TO`, `DATA` with
//! dot-stuffing, `QUIT`. Replies are read whole (multi-line replies are
//! `250-…` lines ending with `250 …`). A 4xx reply or a network failure is
//! retried; a 5xx reply is permanent; errors quote the command and the
//! server's reply.
//!
//! Not implemented yet: STARTTLS and AUTH. Use a local relay (or the
//! sandbox sink) that accepts mail from this host without them.
//!
//! The message carries `Message-ID: <notification id@sender's domain>`, the
//! same on every attempt, so a repeated delivery can be recognised.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use gatehouse_core::notify::{EmailAddress, Notification};
use time::OffsetDateTime;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;

use super::{Channel, DeliveryError};

/// The longest reply line accepted (RFC 5321 §4.5.3.1.5: 512 with CRLF;
/// some servers send more).
const MAX_LINE: u64 = 4096;
/// The most lines one reply may have.
const MAX_LINES: usize = 100;

/// A server's reply: its code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text after the code, one entry per line.
    pub lines: Vec<String>,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// One reply line: its code, whether it is the last line, and its text.
pub fn parse_reply_line(line: &str) -> Result<(u16, bool, &str), String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let code = line
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (200..600).contains(c))
        .ok_or_else(|| format!("`{}` is not an SMTP reply", line.escape_debug()))?;
    match line.as_bytes().get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, line.get(4..).unwrap_or_default())),
        Some(b'-') => Ok((code, false, line.get(4..).unwrap_or_default())),
        Some(_) => Err(format!(
            "`{}` is not an SMTP reply: the code must be followed by a space or `-`",
            line.escape_debug()
        )),
    }
}

/// Reads one (possibly multi-line) reply.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, String> {
    let mut lines = Vec::new();
    let mut code = None;
    loop {
        let mut buf = Vec::new();
        let read = (&mut *reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| format!("reading the reply: {e}"))?;
        if read == 0 {
            return Err("the server closed the connection".into());
        }
        if !buf.ends_with(b"\n") {
            return Err(format!("a reply line is longer than {MAX_LINE} bytes"));
        }
        let text = String::from_utf8_lossy(&buf);
        let (this, last, rest) = parse_reply_line(&text)?;
        if code.is_some_and(|c| c != this) {
            return Err(format!(
                "a multi-line reply changed its code from {} to {this}",
                code.unwrap_or_default()
            ));
        }
        code = Some(this);
        lines.push(rest.to_owned());
        if last {
            return Ok(Reply { code: this, lines });
        }
        if lines.len() >= MAX_LINES {
            return Err(format!("a reply has more than {MAX_LINES} lines"));
        }
    }
}

/// The message data as sent after `DATA`: CRLF line ends, every line that
/// starts with `.` given another (RFC 5321 §4.5.2), and the terminating
/// `.` line.
pub fn dot_stuff(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 8);
    let normalized = message.replace("\r\n", "\n");
    let body = normalized.strip_suffix('\n').unwrap_or(&normalized);
    for line in body.split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line.trim_end_matches('\r'));
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// A header value: as is when it is ASCII, else RFC 2047 encoded words of
/// at most 45 bytes each, folded onto continuation lines.
fn header_text(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// The message (headers and body, LF line ends) for `to`.
pub fn compose(
    notification: &Notification,
    from: &EmailAddress,
    to: &EmailAddress,
    now: OffsetDateTime,
) -> String {
    let domain = from
        .as_str()
        .rsplit_once('@')
        .map_or("gatehouse.invalid", |(_, d)| d);
    let date = now
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] +0000"
        ))
        .unwrap_or_default();
    let body = body_text(notification);
    let long_lines = body.lines().any(|l| l.len() > 998);
    let (encoding, body) = if body.is_ascii() && !long_lines {
        ("7bit", body)
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        ("base64", lines.join("\n"))
    };
    format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {subject}\nDate: {date}\nMessage-ID: <{id}@{domain}>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: {encoding}\nX-Gatehouse-Notification: {id}\n\n{body}\n",
        subject = header_text(&notification.subject),
        id = notification.id,
    )
}

/// What the reviewer reads.
fn body_text(n: &Notification) -> String {
    let d = &n.detail;
    let text = |key: &str| {
        d.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_owned()
    };
    let params = d
        .get("params")
        .and_then(|p| serde_json::to_string_pretty(p).ok())
        .unwrap_or_else(|| "{}".into());
    let rollback = match d
        .get("rollback")
        .and_then(|r| r.get("path"))
        .and_then(|p| p.as_str())
    {
        Some(path) => format!("If it should not have happened, ask for a rollback:\n  POST {path}"),
        None => "This step has no automatic compensation: undo it by hand if needed.".to_owned(),
    };
    let tenant = d
        .get("tenant")
        .and_then(|v| v.as_str())
        .unwrap_or("(none yet)");
    format!(
        "Gatehouse ran a step that asks for your review (gate L1).\n\nStep:      {} ({})\nAction:    {}\nWorkflow:  {} ({})\nTenant:    {tenant}\n\nParameters:\n{params}\n\n{rollback}\n\nNotification {}\n",
        text("step_title"),
        n.step_id,
        text("action"),
        text("template"),
        n.instance_id,
        n.id,
    )
}

/// Sends e-mail through one SMTP server.
#[derive(Debug, Clone)]
pub struct SmtpChannel {
    host: String,
    port: u16,
    from: EmailAddress,
    timeout: Duration,
}

impl SmtpChannel {
    /// A channel through `host:port`, sending as `from`; one message may
    /// take at most `timeout`.
    pub fn new(host: &str, port: u16, from: EmailAddress, timeout: Duration) -> Self {
        Self {
            host: host.to_owned(),
            port,
            from,
            timeout,
        }
    }
}

/// A failed step of the transaction.
fn refused(command: &str, reply: &Reply) -> DeliveryError {
    let message = format!("the SMTP server answered `{reply}` to {command}");
    if (400..500).contains(&reply.code) {
        DeliveryError::retryable(message)
    } else if reply.code >= 500 {
        DeliveryError::permanent(message)
    } else {
        DeliveryError::retryable(format!("{message} (unexpected)"))
    }
}

async fn command<S: AsyncBufRead + AsyncWrite + Unpin>(
    stream: &mut S,
    line: &str,
    name: &str,
    expect: &[u16],
) -> Result<Reply, DeliveryError> {
    stream
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| DeliveryError::retryable(format!("sending {name}: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| DeliveryError::retryable(format!("sending {name}: {e}")))?;
    let reply = read_reply(stream)
        .await
        .map_err(|e| DeliveryError::retryable(format!("after {name}: {e}")))?;
    if expect.contains(&reply.code) {
        Ok(reply)
    } else {
        Err(refused(name, &reply))
    }
}

impl SmtpChannel {
    async fn transaction(&self, to: &EmailAddress, message: &str) -> Result<(), DeliveryError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                DeliveryError::retryable(format!(
                    "could not connect to the SMTP server {}:{}: {e}",
                    self.host, self.port
                ))
            })?;
        let local = tcp
            .local_addr()
            .map(|a| a.ip())
            .map_err(|e| DeliveryError::retryable(format!("SMTP connection: {e}")))?;
        let mut stream = BufReader::new(tcp);
        let greeting = read_reply(&mut stream)
            .await
            .map_err(|e| DeliveryError::retryable(format!("SMTP greeting: {e}")))?;
        if greeting.code != 220 {
            return Err(refused("the connection", &greeting));
        }
        let helo_name = match local {
            std::net::IpAddr::V4(ip) => format!("[{ip}]"),
            std::net::IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
        };
        match command(&mut stream, &format!("EHLO {helo_name}"), "EHLO", &[250]).await {
            Ok(_) => {}
            // An old server without ESMTP.
            Err(DeliveryError::Permanent { .. }) => {
                command(&mut stream, &format!("HELO {helo_name}"), "HELO", &[250]).await?;
            }
            Err(err) => return Err(err),
        }
        command(
            &mut stream,
            &format!("MAIL FROM:<{}>", self.from),
            "MAIL FROM",
            &[250],
        )
        .await?;
        command(
            &mut stream,
            &format!("RCPT TO:<{to}>"),
            "RCPT TO",
            &[250, 251],
        )
        .await?;
        command(&mut stream, "DATA", "DATA", &[354]).await?;
        stream
            .write_all(dot_stuff(message).as_bytes())
            .await
            .map_err(|e| DeliveryError::retryable(format!("sending the message: {e}")))?;
        stream
            .flush()
            .await
            .map_err(|e| DeliveryError::retryable(format!("sending the message: {e}")))?;
        let accepted = read_reply(&mut stream)
            .await
            .map_err(|e| DeliveryError::retryable(format!("after the message: {e}")))?;
        if accepted.code != 250 {
            return Err(refused("the message", &accepted));
        }
        // The message is accepted; a failed QUIT changes nothing.
        let _ = command(&mut stream, "QUIT", "QUIT", &[221]).await;
        Ok(())
    }
}

#[async_trait]
impl Channel for SmtpChannel {
    fn name(&self) -> &'static str {
        "email"
    }

    async fn send(
        &self,
        notification: &Notification,
        recipient: Option<&EmailAddress>,
        now: OffsetDateTime,
    ) -> Result<(), DeliveryError> {
        let Some(to) = recipient else {
            return Err(DeliveryError::permanent(
                "no reviewer address: the step names no `reviewer` and notify_default_reviewer is not set",
            ));
        };
        let message = compose(notification, &self.from, to, now);
        match tokio::time::timeout(self.timeout, self.transaction(to, &message)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::retryable(format!(
                "the SMTP transaction timed out after {:?}",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multi_line_replies_are_read_whole() {
        let mut input: &[u8] = b"250-sink.example\r\n250-8BITMIME\r\n250 SIZE 1000\r\n220 next\r\n";
        let reply = read_reply(&mut input).await.unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, ["sink.example", "8BITMIME", "SIZE 1000"]);
        assert_eq!(read_reply(&mut input).await.unwrap().code, 220);
        assert!(read_reply(&mut input).await.unwrap_err().contains("closed"));
    }

    #[tokio::test]
    async fn malformed_replies_are_errors_that_quote_them() {
        for (bad, says) in [
            (&b"hello\r\n"[..], "not an SMTP reply"),
            (b"25 x\r\n", "not an SMTP reply"),
            (b"250x\r\n", "space or `-`"),
            (b"250-a\r\n251 b\r\n", "changed its code"),
            (b"250-a\r\n", "closed"),
            (b"999 x\r\n", "not an SMTP reply"),
        ] {
            let mut input = bad;
            let err = read_reply(&mut input).await.unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        assert_eq!(parse_reply_line("221\r\n"), Ok((221, true, "")));
        assert_eq!(
            parse_reply_line("550 5.1.1 no such user\r\n"),
            Ok((550, true, "5.1.1 no such user"))
        );
    }

    #[tokio::test]
    async fn an_endless_line_is_refused() {
        let long = vec![b'2'; 10_000];
        let mut input: &[u8] = &long;
        let err = read_reply(&mut input).await.unwrap_err();
        assert!(err.contains("longer than"), "{err}");
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed_and_the_data_is_terminated() {
        assert_eq!(
            dot_stuff("a\n.b\n..c\nd."),
            "a\r\n..b\r\n...c\r\nd.\r\n.\r\n"
        );
        assert_eq!(dot_stuff(".\r\nx\r\n"), "..\r\nx\r\n.\r\n");
        assert_eq!(dot_stuff(""), "\r\n.\r\n");
    }

    #[test]
    fn non_ascii_subjects_are_encoded_words_on_folded_lines() {
        assert_eq!(header_text("plain"), "plain");
        let encoded = header_text(&"Überprüfung ".repeat(10));
        assert!(encoded.is_ascii());
        assert!(encoded.starts_with("=?UTF-8?B?"));
        assert!(encoded.split("\r\n ").all(|w| w.len() <= 75), "{encoded}");
    }

    #[tokio::test]
    async fn replies_decide_whether_to_retry() {
        let reply = |code| Reply {
            code,
            lines: vec!["x".into()],
        };
        assert!(matches!(
            refused("RCPT TO", &reply(451)),
            DeliveryError::Retryable { .. }
        ));
        let err = refused("RCPT TO", &reply(550));
        assert!(matches!(err, DeliveryError::Permanent { .. }));
        assert!(err.to_string().contains("`550 x` to RCPT TO"), "{err}");
    }
}
