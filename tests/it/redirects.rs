//! Field faults, class 1: the API key and ticket data go to the configured origin and scheme
//! only, whatever TIXnGO answers. A 3xx is never followed; it is a clear, transient error naming
//! `Location`, and the redirect target receives nothing. (The https → http case is in tls.rs.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tixngo_bridge::config;
use tixngo_bridge::flows::Flow;
use tixngo_bridge::tixngo::{
    CallError, ErrorClass, TicketDocument, TixngoClient, client::http_client, mapping,
};
use tixngo_sim::{Faults, RedirectFault};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::helpers::*;

/// A TCP listener that counts connections and bytes received: a redirect target that must stay
/// untouched.
pub struct Trap {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Bytes received over all connections.
    pub bytes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    pub async fn start(ip: &str) -> Self {
        let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicUsize::new(0));
        let (c, b) = (connections.clone(), bytes.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let b = b.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        b.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
        Trap {
            addr,
            connections,
            bytes,
            task,
        }
    }

    pub fn touched(&self) -> usize {
        self.connections.load(Ordering::SeqCst) + self.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn client(url: &str) -> TixngoClient {
    let text = format!(
        "[tixngo]\nrequest_timeout = \"5s\"\nconnect_timeout = \"1s\"\n[[interfaces]]\norganization = \"ACME\"\nkind = \"tixngo\"\nurl = \"{url}\"\nusername = \"admin@acme.example\"\napi_key = \"{}\"\n",
        ORGS[0].1
    );
    let settings = config::from_toml(&text).unwrap().validate_with(|_| None).unwrap();
    let http = http_client(&settings.tixngo).unwrap();
    TixngoClient::new(http, settings.interface("ACME").unwrap(), &settings.tixngo).unwrap()
}

pub fn document(ticket_id: &str) -> TicketDocument {
    let message = serde_json::from_value(match_ticket("ACME", ticket_id)).unwrap();
    TicketDocument {
        ticket_id: ticket_id.to_owned(),
        json: serde_json::value::to_raw_value(&mapping::to_tixngo(&message)).unwrap(),
    }
}

pub fn redirect_to(status: u16, location: &str) -> Faults {
    Faults {
        redirect: Some(RedirectFault {
            status,
            location: location.to_owned(),
        }),
        ..Faults::none()
    }
}

/// Every redirect status, to another port, another host and another scheme's default port: an
/// error naming the status and `Location`, transient, and the target never contacted.
#[tokio::test]
async fn no_redirect_is_followed_by_the_tixngo_client() {
    let sim = spawn_sim().await;
    let other_port = Trap::start("127.0.0.1").await;
    let other_host = Trap::start("127.0.0.2").await;
    let c = client(&sim.base_url("ACME"));
    for status in [301, 302, 303, 307, 308] {
        for trap in [&other_port, &other_host] {
            let location = format!("http://{}/ACME/organizer/tickets", trap.addr);
            sim.sim.set_faults(Some("ACME"), redirect_to(status, &location));
            let ticket = format!("R-{status}-{}", trap.addr.port());
            let error = c.inject(&[&document(&ticket)]).await.unwrap_err();
            assert!(
                matches!(&error, CallError::Redirect { status: s, location: l } if *s == status && *l == location),
                "{error:?}"
            );
            assert_eq!(error.class(), ErrorClass::Transient, "{error}");
            assert_eq!(error.http_status(), Some(status));
            let text = error.to_string();
            assert!(
                text.contains(&location) && text.contains("not followed"),
                "{text}"
            );
            assert!(!text.contains(ORGS[0].1), "API key in the error: {text}");
            // The same for a single-ticket GET.
            let error = c.status(&ticket).await.unwrap_err();
            assert!(matches!(error, CallError::Redirect { .. }), "{error:?}");
            assert!(sim.sim.ticket("ACME", &ticket).is_none());
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        other_port.touched(),
        0,
        "the redirect target on another port was contacted"
    );
    assert_eq!(
        other_host.touched(),
        0,
        "the redirect target on another host was contacted"
    );
}

/// Through the bridge: a redirect is not the ticket's fault. The ticket is not dead-lettered
/// and not reported delivered; once the redirect stops, it is delivered from its retry tier.
#[tokio::test]
async fn a_redirecting_tixngo_neither_receives_the_ticket_elsewhere_nor_dead_letters_it() {
    let mut app = spawn_app_with("", &[Flow::Inject]).await;
    let trap = Trap::start("127.0.0.1").await;
    let location = format!("http://{}/ACME/organizer/tickets", trap.addr);
    app.sim.sim.set_faults(Some("ACME"), redirect_to(307, &location));
    app.publish(Flow::Inject, &match_ticket("ACME", "R-E2E-1")).await;
    eventually("the redirect was answered a few times", || {
        app.sim.sim.stats().faults_injected.redirect >= 2
    })
    .await;
    assert_eq!(
        app.queue_len(&app.dlq(Flow::Inject)).await,
        0,
        "dead-lettered for a redirect"
    );
    app.sim.sim.set_faults(Some("ACME"), Faults::none());
    let event = app.event_for("inject.succeeded", "R-E2E-1").await;
    assert_eq!(event["ticket_id"], json!("R-E2E-1"));
    assert_eq!(trap.touched(), 0, "the redirect target was contacted");
    assert_eq!(app.queue_len(&app.dlq(Flow::Inject)).await, 0);
    app.stop().await.unwrap();
}
