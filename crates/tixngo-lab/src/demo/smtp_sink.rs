//! A small SMTP receiver for the demo: accepts every message on 127.0.0.1, keeps it in memory
//! and writes it as `NNN.eml` to a directory, so the demo can show the notifier's e-mails without
//! a mail server. Plain SMTP only (no TLS, no AUTH): it is a local sink, never a relay.
//!
//! Commands: EHLO/HELO, MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, QUIT; lines are
//! bounded to [`MAX_LINE`] bytes, messages to [`MAX_MESSAGE`], recipients to [`MAX_RECIPIENTS`],
//! and an idle client is dropped after [`IDLE_TIMEOUT`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest command or text line accepted, CRLF included (RFC 5321 text lines: 1000).
pub const MAX_LINE: usize = 1000;
/// Largest message accepted by DATA (announced with the SIZE extension).
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// Most recipients of one message.
pub const MAX_RECIPIENTS: usize = 100;
/// How long a client may stay silent before it is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most clients served at once.
const MAX_CLIENTS: usize = 16;

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), empty for a null sender.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), as given.
    pub recipients: Vec<String>,
    /// The `Subject:` header, unfolded (as sent: encoded words are left encoded).
    pub subject: String,
    /// The message as received, dot-unstuffed, CRLF line ends.
    pub data: Vec<u8>,
    /// Where it was written, when the sink has a directory.
    pub path: Option<PathBuf>,
}

/// A running sink; dropping it (or [`SmtpSink::shutdown`]) stops accepting clients.
#[derive(Debug)]
pub struct SmtpSink {
    /// The address it listens on (port 0 resolved).
    pub addr: SocketAddr,
    /// Where messages are written, if anywhere.
    pub maildir: Option<PathBuf>,
    /// Every accepted message, in order.
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    /// Stops the accept loop and every client.
    stop: CancellationToken,
    /// The accept loop.
    task: Option<JoinHandle<()>>,
}

impl SmtpSink {
    /// Listens on `listen` (port 0 picks a free port) and, when `maildir` is given, creates it
    /// and writes each message there.
    pub async fn start(listen: SocketAddr, maildir: Option<PathBuf>) -> std::io::Result<Self> {
        if let Some(dir) = &maildir {
            tokio::fs::create_dir_all(dir).await?;
        }
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let shared = Shared {
            received: received.clone(),
            maildir: maildir.clone(),
            hostname: format!("tixngo-demo-sink.{}", addr.ip()),
        };
        let task = tokio::spawn(accept_loop(listener, Arc::new(shared), stop.clone()));
        Ok(Self {
            addr,
            maildir,
            received,
            stop,
            task: Some(task),
        })
    }

    /// Every message accepted so far.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many messages were accepted so far.
    pub fn count(&self) -> usize {
        self.received.lock().map(|r| r.len()).unwrap_or_default()
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What every client task shares.
struct Shared {
    /// Accepted messages.
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    /// Where to write them.
    maildir: Option<PathBuf>,
    /// Our name in the greeting.
    hostname: String,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                result = serve(stream, &shared) => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "demo SMTP sink: client dropped");
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Why a client session ended early.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The client stayed silent too long.
    #[error("client idle for {0:?}")]
    Idle(Duration),
    /// The client sent a line longer than [`MAX_LINE`].
    #[error("line too long")]
    LineTooLong,
}

/// One line read with a bound; `None` at end of stream.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> Result<Option<()>, SessionError> {
    buf.clear();
    let read = tokio::time::timeout(
        IDLE_TIMEOUT,
        (&mut *reader).take(MAX_LINE as u64).read_until(b'\n', buf),
    )
    .await
    .map_err(|_| SessionError::Idle(IDLE_TIMEOUT))??;
    if read == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(SessionError::LineTooLong);
    }
    Ok(Some(()))
}

/// The state of one SMTP transaction.
#[derive(Default)]
struct Envelope {
    /// After a successful EHLO/HELO.
    greeted: bool,
    /// `MAIL FROM`, once given.
    from: Option<String>,
    /// `RCPT TO`s so far.
    recipients: Vec<String>,
}

async fn serve(stream: TcpStream, shared: &Shared) -> Result<(), SessionError> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(256);
    let mut envelope = Envelope::default();
    write
        .write_all(format!("220 {} ESMTP tixngo-bridge demo sink\r\n", shared.hostname).as_bytes())
        .await?;
    loop {
        match read_line(&mut reader, &mut line).await {
            Ok(Some(())) => {}
            Ok(None) => return Ok(()),
            Err(SessionError::LineTooLong) => {
                write.write_all(b"500 5.5.2 line too long\r\n").await?;
                return Err(SessionError::LineTooLong);
            }
            Err(error) => return Err(error),
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                envelope = Envelope {
                    greeted: true,
                    ..Envelope::default()
                };
                format!(
                    "250-{}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n250 SIZE {MAX_MESSAGE}\r\n",
                    shared.hostname
                )
            }
            "HELO" => {
                envelope = Envelope {
                    greeted: true,
                    ..Envelope::default()
                };
                format!("250 {}\r\n", shared.hostname)
            }
            "MAIL" if !envelope.greeted => "503 5.5.1 EHLO first\r\n".into(),
            "MAIL" => match path_argument(rest, "FROM:") {
                Some(from) if envelope.from.is_none() => {
                    envelope.from = Some(from);
                    "250 2.1.0 OK\r\n".into()
                }
                Some(_) => "503 5.5.1 MAIL already given\r\n".into(),
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into(),
            },
            "RCPT" if envelope.from.is_none() => "503 5.5.1 MAIL first\r\n".into(),
            "RCPT" => match path_argument(rest, "TO:") {
                Some(_) if envelope.recipients.len() >= MAX_RECIPIENTS => {
                    "452 4.5.3 too many recipients\r\n".into()
                }
                Some(to) if !to.is_empty() => {
                    envelope.recipients.push(to);
                    "250 2.1.5 OK\r\n".into()
                }
                _ => "501 5.5.4 syntax: RCPT TO:<address>\r\n".into(),
            },
            "DATA" if envelope.recipients.is_empty() => "503 5.5.1 RCPT first\r\n".into(),
            "DATA" => {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                match read_data(&mut reader, &mut line).await? {
                    Some(data) => {
                        let from = envelope.from.take().unwrap_or_default();
                        let recipients = std::mem::take(&mut envelope.recipients);
                        let number = store(shared, from, recipients, data).await;
                        format!("250 2.0.0 OK queued as {number}\r\n")
                    }
                    None => {
                        envelope.from = None;
                        envelope.recipients.clear();
                        format!("552 5.3.4 message larger than {MAX_MESSAGE} bytes\r\n")
                    }
                }
            }
            "RSET" => {
                envelope.from = None;
                envelope.recipients.clear();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 command not implemented\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// `FROM:<a@b> PARAMS` → `a@b`; `None` when the keyword or the angle brackets are missing.
fn path_argument(rest: &str, keyword: &str) -> Option<String> {
    let rest = rest.trim_start();
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let path = rest[keyword.len()..].trim_start();
    let inner = path.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

/// The message after DATA, dot-unstuffed, up to the lone dot; `None` when it was too large (the
/// rest is read and dropped so the session can go on).
async fn read_data<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, SessionError> {
    let mut data = Vec::new();
    let mut too_large = false;
    loop {
        if read_line(reader, line).await?.is_none() {
            return Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if line.as_slice() == b".\r\n" || line.as_slice() == b".\n" {
            return Ok((!too_large).then_some(data));
        }
        let content = line.strip_prefix(b".").unwrap_or(line);
        if data.len() + content.len() > MAX_MESSAGE {
            too_large = true;
            data = Vec::new();
        }
        if !too_large {
            data.extend_from_slice(content);
        }
    }
}

/// Keeps the message and writes it out; returns its number (1-based).
async fn store(shared: &Shared, from: String, recipients: Vec<String>, data: Vec<u8>) -> usize {
    let subject = subject_of(&data);
    let number = shared.received.lock().map(|r| r.len() + 1).unwrap_or(1);
    let mut path = None;
    if let Some(dir) = &shared.maildir {
        let file = unique_path(dir, number);
        match tokio::fs::write(&file, &data).await {
            Ok(()) => path = Some(file),
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "demo SMTP sink: cannot write the e-mail")
            }
        }
    }
    let mail = ReceivedMail {
        from,
        recipients,
        subject,
        data,
        path,
    };
    match shared.received.lock() {
        Ok(mut received) => {
            received.push(mail);
            received.len()
        }
        Err(_) => number,
    }
}

fn unique_path(dir: &Path, number: usize) -> PathBuf {
    let mut n = number;
    loop {
        let candidate = dir.join(format!("{n:03}.eml"));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// The `Subject:` header of a raw message, unfolded; empty when there is none.
pub fn subject_of(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let mut subject: Option<String> = None;
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.is_empty() {
            break;
        }
        match &mut subject {
            Some(value) if line.starts_with([' ', '\t']) => {
                value.push(' ');
                value.push_str(line.trim());
            }
            Some(_) => break,
            None => {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("subject")
                {
                    subject = Some(value.trim().to_owned());
                }
            }
        }
    }
    subject.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_arguments() {
        assert_eq!(
            path_argument("FROM:<a@b.example> BODY=8BITMIME", "FROM:").as_deref(),
            Some("a@b.example")
        );
        assert_eq!(path_argument("from: <>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_argument("TO:a@b", "TO:"), None);
        assert_eq!(path_argument("", "TO:"), None);
    }

    #[test]
    fn subjects_are_unfolded() {
        let raw = b"From: x\r\nSubject: one\r\n two\r\nTo: y\r\n\r\nSubject: body\r\n";
        assert_eq!(subject_of(raw), "one two");
        assert_eq!(subject_of(b"From: x\r\n\r\nSubject: no\r\n"), "");
    }
}
