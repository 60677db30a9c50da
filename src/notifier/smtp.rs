//! The SMTP side of the notifier: one pooled lettre transport built from the configuration.

use lettre::address::Envelope;
use lettre::message::{Mailbox, Message, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{SmtpSecurity, SmtpSettings};

/// Why an e-mail was not accepted. Never carries the password: lettre's errors do not echo it.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The transport could not be built (bad CA file, TLS set-up).
    #[error("cannot set up SMTP to {host}: {detail}")]
    Setup {
        /// Server host.
        host: String,
        /// What failed.
        detail: String,
    },
    /// An address did not parse (configuration checks should have caught it).
    #[error("invalid address {address:?}")]
    Address {
        /// The address.
        address: String,
    },
    /// The message could not be built.
    #[error("cannot build the e-mail: {0}")]
    Build(String),
    /// The server refused the message, or could not be reached.
    #[error("SMTP server {host}:{port} did not accept the e-mail")]
    Send {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// What lettre reported.
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

/// An e-mail ready to send.
#[derive(Debug, Clone)]
pub struct Email {
    /// Recipients.
    pub to: Vec<String>,
    /// Subject, single line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body (escaped).
    pub html: String,
}

/// Sends e-mails through the configured server.
pub struct Mailer {
    /// Pooled transport.
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Sender mailbox.
    from: Mailbox,
    /// For error messages.
    host: String,
    /// For error messages.
    port: u16,
}

impl Mailer {
    /// Builds the transport; nothing is sent or connected yet.
    pub fn new(settings: &SmtpSettings) -> Result<Self, MailError> {
        let setup = |detail: String| MailError::Setup {
            host: settings.host.clone(),
            detail,
        };
        let from: Mailbox = settings.from.parse().map_err(|_| MailError::Address {
            address: settings.from.clone(),
        })?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
            .port(settings.port)
            .timeout(Some(settings.timeout));
        if settings.security != SmtpSecurity::None {
            let mut tls = TlsParameters::builder(settings.host.clone());
            if let Some(path) = &settings.ca_file {
                let pem =
                    std::fs::read(path).map_err(|e| setup(format!("cannot read {}: {e}", path.display())))?;
                let certificate =
                    Certificate::from_pem(&pem).map_err(|e| setup(format!("{}: {e}", path.display())))?;
                tls = tls.add_root_certificate(certificate);
            }
            let parameters = tls.build_rustls().map_err(|e| setup(e.to_string()))?;
            builder = builder.tls(match settings.security {
                SmtpSecurity::Tls => Tls::Wrapper(parameters),
                _ => Tls::Required(parameters),
            });
        }
        if let Some(login) = &settings.credentials {
            builder = builder.credentials(Credentials::new(
                login.username.clone(),
                login.password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            host: settings.host.clone(),
            port: settings.port,
        })
    }

    /// Sends `email` to each recipient in its own SMTP transaction (one envelope recipient
    /// each, the same `To:` header), so that a server refusing one recipient (`550` to its
    /// `RCPT TO`) does not keep the digest from the others. `Err` only when the e-mail cannot
    /// be built; each recipient's outcome is in the report.
    pub async fn send(&self, email: &Email) -> Result<SendReport, MailError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.as_str());
        let mut envelopes = Vec::with_capacity(email.to.len());
        for address in &email.to {
            let mailbox: Mailbox = address.parse().map_err(|_| MailError::Address {
                address: address.clone(),
            })?;
            let envelope = Envelope::new(Some(self.from.email.clone()), vec![mailbox.email.clone()])
                .map_err(|e| MailError::Build(e.to_string()))?;
            envelopes.push(envelope);
            builder = builder.to(mailbox);
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| MailError::Build(e.to_string()))?;
        let raw = message.formatted();
        let mut report = SendReport::default();
        for (index, envelope) in envelopes.iter().enumerate() {
            match self.transport.send_raw(envelope, &raw).await {
                Ok(_) => report.accepted += 1,
                Err(source) => report.refused.push(Refused {
                    index,
                    permanent: source.is_permanent(),
                    code: source.status().map(|code| code.to_string()),
                    error: MailError::Send {
                        host: self.host.clone(),
                        port: self.port,
                        source,
                    },
                }),
            }
        }
        Ok(report)
    }
}

/// What the server did with each recipient of one e-mail.
#[derive(Debug, Default)]
pub struct SendReport {
    /// Recipients the server accepted the e-mail for.
    pub accepted: usize,
    /// Recipients it did not, in `Email::to` order.
    pub refused: Vec<Refused>,
}

impl SendReport {
    /// Nobody got it, and at least one failure may pass (an outage, a `4xx`): retry later.
    pub fn retry_later(&self) -> bool {
        self.accepted == 0 && self.refused.iter().any(|r| !r.permanent)
    }
}

/// One recipient the e-mail did not reach.
#[derive(Debug)]
pub struct Refused {
    /// Its position in `Email::to`: logs name `notification_emails[index]`, not the address.
    pub index: usize,
    /// A `5xx` answer: retrying the same recipient cannot help (an unknown mailbox, a policy).
    pub permanent: bool,
    /// The SMTP reply code, when the server answered one.
    pub code: Option<String>,
    /// What failed.
    pub error: MailError,
}
