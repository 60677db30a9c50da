//! Transport security over real TLS handshakes, with certificates generated here (rcgen): AMQP
//! through a TLS-terminating proxy in front of the local RabbitMQ (optionally requiring a client
//! certificate), TIXnGO served by the simulator over HTTPS, SMTP with STARTTLS and implicit TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretString;
use serde_json::json;
use tixngo_bridge::app::Part;
use tixngo_bridge::broker::{self, BrokerError};
use tixngo_bridge::config::{self, AmqpSettings, AmqpTlsSettings, Settings};
use tixngo_bridge::flows::Flow;
use tixngo_bridge::notifier::smtp::{Email, Mailer};
use tixngo_bridge::orgs::Organizations;
use tixngo_bridge::tixngo::{CallError, ErrorClass, TicketDocument, mapping};
use tixngo_sim::{self as sim, RunningSim, SimConfig, SimTls};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::*;

/// A test CA, a server certificate for localhost/127.0.0.1 and a client certificate it signed,
/// and an unrelated CA, all as PEM files in a temporary directory.
struct Pki {
    /// Holds ca.pem, other-ca.pem, server.pem/.key and client.pem/.key; removed when dropped.
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("tixngo-bridge test CA");
        let other = new_ca("some other CA");
        let server_key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &ca).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "tixngo-bridge");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = params.signed_by(&client_key, &ca).unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());
        write("other-ca.pem", other.pem());
        write("server.pem", server.pem());
        write("server.key", server_key.serialize_pem());
        write("client.pem", client.pem());
        write("client.key", client_key.serialize_pem());
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn sim_tls(&self) -> SimTls {
        SimTls::from_pem(&self.pem("server.pem"), &self.pem("server.key")).unwrap()
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A TLS-terminating proxy on 127.0.0.1 (port 0) in front of the local RabbitMQ, as a TLS
/// listener of RabbitMQ's own would be; stopped when dropped.
struct TlsProxy {
    /// Where the proxy listens on 127.0.0.1.
    port: u16,
    /// Handshakes completed (client certificate checked when required).
    handshakes: Arc<AtomicUsize>,
    /// The accept loop, aborted when dropped.
    task: JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsProxy {
    async fn start(pki: &Pki, require_client_certificate: bool) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.path("server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_certificate {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(chain, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = amqp_base();
        let upstream = format!(
            "{}:{}",
            base.host_str().unwrap_or("127.0.0.1"),
            base.port().unwrap_or(5672)
        );
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counter = handshakes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut broker) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                });
            }
        });
        Self {
            port,
            handshakes,
            task,
        }
    }
}

fn amqps_settings(url: &str, tls: AmqpTlsSettings) -> AmqpSettings {
    AmqpSettings {
        url: SecretString::from(url.to_owned()),
        tls,
        ..AmqpSettings::default()
    }
}

fn amqps_url(port: u16, vhost: &str) -> String {
    let base = amqp_base();
    format!(
        "amqps://{}:{}@localhost:{port}/{vhost}",
        base.username(),
        base.password().unwrap_or("guest")
    )
}

/// Connects with `settings` and expects a clear error in time, not a hang; returns its text.
async fn connect_error(settings: &AmqpSettings) -> String {
    let result = tokio::time::timeout(Duration::from_secs(60), broker::connect(settings, "tls-test"))
        .await
        .expect("connect gave up by itself (no hang)");
    match result {
        Ok(_) => panic!("connected although the TLS set-up is wrong"),
        Err(error @ BrokerError::Timeout { .. }) => panic!("a timeout instead of a clear error: {error}"),
        Err(error) => {
            let text = tixngo_bridge::telemetry::chain(&error);
            eprintln!("connect error: {text}");
            text
        }
    }
}

async fn tls_sim() -> (RunningSim, Pki) {
    let pki = Pki::new();
    let mut config = SimConfig::default();
    for (org, key) in ORGS {
        config = config.with_tenant(org, key);
    }
    let sim = sim::spawn_tls(config, "127.0.0.1:0".parse().unwrap(), pki.sim_tls())
        .await
        .unwrap();
    (sim, pki)
}

fn toml_path(path: &Path) -> String {
    path.display().to_string().replace('\\', "\\\\")
}

#[tokio::test]
async fn a_ticket_flows_end_to_end_over_amqps_with_a_client_certificate_and_https_to_tixngo() {
    let (sim, pki) = tls_sim().await;
    assert!(sim.base_url("ACME").starts_with("https://"));
    let proxy = TlsProxy::start(&pki, true).await;
    let port = proxy.port;
    let tls_table = format!(
        "tls = {{ ca_file = \"{}\", client_cert_file = \"{}\", client_key_file = \"{}\" }}",
        toml_path(&pki.path("ca.pem")),
        toml_path(&pki.path("client.pem")),
        toml_path(&pki.path("client.key")),
    );
    let extra = format!("[tixngo]\nca_file = \"{}\"\n", toml_path(&pki.path("ca.pem")));
    let mut app = spawn_app_on(sim, &extra, vec![Part::Flow(Flow::Inject)], |toml| {
        // The bridge (not the test's own connection) goes through the TLS proxy.
        toml.lines()
            .map(|line| match line.strip_prefix("url = \"amqp://") {
                Some(rest) => {
                    let vhost = rest.rsplit('/').next().unwrap_or_default().trim_end_matches('"');
                    format!("url = \"{}\"\n{tls_table}", amqps_url(port, vhost))
                }
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
    .await;
    assert!(app.settings.amqp.tls.client_cert_file.is_some());
    app.publish(Flow::Inject, &match_ticket("ACME", "TLS-1")).await;
    let event = app.event_for("inject.succeeded", "TLS-1").await;
    assert_eq!(event["s360_status"], "Printed");
    assert!(
        proxy.handshakes.load(Ordering::SeqCst) >= 1,
        "the bridge did not connect through the TLS proxy"
    );
    assert!(app.sim.sim.ticket("ACME", "TLS-1").is_some());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn amqps_with_the_wrong_ca_fails_clearly() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(&pki, false).await;
    let settings = amqps_settings(
        &amqps_url(proxy.port, "%2f"),
        AmqpTlsSettings {
            ca_file: Some(pki.path("other-ca.pem")),
            ..Default::default()
        },
    );
    let error = connect_error(&settings).await;
    assert!(error.contains("cannot connect to RabbitMQ"), "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(!error.contains(":guest@"), "password in the error: {error}");
    assert_eq!(proxy.handshakes.load(Ordering::SeqCst), 0);

    // The right CA, no client certificate needed: connects.
    let settings = amqps_settings(
        &amqps_url(proxy.port, "%2f"),
        AmqpTlsSettings {
            ca_file: Some(pki.path("ca.pem")),
            ..Default::default()
        },
    );
    let connection = broker::connect(&settings, "tls-test").await.unwrap();
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn amqps_without_the_client_certificate_a_broker_requires_fails_clearly() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(&pki, true).await;
    let settings = amqps_settings(
        &amqps_url(proxy.port, "%2f"),
        AmqpTlsSettings {
            ca_file: Some(pki.path("ca.pem")),
            ..Default::default()
        },
    );
    let error = connect_error(&settings).await;
    assert!(error.contains("cannot connect to RabbitMQ"), "{error}");
    assert!(error.contains("CertificateRequired"), "{error}");
    assert_eq!(proxy.handshakes.load(Ordering::SeqCst), 0);
}

fn interface_settings(url: &str, interface_extra: &str) -> Settings {
    let (org, key) = ORGS[0];
    let text = format!(
        "[tixngo]\nconnect_timeout = \"5s\"\n[[interfaces]]\norganization = \"{org}\"\nkind = \"tixngo\"\nurl = \"{url}\"\nusername = \"admin@acme.example\"\napi_key = \"{key}\"\n{interface_extra}\n"
    );
    config::from_toml(&text).unwrap().validate_with(|_| None).unwrap()
}

fn document(ticket_id: &str) -> TicketDocument {
    let message = serde_json::from_value(match_ticket("ACME", ticket_id)).unwrap();
    TicketDocument {
        ticket_id: ticket_id.to_owned(),
        json: serde_json::value::to_raw_value(&mapping::to_tixngo(&message)).unwrap(),
    }
}

#[tokio::test]
async fn tixngo_over_https_trusts_the_interface_ca_file_and_classifies_an_untrusted_certificate() {
    let (sim, pki) = tls_sim().await;
    let url = sim.base_url("ACME");
    let trusted = interface_settings(&url, &format!("ca_file = \"{}\"", toml_path(&pki.path("ca.pem"))));
    let organizations = Organizations::new(&trusted).unwrap();
    let results = organizations
        .get("ACME")
        .unwrap()
        .client
        .inject(&[&document("H-1")])
        .await
        .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert!(sim.sim.ticket("ACME", "H-1").is_some());

    // System roots only: the test CA is unknown, a TLS error, retried like a connect error.
    let untrusted = interface_settings(&url, "");
    let organizations = Organizations::new(&untrusted).unwrap();
    let error = organizations
        .get("ACME")
        .unwrap()
        .client
        .inject(&[&document("H-2")])
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::Tls(_)), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(error.metric_label(), "tls");
    let text = error.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("ca_file"), "{text}");
    assert!(!text.contains(ORGS[0].1), "API key in the error: {text}");
    assert!(sim.sim.ticket("ACME", "H-2").is_none());
}

async fn digest_over_smtp_tls(sink_mode: &str, security: &str) {
    let pki = Pki::new();
    let sink = SmtpSink::start_tls(sink_mode, &pki.path("server.pem"), &pki.path("server.key")).await;
    let notifier = sink
        .notifier_toml("1s")
        .replace("host = \"127.0.0.1\"", "host = \"localhost\"")
        .replace(
            "security = \"none\"",
            &format!(
                "security = \"{security}\"\nca_file = \"{}\"",
                toml_path(&pki.path("ca.pem"))
            ),
        );
    let mut app = spawn_app_parts(&notifier, vec![Part::Flow(Flow::Inject), Part::Notifier]).await;
    let mut message = match_ticket("ACME", "M-1");
    message["unexpected"] = json!("dead-letters as invalid-message");
    app.publish(Flow::Inject, &message).await;
    app.event_for("inject.dead-lettered", "M-1").await;
    eventually("one e-mail over TLS", || sink.messages().len() == 1).await;
    let email = &sink.messages()[0];
    assert!(email.contains("To: ops@acme.example"), "{email}");
    assert!(email.contains("M-1"), "{email}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_digest_is_delivered_over_starttls_with_a_custom_ca() {
    digest_over_smtp_tls("--starttls", "starttls").await;
}

#[tokio::test]
async fn a_digest_is_delivered_over_implicit_tls_with_a_custom_ca() {
    digest_over_smtp_tls("--implicit-tls", "tls").await;
}

#[tokio::test]
async fn smtp_over_tls_without_the_ca_is_refused_and_nothing_is_sent() {
    let pki = Pki::new();
    let sink = SmtpSink::start_tls("--implicit-tls", &pki.path("server.pem"), &pki.path("server.key")).await;
    let text = format!(
        "{BASE}{INTERFACE}[notifier]\nfallback_emails = [\"ops@example.com\"]\n[notifier.smtp]\nhost = \"localhost\"\nport = {}\nsecurity = \"tls\"\nfrom = \"b@example.com\"\ntimeout = \"5s\"\n",
        sink.port
    );
    let settings = config::from_toml(&text).unwrap().validate_with(|_| None).unwrap();
    let mailer = Mailer::new(settings.notifier.smtp.as_ref().unwrap()).unwrap();
    let email = Email {
        to: vec!["ops@example.com".into()],
        subject: "test".into(),
        text: "test".into(),
        html: "<p>test</p>".into(),
    };
    // Each recipient is its own SMTP transaction (field faults, class 5): the report says none
    // accepted it, for a reason that may pass (retried like an outage), naming the TLS failure.
    let report = mailer.send(&email).await.unwrap();
    assert_eq!(report.accepted, 0);
    assert!(report.retry_later(), "{report:?}");
    let text = tixngo_bridge::telemetry::chain(&report.refused[0].error);
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(sink.messages().is_empty());
}

fn problems(text: &str) -> Vec<String> {
    match config::from_toml(text).unwrap().validate_with(|_| None) {
        Ok(_) => Vec::new(),
        Err(error) => error.problems.iter().map(ToString::to_string).collect(),
    }
}

fn assert_problem(text: &str, location: &str, needle: &str) {
    let problems = problems(text);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("{location}:")) && p.contains(needle)),
        "no problem at {location} mentioning {needle:?} in {problems:#?}"
    );
}

const BASE: &str = "[amqp]\nurl = \"amqps://guest:guest@rabbit.example:5671/%2f\"\n";
const INTERFACE: &str = "[[interfaces]]\norganization = \"ACME\"\nkind = \"tixngo\"\nurl = \"https://tixngo.example.com/acme/organizer/tickets\"\nusername = \"a@acme.example\"\napi_key = \"k-123\"\n";

#[test]
fn unusable_tls_files_are_configuration_errors() {
    let pki = Pki::new();
    let missing = pki.path("missing.pem");
    let ca = toml_path(&pki.path("ca.pem"));
    let key = toml_path(&pki.path("client.key"));

    let text = format!(
        "{BASE}[amqp.tls]\nca_file = \"{}\"\n{INTERFACE}",
        toml_path(&missing)
    );
    assert_problem(&text, "amqp.tls.ca_file", "cannot read");
    // A key is not a certificate.
    let text = format!("{BASE}[amqp.tls]\nca_file = \"{key}\"\n{INTERFACE}");
    assert_problem(&text, "amqp.tls.ca_file", "no PEM certificate");
    let text = format!("{BASE}[amqp.tls]\nclient_cert_file = \"{ca}\"\n{INTERFACE}");
    assert_problem(&text, "amqp.tls.client_cert_file", "go together");
    let text =
        format!("{BASE}[amqp.tls]\nclient_cert_file = \"{ca}\"\nclient_key_file = \"{ca}\"\n{INTERFACE}");
    assert_problem(&text, "amqp.tls.client_key_file", "no PEM private key");
    let encrypted = pki.path("encrypted.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let text = format!(
        "{BASE}[amqp.tls]\nclient_cert_file = \"{ca}\"\nclient_key_file = \"{}\"\n{INTERFACE}",
        toml_path(&encrypted)
    );
    assert_problem(&text, "amqp.tls.client_key_file", "encrypted");
    let text = format!(
        "[amqp]\nurl = \"amqp://guest:guest@rabbit.example/%2f\"\n[amqp.tls]\nca_file = \"{ca}\"\n{INTERFACE}"
    );
    assert_problem(&text, "amqp.tls", "amqps://");

    let text = format!("{BASE}{INTERFACE}ca_file = \"{}\"\n", toml_path(&missing));
    assert_problem(&text, "interfaces[ACME].ca_file", "cannot read");
    let text = format!(
        "{BASE}[tixngo]\nca_file = \"{}\"\n{INTERFACE}",
        toml_path(&missing)
    );
    assert_problem(&text, "tixngo.ca_file", "cannot read");
    let text = format!(
        "{BASE}[notifier]\nfallback_emails = [\"ops@example.com\"]\n[notifier.smtp]\nhost = \"smtp.example.com\"\nfrom = \"b@example.com\"\nca_file = \"{}\"\n{INTERFACE}",
        toml_path(&missing)
    );
    assert_problem(&text, "notifier.smtp.ca_file", "cannot read");

    // All of them valid: accepted, and the interface falls back to the global CA file.
    let text = format!(
        "{BASE}[amqp.tls]\nca_file = \"{ca}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{key}\"\n[tixngo]\nca_file = \"{ca}\"\n{INTERFACE}",
        toml_path(&pki.path("client.pem"))
    );
    assert_eq!(problems(&text), Vec::<String>::new());
    let settings = config::from_toml(&text).unwrap().validate_with(|_| None).unwrap();
    assert_eq!(
        settings.interface("ACME").unwrap().ca_file.as_deref(),
        Some(pki.path("ca.pem").as_path())
    );
}

/// The TLS options config/example.toml shows commented out, switched on (with this test's PEM
/// files in place of the example paths): every key is real and they validate together.
#[test]
fn the_example_configuration_with_its_tls_options_switched_on_is_valid() {
    let pki = Pki::new();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml")).unwrap();
    let mut switched_on = 0;
    let text: Vec<String> = example
        .lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("# ") else {
                return line.to_owned();
            };
            let is_table = rest.starts_with('[') && rest.ends_with(']');
            let is_setting = rest.split_once(" = ").is_some_and(|(key, _)| {
                key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && toml::from_str::<toml::Table>(rest).is_ok()
            });
            if !(is_table || is_setting) {
                return line.to_owned();
            }
            switched_on += 1;
            let rest = rest.replace("url = \"amqp://", "url = \"amqps://");
            match rest.split_once("\"/etc/tixngo-bridge/tls/") {
                Some((key, file)) => {
                    let file = file.split('"').next().unwrap_or_default();
                    let ours = match file {
                        "client.pem" => "client.pem",
                        "client.key" => "client.key",
                        _ => "ca.pem",
                    };
                    format!("{key}\"{}\"", toml_path(&pki.path(ours)))
                }
                None => rest,
            }
        })
        .collect();
    let text = text.join("\n").replace("url = \"amqp://", "url = \"amqps://");
    assert!(switched_on >= 15, "only {switched_on} commented settings found");
    let settings = config::from_toml(&text)
        .unwrap()
        .validate_with(|name| (name == "SMTP_PASSWORD").then(|| "smtp-secret".to_owned()))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(settings.amqp.tls.client_cert_file, Some(pki.path("client.pem")));
    assert_eq!(settings.amqp.tls.client_key_file, Some(pki.path("client.key")));
    assert_eq!(settings.amqp.tls.ca_file, Some(pki.path("ca.pem")));
    assert_eq!(
        settings.interface("GLOBEX").unwrap().ca_file,
        Some(pki.path("ca.pem"))
    );
    assert!(settings.interface("ACME").unwrap().ca_file.is_some());
    assert!(settings.notifier.smtp.unwrap().ca_file.is_some());
}

#[tokio::test]
async fn the_tixngo_sim_binary_serves_https_with_tls_cert_and_tls_key() {
    let pki = Pki::new();
    let port = free_port();
    let mut process = tokio::process::Command::new(sim_binary())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tenant",
            "ACME=acme-key",
        ])
        .arg("--tls-cert")
        .arg(pki.path("server.pem"))
        .arg("--tls-key")
        .arg(pki.path("server.key"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ca = reqwest::Certificate::from_pem(&pki.pem("ca.pem")).unwrap();
    let trusting = reqwest::Client::builder().tls_certs_merge([ca]).build().unwrap();
    let url = format!("https://localhost:{port}/admin/tenants");
    eventually_async("the simulator answers over HTTPS", || async {
        trusting
            .get(&url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await;
    let tenants = trusting.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(tenants.contains("ACME"), "{tenants}");
    // Without the test CA the handshake is refused, and plain HTTP gets no answer.
    let error = reqwest::Client::new().get(&url).send().await.unwrap_err();
    let text = tixngo_bridge::telemetry::chain(&error);
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/admin/tenants"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .is_err()
    );
    process.kill().await.unwrap();
}

#[tokio::test]
async fn a_bridge_started_against_an_untrusted_amqps_broker_stops_with_exit_69_and_the_reason() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(&pki, false).await;
    let text = format!(
        "[amqp]\nurl = \"{}\"\n[amqp.tls]\nca_file = \"{}\"\n[http]\nenabled = false\n{INTERFACE}",
        amqps_url(proxy.port, "%2f"),
        toml_path(&pki.path("other-ca.pem"))
    );
    let settings = config::from_toml(&text).unwrap().validate_with(|_| None).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tixngo_bridge::app::start(settings, vec![Part::Flow(Flow::Inject)], shutdown.clone())
        .await
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(60), running.wait())
        .await
        .expect("the bridge gave up by itself (no hang)")
        .unwrap_err();
    shutdown.cancel();
    assert_eq!(error.exit_code(), 69);
    let text = tixngo_bridge::telemetry::chain(&error);
    assert!(text.contains("UnknownIssuer"), "{text}");
}

/// Field faults, class 1, over HTTPS: an interface on `https://` whose server redirects to plain
/// `http://` on another port. The key and the ticket never travel in clear text; the error names
/// the redirect.
#[tokio::test]
async fn an_https_interface_redirecting_to_plain_http_sends_nothing_there() {
    let (sim, pki) = tls_sim().await;
    let trap = crate::redirects::Trap::start("127.0.0.1").await;
    let location = format!("http://{}/ACME/organizer/tickets", trap.addr);
    let settings = interface_settings(
        &sim.base_url("ACME"),
        &format!("ca_file = \"{}\"", toml_path(&pki.path("ca.pem"))),
    );
    let organizations = Organizations::new(&settings).unwrap();
    let client = &organizations.get("ACME").unwrap().client;
    for status in [301, 302, 303, 307, 308] {
        sim.sim
            .set_faults(Some("ACME"), crate::redirects::redirect_to(status, &location));
        let error = client.inject(&[&document("H-R-1")]).await.unwrap_err();
        assert!(matches!(error, CallError::Redirect { .. }), "{error:?}");
        assert_eq!(error.class(), ErrorClass::Transient);
        assert!(error.to_string().contains(&location), "{error}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(trap.touched(), 0, "the plain-http target was contacted");
    assert!(sim.sim.ticket("ACME", "H-R-1").is_none());
}
