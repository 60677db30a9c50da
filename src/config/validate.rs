//! Validation: [`RawSettings`] to [`Settings`], every problem listed with the organization and
//! field it concerns.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;
use url::Url;

use super::secrets::resolve_secret;
use super::*;

impl RawSettings {
    /// Validates with the process environment for `api_key_env`.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        self.validate_with(|name| std::env::var(name).ok())
    }

    /// Validates, looking up `api_key_env` variables with `env`.
    pub fn validate_with(self, env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let mut push = |location: String, message: String| problems.push(Problem { location, message });

        check_amqp(&self.amqp, &mut push);
        check_topology(&self.topology, &mut push);
        check_worker(&self.worker, &mut push);
        if self.tixngo.request_timeout.is_zero() {
            push(
                "tixngo.request_timeout".into(),
                "must be greater than zero".into(),
            );
        }
        if !is_header_name(&self.tixngo.api_key_header) {
            push(
                "tixngo.api_key_header".into(),
                "is not a valid HTTP header name".into(),
            );
        }
        if let Some(path) = &self.tixngo.ca_file
            && let Err(message) = check_ca_file(path)
        {
            push("tixngo.ca_file".into(), message);
        }
        if self.interfaces.is_empty() {
            push(
                "interfaces".into(),
                "no interface configured: add one [[interfaces]] table per S-360 organization".into(),
            );
        }

        let mut interfaces = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for (index, raw) in self.interfaces.into_iter().enumerate() {
            let label = if raw.organization.trim().is_empty() {
                format!("interfaces[{index}]")
            } else {
                format!("interfaces[{}]", raw.organization)
            };
            if !raw.organization.trim().is_empty() && !seen.insert(raw.organization.trim().to_owned()) {
                push(
                    format!("{label}.organization"),
                    format!(
                        "organization {} has two interfaces; S-360 allows only one TIXnGO interface \
                         per organization (with two, the cancelled and controlled ticket pushes stop working)",
                        raw.organization
                    ),
                );
                continue;
            }
            if let Some(interface) = check_interface(raw, &label, &self.tixngo, &env, &mut push) {
                interfaces.insert(interface.organization.clone(), interface);
            }
        }

        check_status_sync(&self.status_sync, &mut push);
        let notifier = check_notifier(self.notifier, &env, &mut push);

        if problems.is_empty()
            && let Some(notifier) = notifier
        {
            Ok(Settings {
                amqp: self.amqp,
                topology: self.topology,
                worker: self.worker,
                tixngo: self.tixngo,
                http: self.http,
                status_sync: self.status_sync,
                notifier,
                interfaces,
            })
        } else {
            Err(ConfigError { problems })
        }
    }
}

fn check_amqp(amqp: &AmqpSettings, push: &mut impl FnMut(String, String)) {
    match Url::parse(amqp.url.expose_secret()) {
        Ok(url) if matches!(url.scheme(), "amqp" | "amqps") => {}
        Ok(url) => push(
            "amqp.url".into(),
            format!("scheme {} is not amqp or amqps", url.scheme()),
        ),
        // The parser's message never echoes the URL, so the password cannot leak through it.
        Err(e) => push("amqp.url".into(), format!("not a valid URL: {e}")),
    }
    check_amqp_tls(amqp, push);
    if amqp.reconnect_min_delay.is_zero() || amqp.reconnect_min_delay > amqp.reconnect_max_delay {
        push(
            "amqp.reconnect_min_delay".into(),
            "must be above zero and at most amqp.reconnect_max_delay".into(),
        );
    }
}

fn check_amqp_tls(amqp: &AmqpSettings, push: &mut impl FnMut(String, String)) {
    let tls = &amqp.tls;
    if *tls == AmqpTlsSettings::default() {
        return;
    }
    if Url::parse(amqp.url.expose_secret()).is_ok_and(|url| url.scheme() != "amqps") {
        push(
            "amqp.tls".into(),
            "is only used with an amqps:// URL; change amqp.url or remove [amqp.tls]".into(),
        );
    }
    if let Some(path) = &tls.ca_file
        && let Err(message) = check_ca_file(path)
    {
        push("amqp.tls.ca_file".into(), message);
    }
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            if let Err(message) = check_ca_file(cert) {
                push("amqp.tls.client_cert_file".into(), message);
            }
            if let Err(message) = crate::tls::read_private_key(key) {
                push("amqp.tls.client_key_file".into(), message.to_string());
            }
        }
        (None, None) => {}
        _ => push(
            "amqp.tls.client_cert_file".into(),
            "client_cert_file and client_key_file go together".into(),
        ),
    }
}

/// A PEM file that exists and holds at least one certificate.
fn check_ca_file(path: &Path) -> Result<(), String> {
    crate::tls::read_certificates(path)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn check_topology(topology: &TopologySettings, push: &mut impl FnMut(String, String)) {
    for (field, value) in [
        ("tickets_exchange", &topology.tickets_exchange),
        ("events_exchange", &topology.events_exchange),
        ("dead_letter_exchange", &topology.dead_letter_exchange),
        ("queue_prefix", &topology.queue_prefix),
    ] {
        if value.is_empty() || value.len() > 200 || value.starts_with("amq.") {
            push(
                format!("topology.{field}"),
                "must be 1 to 200 characters and not start with the reserved `amq.`".into(),
            );
        }
    }
    let tiers = topology.tiers();
    if tiers.is_empty() {
        push(
            "topology.retry_tiers".into(),
            "at least one delay tier is needed".into(),
        );
    }
    if tiers.windows(2).any(|w| w[0] >= w[1]) || tiers.iter().any(|t| t.as_millis() == 0) {
        push(
            "topology.retry_tiers".into(),
            "tiers must be at least 1 ms and strictly increasing, e.g. [\"10s\", \"1m\", \"10m\", \"1h\"]"
                .into(),
        );
    }
    if topology.delivery_limit == 0 {
        push("topology.delivery_limit".into(), "must be at least 1".into());
    }
}

fn check_worker(worker: &WorkerSettings, push: &mut impl FnMut(String, String)) {
    if worker.prefetch == 0 {
        push(
            "worker.prefetch".into(),
            "must be at least 1 (0 would mean unlimited)".into(),
        );
    }
    if worker.max_in_flight.is_some() {
        push(
            "worker.max_in_flight".into(),
            "was replaced by worker.max_concurrent_calls (TIXnGO calls per organization, each up \
             to batch_max tickets) and worker.max_total_calls (per process): remove it"
                .into(),
        );
    }
    if worker.max_concurrent_calls == 0 {
        push("worker.max_concurrent_calls".into(), "must be at least 1".into());
    }
    if worker.max_total_calls < worker.max_concurrent_calls {
        push(
            "worker.max_total_calls".into(),
            "must be at least worker.max_concurrent_calls (one organization could otherwise take \
             every call of the process)"
                .into(),
        );
    }
    if worker.in_process_max_delay > worker.max_in_process_wait {
        push(
            "worker.in_process_max_delay".into(),
            "must be at most worker.max_in_process_wait".into(),
        );
    }
    if worker.batch_max == 0 || worker.batch_max > 1000 {
        push("worker.batch_max".into(), "must be between 1 and 1000".into());
    }
    if worker.max_message_bytes < 1024 {
        push("worker.max_message_bytes".into(), "must be at least 1024".into());
    }
    if worker.in_process_min_delay > worker.in_process_max_delay {
        push(
            "worker.in_process_min_delay".into(),
            "must be at most worker.in_process_max_delay".into(),
        );
    }
}

fn check_status_sync(sync: &StatusSyncSettings, push: &mut impl FnMut(String, String)) {
    if sync.interval.is_zero() {
        push("status_sync.interval".into(), "must be greater than zero".into());
    }
    if sync.page_size == 0 || sync.page_size > 10_000 {
        push(
            "status_sync.page_size".into(),
            "must be between 1 and 10000".into(),
        );
    }
    if sync.max_pages_per_round == 0 {
        push(
            "status_sync.max_pages_per_round".into(),
            "must be at least 1".into(),
        );
    }
    if sync.error_min_delay.is_zero() || sync.error_min_delay > sync.error_max_delay {
        push(
            "status_sync.error_min_delay".into(),
            "must be above zero and at most status_sync.error_max_delay".into(),
        );
    }
}

fn check_notifier(
    raw: RawNotifierSettings,
    env: &impl Fn(&str) -> Option<String>,
    push: &mut impl FnMut(String, String),
) -> Option<NotifierSettings> {
    let mut failed = false;
    let mut fail = |field: &str, message: String| {
        failed = true;
        push(format!("notifier.{field}"), message)
    };
    if raw.window.is_zero() {
        fail("window", "must be greater than zero".into());
    }
    if raw.max_listed == 0 {
        fail("max_listed", "must be at least 1".into());
    }
    if raw.retry_min_delay.is_zero() || raw.retry_min_delay > raw.retry_max_delay {
        fail(
            "retry_min_delay",
            "must be above zero and at most notifier.retry_max_delay".into(),
        );
    }
    for address in &raw.fallback_emails {
        if !is_email(address) {
            fail(
                "fallback_emails",
                format!("{address:?} is not a valid e-mail address"),
            );
        }
    }
    if raw.smtp.is_some() && raw.fallback_emails.is_empty() {
        fail(
            "fallback_emails",
            "required with [notifier.smtp]: who is told about dead letters of no known organization".into(),
        );
    }
    let smtp = raw.smtp.map(|smtp| {
        if smtp.host.trim().is_empty() {
            fail("smtp.host", "is required".into());
        }
        if !is_mailbox(&smtp.from) {
            fail(
                "smtp.from",
                "must be an address or `Name <address>`, e.g. `TIXnGO bridge <bridge@example.com>`".into(),
            );
        }
        let password = match resolve_secret(
            "password",
            &smtp.password,
            &smtp.password_env,
            &smtp.password_file,
            env,
        ) {
            Ok(password) => password,
            Err((field, message)) => {
                fail(&format!("smtp.{field}"), message);
                None
            }
        };
        let credentials = match (smtp.username, password) {
            (Some(username), Some(password)) => Some(SmtpCredentials { username, password }),
            (None, None) => None,
            _ => {
                fail("smtp.username", "username and password go together".into());
                None
            }
        };
        if let Some(ca) = &smtp.ca_file
            && let Err(message) = check_ca_file(ca)
        {
            fail("smtp.ca_file", message);
        }
        SmtpSettings {
            port: smtp.port.unwrap_or(match smtp.security {
                SmtpSecurity::None => 25,
                SmtpSecurity::Starttls => 587,
                SmtpSecurity::Tls => 465,
            }),
            host: smtp.host.trim().to_owned(),
            security: smtp.security,
            credentials,
            from: smtp.from,
            timeout: smtp.timeout.unwrap_or(Duration::from_secs(10)),
            ca_file: smtp.ca_file,
        }
    });
    if failed {
        return None;
    }
    Some(NotifierSettings {
        enabled: raw.enabled,
        window: raw.window,
        fallback_emails: raw.fallback_emails,
        max_listed: raw.max_listed,
        retry_min_delay: raw.retry_min_delay,
        retry_max_delay: raw.retry_max_delay,
        smtp,
    })
}

/// `address` or `Name <address>`, with nothing that could start a new header line.
fn is_mailbox(text: &str) -> bool {
    if text.chars().any(char::is_control) {
        return false;
    }
    match text.rsplit_once('<') {
        Some((_, rest)) => rest.strip_suffix('>').is_some_and(is_email),
        None => is_email(text.trim()),
    }
}

fn check_interface(
    raw: RawInterface,
    label: &str,
    tixngo: &TixngoSettings,
    env: &impl Fn(&str) -> Option<String>,
    push: &mut impl FnMut(String, String),
) -> Option<Interface> {
    let mut failed = false;
    let mut fail = |field: &str, message: String| {
        failed = true;
        push(format!("{label}.{field}"), message)
    };

    let organization = raw.organization.trim().to_owned();
    if organization.is_empty() {
        fail("organization", "is required (the S-360 organization code)".into());
    } else if organization.len() > 64
        || !organization
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        fail(
            "organization",
            "must be 1 to 64 characters among A-Z a-z 0-9 _ - .".into(),
        );
    }

    let kind = match raw.kind {
        Some(kind) => kind,
        None => {
            fail("kind", "is required: `tixngo` or `tixngo_with_template`".into());
            InterfaceKind::Tixngo
        }
    };
    match (kind, &raw.template) {
        (InterfaceKind::TixngoWithTemplate, None) => fail(
            "template",
            "is required for kind `tixngo_with_template` (path to the ticket template)".into(),
        ),
        (InterfaceKind::TixngoWithTemplate, Some(path)) if !path.is_file() => fail(
            "template",
            format!("template file {} does not exist", path.display()),
        ),
        (InterfaceKind::TixngoWithTemplate, Some(path)) => {
            if let Err(error) = crate::tixngo::template::TicketTemplate::load(path) {
                fail("template", error.to_string());
            }
        }
        (InterfaceKind::Tixngo, Some(_)) => fail(
            "template",
            "is only used with kind `tixngo_with_template`; remove it or change the kind".into(),
        ),
        _ => {}
    }

    let url = match check_url(&raw.url, raw.allow_insecure_http) {
        Ok(url) => Some(url),
        Err(message) => {
            fail("url", message);
            None
        }
    };

    let api_key = match resolve_secret("api_key", &raw.api_key, &raw.api_key_env, &raw.api_key_file, env) {
        Ok(Some(key)) => Some(key),
        Ok(None) => {
            fail(
                "api_key",
                "missing: set one of api_key, api_key_env or api_key_file (the TIXnGO API key)".into(),
            );
            None
        }
        Err((field, message)) => {
            fail(&field, message);
            None
        }
    };
    if let Some(key) = &api_key
        && !key.expose_secret().chars().all(|c| c.is_ascii_graphic())
    {
        fail(
            "api_key",
            "contains characters that cannot be sent in an HTTP header".into(),
        );
    }

    let api_key_header = raw
        .api_key_header
        .clone()
        .unwrap_or_else(|| tixngo.api_key_header.clone());
    if !is_header_name(&api_key_header) {
        fail("api_key_header", "is not a valid HTTP header name".into());
    }

    let mut notification_emails = Vec::new();
    for address in raw.notification_emails.split(',').map(str::trim) {
        if address.is_empty() {
            continue;
        }
        if is_email(address) {
            notification_emails.push(address.to_owned());
        } else {
            fail(
                "notification_emails",
                format!("{address:?} is not a valid e-mail address"),
            );
        }
    }

    if let Some(rate) = raw.rate_limit
        && !(rate.is_finite() && (0.01..=100_000.0).contains(&rate))
    {
        fail(
            "rate_limit",
            "must be between 0.01 and 100000 TIXnGO calls per second".into(),
        );
    }

    if let Some(path) = &raw.ca_file
        && let Err(message) = check_ca_file(path)
    {
        fail("ca_file", message);
    }
    let ca_file = raw.ca_file.clone().or_else(|| tixngo.ca_file.clone());

    if failed {
        return None;
    }
    Some(Interface {
        organization,
        kind,
        template: raw.template,
        url: url?,
        username: raw.username,
        api_key: api_key?,
        api_key_header,
        notification_emails,
        rate_limit: raw.rate_limit,
        ca_file,
    })
}

fn check_url(raw: &str, allow_insecure_http: bool) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a valid URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; put the API key in api_key_env or api_key_file".into());
    }
    if !url.path().trim_end_matches('/').ends_with(REQUIRED_URL_SUFFIX) || url.path().ends_with('/') {
        return Err(format!(
            "{} must end with `{REQUIRED_URL_SUFFIX}` (S-360's rule for TIXnGO interface URLs)",
            url.as_str()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query string or fragment".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "plain http to {} would send the API key unencrypted; use https, or set allow_insecure_http = true",
            url.host_str().unwrap_or("?")
        )),
        other => Err(format!("scheme {other} is not http or https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A deliberately plain check (one `@`, a dotted domain, no spaces or control characters): the
/// SMTP server has the last word, this catches typos and header injection at start-up.
pub fn is_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && address.chars().all(|c| {
            c.is_ascii_graphic() && !matches!(c, '<' | '>' | ',' | ';' | '"' | '(' | ')' | '[' | ']' | '\\')
        })
}
