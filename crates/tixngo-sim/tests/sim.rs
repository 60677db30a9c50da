//! The TIXnGO simulator over real HTTP: the contract of docs/tixngo-api.md and its admin API.
// Tests unwrap freely: a panic is a failed test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tixngo_sim::{self as sim, Faults, RunningSim, SimConfig, Stats, Status};

const ACME_KEY: &str = "acme-secret";
const BETA_KEY: &str = "beta-secret";

async fn start_with(config: SimConfig) -> RunningSim {
    let config = config.with_tenant("acme", ACME_KEY).with_tenant("beta", BETA_KEY);
    sim::spawn(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn start() -> RunningSim {
    start_with(SimConfig::default()).await
}

/// Sends a request; returns the status, the headers and the JSON body (`null` when empty).
async fn send(req: RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"))
    };
    (status, headers, body)
}

/// A client for one tenant.
struct Api {
    client: Client,
    base: String,
    key: String,
}

impl Api {
    fn new(running: &RunningSim, org: &str, key: &str) -> Self {
        Api {
            client: Client::new(),
            base: running.base_url(org),
            key: key.to_owned(),
        }
    }

    fn acme(running: &RunningSim) -> Self {
        Api::new(running, "acme", ACME_KEY)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("X-Api-Key", &self.key)
            .json(&body);
        let (status, _, body) = send(req).await;
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let req = self
            .client
            .get(format!("{}{path}", self.base))
            .header("X-Api-Key", &self.key);
        let (status, _, body) = send(req).await;
        (status, body)
    }

    async fn inject(&self, tickets: Vec<Value>) -> (StatusCode, Value) {
        self.post("", json!({ "tickets": tickets })).await
    }

    async fn cancel(&self, ids: &[&str]) -> (StatusCode, Value) {
        let items: Vec<Value> = ids
            .iter()
            .map(|id| json!({"ticketId": id, "reason": "refund", "showDeletedTicket": true}))
            .collect();
        self.post("/cancellations", json!({ "cancellations": items }))
            .await
    }

    async fn control(&self, ids: &[&str]) -> (StatusCode, Value) {
        let items: Vec<Value> = ids
            .iter()
            .map(|id| json!({"ticketId": id, "controlledAt": "2030-05-01T19:01:02+02:00", "gate": "G4"}))
            .collect();
        self.post("/controls", json!({ "controls": items })).await
    }

    /// One diff page: (changes, nextPageKey, hasMore).
    async fn diff(&self, query: &str) -> (Vec<Value>, String, bool) {
        let (status, body) = self.get(&format!("/diff{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let changes = body["changes"].as_array().unwrap().clone();
        (
            changes,
            body["nextPageKey"].as_str().unwrap().to_owned(),
            body["hasMore"].as_bool().unwrap(),
        )
    }
}

/// An admin client.
struct Admin {
    client: Client,
    url: String,
}

impl Admin {
    fn new(running: &RunningSim) -> Self {
        Admin {
            client: Client::new(),
            url: running.admin_url(),
        }
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, b) = send(self.client.put(format!("{}{path}", self.url)).json(&body)).await;
        (s, b)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, b) = send(self.client.post(format!("{}{path}", self.url)).json(&body)).await;
        (s, b)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, b) = send(self.client.get(format!("{}{path}", self.url))).await;
        (s, b)
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, b) = send(self.client.delete(format!("{}{path}", self.url))).await;
        (s, b)
    }

    async fn transition(&self, org: &str, id: &str, to: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/tenants/{org}/tickets/{id}/transition"),
            json!({ "to": to }),
        )
        .await
    }
}

fn ticket(id: &str) -> Value {
    json!({
        "ticketId": id,
        "ticketType": "EVENT_TICKET",
        "productType": "MATCH",
        "event": {
            "id": "EV-1",
            "name": "Cup final",
            "startDate": "2030-05-01T20:00:00+02:00",
            "address": {"site": "Stade de Genève", "city": "Genève", "zip": "1212", "countryCode": "CH"}
        },
        "purchaseDetails": {"orderId": "O-1", "purchaseDate": "2030-01-02T10:00:00Z", "price": 45.5, "currency": "CHF"},
        "security": {"barcode": format!("BC-{id}"), "barcodeType": "QRCODE"},
        "spectatorDetails": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.org"},
        "ticketDetails": {"MAIN": [{"key": "Seat", "value": "B-12"}]}
    })
}

fn codes(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn unauthorized_without_the_right_key_or_tenant() {
    let running = start().await;
    let client = Client::new();
    let url = running.base_url("acme");
    let body = json!({"tickets": [ticket("A-1")]});

    let (status, _, err) = send(client.post(&url).json(&body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"], "unauthorized");
    assert!(err["message"].as_str().unwrap().contains("x-api-key"), "{err}");

    for (url, key) in [
        (running.base_url("acme"), "wrong"),
        (running.base_url("acme"), BETA_KEY),
        (running.base_url("nobody"), ACME_KEY),
    ] {
        let (status, _, err) = send(client.post(&url).header("X-Api-Key", key).json(&body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{url}");
        assert_eq!(err["error"], "unauthorized");
        assert!(!err["message"].as_str().unwrap().contains(ACME_KEY));
    }
    let (status, _, _) = send(client.get(format!("{url}/diff")).header("X-Api-Key", "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(running.sim.stats().requests.by_status.get(&401), Some(&5));
    assert!(running.sim.ticket_ids("acme").is_empty());
}

#[tokio::test]
async fn api_key_header_name_is_configurable() {
    let config = SimConfig {
        api_key_header: "x-tixngo-key".parse().unwrap(),
        ..SimConfig::default()
    };
    let running = start_with(config).await;
    let client = Client::new();
    let url = format!("{}/nope", running.base_url("acme"));
    let (status, _, _) = send(client.get(&url).header("X-Api-Key", ACME_KEY)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(client.get(&url).header("X-Tixngo-Key", ACME_KEY)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn inject_created_unchanged_conflict_invalid() {
    let running = start().await;
    let api = Api::acme(&running);

    let mut changed = ticket("A-1");
    changed["security"]["barcode"] = json!("OTHER");
    let mut invalid = ticket("A-2");
    invalid["event"]["address"].as_object_mut().unwrap().remove("zip");
    invalid["event"]["startDate"] = json!("tomorrow");
    invalid["security"]["barcode"] = json!("x".repeat(513));
    let mut extra = ticket("A-3");
    extra["somethingNew"] = json!({"ignored": true});

    let (status, body) = api
        .inject(vec![ticket("A-1"), extra.clone(), invalid, json!("not a ticket")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(codes(&body), [201, 201, 422, 422]);
    let r = &body["results"];
    assert_eq!(r[0]["ticketId"], "A-1");
    assert_eq!(r[0]["status"], "INJECTED");
    assert_eq!(r[2]["ticketId"], "A-2");
    assert!(r[2].get("status").is_none());
    let fields: Vec<&str> = r[2]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["event.startDate", "event.address.zip", "security.barcode"]
    );
    assert_eq!(r[3]["ticketId"], Value::Null);
    assert_eq!(r[3]["errors"][0]["field"], "");

    let (_, body) = api.inject(vec![ticket("A-1"), changed, extra]).await;
    assert_eq!(codes(&body), [200, 409, 200]);
    assert_eq!(body["results"][0]["status"], "INJECTED");
    assert_eq!(body["results"][1]["status"], "INJECTED");
    assert!(body["results"][1]["message"].as_str().unwrap().contains("A-1"));

    // Nothing stored for the invalid ticket, the original kept for the conflicting one.
    assert_eq!(api.get("/A-2").await.0, StatusCode::NOT_FOUND);
    let view = running.sim.ticket("acme", "A-1").unwrap();
    assert_eq!(view.ticket.as_ref().unwrap()["security"]["barcode"], "BC-A-1");
    assert_eq!(view.calls.inject, 3);
    assert_eq!(view.side_effects.created, 1);
    let invalid = running.sim.ticket("acme", "A-2").unwrap();
    assert_eq!(
        (invalid.status, invalid.calls.inject, invalid.side_effects.created),
        (None, 1, 0)
    );

    // The same ticket id in another tenant is another ticket.
    let (_, body) = Api::new(&running, "beta", BETA_KEY)
        .inject(vec![ticket("A-1")])
        .await;
    assert_eq!(codes(&body), [201]);
    let stats = running.sim.stats();
    assert_eq!(stats.tickets_by_status[&Status::Injected], 3);
    assert_eq!(stats.tenants["acme"].tickets, 2);
    assert_eq!(stats.items.inject, 8);
}

#[tokio::test]
async fn whole_request_errors() {
    let config = SimConfig {
        max_batch: 3,
        ..SimConfig::default()
    };
    let running = start_with(config).await;
    let api = Api::acme(&running);
    let tickets: Vec<Value> = (0..4).map(|i| ticket(&format!("T-{i}"))).collect();
    let (status, body) = api.inject(tickets).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "too_many_tickets");
    let too_many: Vec<Value> = (0..4)
        .map(|i| json!({"ticketId": format!("T-{i}"), "controlledAt": "2030-01-01T00:00:00Z"}))
        .collect();
    assert_eq!(
        api.post("/controls", json!({ "controls": too_many })).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    for bad in [
        json!({"tickets": []}),
        json!({"tickets": {}}),
        json!([ticket("x")]),
        json!({"ticket": []}),
    ] {
        let (status, body) = api.post("", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "bad_request");
    }
    let (status, _, body) = send(
        api.client
            .post(&api.base)
            .header("X-Api-Key", ACME_KEY)
            .header("Content-Type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (status, _, _) = send(
        api.client
            .post(&api.base)
            .header("X-Api-Key", ACME_KEY)
            .body(json!({"tickets": [ticket("x")]}).to_string()),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a body without Content-Type: application/json"
    );
    assert!(running.sim.ticket_ids("acme").is_empty());
}

#[tokio::test]
async fn cancel_is_idempotent_and_unknown_is_404() {
    let running = start().await;
    let api = Api::acme(&running);
    api.inject(vec![ticket("C-1")]).await;

    let (status, body) = api.cancel(&["C-1", "C-404"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(codes(&body), [200, 404]);
    assert_eq!(body["results"][0]["status"], "DELETED");
    let (_, body) = api.cancel(&["C-1"]).await;
    assert_eq!(codes(&body), [200]);
    assert_eq!(body["results"][0]["status"], "DELETED");

    let (_, body) = api
        .post(
            "/cancellations",
            json!({"cancellations": [{"ticketId": "C-1", "showDeletedTicket": "no"}]}),
        )
        .await;
    assert_eq!(codes(&body), [422]);
    let fields: Vec<&str> = body["results"][0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["reason", "showDeletedTicket"]);

    let view = running.sim.ticket("acme", "C-1").unwrap();
    assert_eq!(view.status, Some(Status::Deleted));
    assert_eq!(view.calls.cancel, 3);
    assert_eq!(view.side_effects.deleted, 1);
    assert_eq!(view.cancellation.unwrap()["reason"], "refund");
    assert_eq!(running.sim.ticket("acme", "C-404").unwrap().calls.cancel, 1);
    // One change for the injection, one for the deletion.
    assert_eq!(running.sim.changes("acme", 0).len(), 2);
}

#[tokio::test]
async fn control_is_idempotent_and_refused_after_delete() {
    let running = start().await;
    let api = Api::acme(&running);
    api.inject(vec![ticket("K-1"), ticket("K-2")]).await;

    let (status, body) = api.control(&["K-1", "K-1", "K-404"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(codes(&body), [200, 200, 404]);
    assert_eq!(body["results"][1]["status"], "CONTROLLED");
    let view = running.sim.ticket("acme", "K-1").unwrap();
    assert_eq!((view.calls.control, view.side_effects.controlled), (2, 1));
    assert_eq!(view.control.unwrap()["gate"], "G4");

    api.cancel(&["K-2"]).await;
    let (_, body) = api.control(&["K-2"]).await;
    assert_eq!(codes(&body), [409]);
    assert_eq!(body["results"][0]["status"], "DELETED");
    assert_eq!(
        body["results"][0]["message"],
        "ticket K-2 is deleted and cannot be controlled"
    );

    // Deletion pending (set on the TIXnGO side) refuses controls too.
    api.inject(vec![ticket("K-3")]).await;
    running
        .sim
        .transition("acme", "K-3", Status::DeletionPending)
        .unwrap();
    let (_, body) = api.control(&["K-3"]).await;
    assert_eq!(codes(&body), [409]);

    let (_, body) = api
        .post(
            "/controls",
            json!({"controls": [{"ticketId": "K-1", "controlledAt": "now"}]}),
        )
        .await;
    assert_eq!(codes(&body), [422]);
    assert_eq!(body["results"][0]["errors"][0]["field"], "controlledAt");
}

#[tokio::test]
async fn status_read() {
    let running = start().await;
    let api = Api::acme(&running);
    let odd_id = "ORG/2030 #1?";
    api.inject(vec![ticket("S-1"), ticket(odd_id)]).await;
    api.control(&["S-1"]).await;

    let (status, body) = api.get("/S-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ticketId"], "S-1");
    assert_eq!(body["status"], "CONTROLLED");
    let history: Vec<&str> = body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["INJECTED", "CONTROLLED"]);
    assert!(chrono::DateTime::parse_from_rfc3339(body["updatedAt"].as_str().unwrap()).is_ok());

    let (status, body) = api.get("/ORG%2F2030%20%231%3F").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ticketId"], odd_id);

    let (status, body) = api.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    assert_eq!(running.sim.stats().requests.status, 3);
}

#[tokio::test]
async fn diff_pages_with_continuous_keys() {
    let running = start().await;
    let api = Api::acme(&running);
    let (changes, key0, more) = api.diff("").await;
    assert!(changes.is_empty() && !more);

    api.inject((1..=5).map(|i| ticket(&format!("D-{i}"))).collect())
        .await;
    running.sim.transition("acme", "D-2", Status::Downloaded).unwrap();
    api.cancel(&["D-3"]).await;
    // Another tenant's changes never show up here.
    Api::new(&running, "beta", BETA_KEY)
        .inject(vec![ticket("D-9")])
        .await;

    let mut key = key0;
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let (changes, next, more) = api.diff(&format!("?paginationKey={key}&limit=3")).await;
        assert!(changes.len() <= 3);
        all.extend(changes);
        key = next;
        pages += 1;
        if !more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 7);
    assert_eq!(all[0]["ticketId"], "D-1");
    assert_eq!(all[0]["previousStatus"], Value::Null);
    assert_eq!(all[0]["status"], "INJECTED");
    assert_eq!(
        all[5],
        json!({"ticketId": "D-2", "previousStatus": "INJECTED", "status": "DOWNLOADED", "changedAt": all[5]["changedAt"]})
    );
    assert_eq!(
        (all[6]["ticketId"].as_str(), all[6]["status"].as_str()),
        (Some("D-3"), Some("DELETED"))
    );

    // Nothing new: empty page, same key.
    let (changes, next, more) = api.diff(&format!("?paginationKey={key}")).await;
    assert!(changes.is_empty() && !more);
    assert_eq!(next, key);
    // Something new: it is there from the last key on.
    api.control(&["D-1"]).await;
    let (changes, next, _) = api.diff(&format!("?paginationKey={key}")).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["status"], "CONTROLLED");
    assert_ne!(next, key);
    // No key: from the beginning, default limit.
    assert_eq!(api.diff("").await.0.len(), 8);

    for bad in [
        "?paginationKey=abc",
        "?paginationKey=-1",
        "?paginationKey=999",
        "?limit=0",
        "?limit=10001",
        "?limit=x",
    ] {
        let (status, body) = api.get(&format!("/diff{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"], "bad_request");
    }
    assert_eq!(api.diff("?limit=10000").await.0.len(), 8);
}

#[tokio::test]
async fn transitions_follow_the_rules() {
    let running = start().await;
    let api = Api::acme(&running);
    let admin = Admin::new(&running);
    let mut fixed = ticket("R-3");
    fixed["transferable"] = json!(false);
    api.inject(vec![ticket("R-1"), ticket("R-2"), fixed]).await;

    let (status, body) = admin.transition("acme", "R-1", "DOWNLOADED").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ticketId"], "R-1");
    assert_eq!(body["status"], "DOWNLOADED");
    assert_eq!(
        admin.transition("acme", "R-1", "PENDING_TRANSFER").await.0,
        StatusCode::OK
    );
    assert_eq!(
        admin.transition("acme", "R-1", "TRANSFERRED").await.0,
        StatusCode::OK
    );
    assert_eq!(api.get("/R-1").await.1["status"], "TRANSFERRED");

    // Controlled: never transferred again, even after activation.
    api.control(&["R-2"]).await;
    let (status, body) = admin.transition("acme", "R-2", "PENDING_TRANSFER").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["message"].as_str().unwrap().contains("controlled"), "{body}");
    assert_eq!(
        admin.transition("acme", "R-2", "ACTIVATED").await.0,
        StatusCode::OK
    );
    assert_eq!(
        admin.transition("acme", "R-2", "TRANSFERRED").await.0,
        StatusCode::CONFLICT
    );

    // Not transferable.
    let (status, body) = admin.transition("acme", "R-3", "PENDING_TRANSFER").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["message"].as_str().unwrap().contains("not transferable"),
        "{body}"
    );

    // Deleted: nothing more.
    api.cancel(&["R-3"]).await;
    for to in ["DOWNLOADED", "CONTROLLED", "DELETED", "INJECTED"] {
        assert_eq!(
            admin.transition("acme", "R-3", to).await.0,
            StatusCode::CONFLICT,
            "{to}"
        );
    }

    assert_eq!(
        admin.transition("acme", "R-404", "DOWNLOADED").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin.transition("nobody", "R-1", "DOWNLOADED").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin.transition("acme", "R-1", "downloaded").await.0,
        StatusCode::BAD_REQUEST
    );

    // Every accepted transition is a change record: 3 injections, 3 on R-1, control + activation
    // on R-2, deletion of R-3.
    let statuses: Vec<Status> = running.sim.changes("acme", 0).iter().map(|c| c.status).collect();
    assert_eq!(statuses.len(), 9);
    assert_eq!(
        statuses[3..6],
        [Status::Downloaded, Status::PendingTransfer, Status::Transferred]
    );
    // Spectator-side transitions are not API side effects.
    assert_eq!(
        running.sim.ticket("acme", "R-2").unwrap().side_effects.controlled,
        1
    );
}

#[tokio::test]
async fn error_rate_answers_503_without_applying() {
    let running = start().await;
    let api = Api::acme(&running);
    let admin = Admin::new(&running);
    let (status, _) = admin.put("/faults", json!({"errorRate": 1.0})).await;
    assert_eq!(status, StatusCode::OK);
    for i in 0..5 {
        let (status, body) = api.inject(vec![ticket(&format!("E-{i}"))]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "unavailable");
    }
    assert!(running.sim.ticket_ids("acme").is_empty());
    let (status, stats) = admin.get("/stats").await;
    assert_eq!(status, StatusCode::OK, "admin is never faulted");
    assert_eq!(stats["faultsInjected"]["error"], 5);
    assert_eq!(stats["requests"]["byStatus"]["503"], 5);

    admin.delete("/faults").await;
    assert_eq!(codes(&api.inject(vec![ticket("E-0")]).await.1), [201]);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let running = start().await;
    let api = Api::acme(&running);
    running.sim.set_faults(
        None,
        Faults {
            rate_limit_rate: 1.0,
            retry_after_secs: 7,
            ..Faults::none()
        },
    );
    let req = api
        .client
        .get(format!("{}/diff", api.base))
        .header("X-Api-Key", ACME_KEY);
    let (status, headers, body) = send(req).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(running.sim.stats().faults_injected.rate_limit, 1);
}

#[tokio::test]
async fn outage_per_tenant_and_back() {
    let running = start().await;
    let acme = Api::acme(&running);
    let beta = Api::new(&running, "beta", BETA_KEY);
    let admin = Admin::new(&running);

    let (status, _) = admin.put("/tenants/acme/faults", json!({"outage": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(admin.get("/tenants/acme/faults").await.1["outage"], true);
    assert_eq!(admin.get("/tenants/beta/faults").await.1, Value::Null);
    assert_eq!(
        acme.inject(vec![ticket("O-1")]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(acme.get("/O-1").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(codes(&beta.inject(vec![ticket("O-1")]).await.1), [201]);

    // A tenant's own faults replace the global ones: a global outage leaves acme's override.
    admin.put("/faults", json!({"outage": true})).await;
    assert_eq!(beta.get("/O-1").await.0, StatusCode::SERVICE_UNAVAILABLE);
    admin.put("/tenants/acme/faults", json!({})).await;
    assert_eq!(codes(&acme.inject(vec![ticket("O-1")]).await.1), [201]);
    admin.delete("/faults").await;
    assert_eq!(beta.get("/O-1").await.0, StatusCode::OK);

    assert_eq!(admin.delete("/tenants/acme/faults").await.0, StatusCode::OK);
    assert_eq!(admin.get("/tenants/acme/faults").await.1, Value::Null);
    assert_eq!(
        admin.put("/tenants/nobody/faults", json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin.put("/faults", json!({"errorRate": 2})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin.put("/faults", json!({"eror_rate": 1})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(running.sim.stats().faults_injected.outage, 3);
}

#[tokio::test]
async fn latency_delays_answers() {
    let running = start().await;
    let api = Api::acme(&running);
    running.sim.set_faults(
        Some("acme"),
        Faults {
            latency_ms: 150,
            latency_max_ms: Some(200),
            ..Faults::none()
        },
    );
    let t = Instant::now();
    assert_eq!(api.get("/L-1").await.0, StatusCode::NOT_FOUND);
    let elapsed = t.elapsed();
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    // The other tenant is not delayed: shown by the fault counter, not by a timer (a loaded
    // machine would make an upper time bound flaky).
    Api::new(&running, "beta", BETA_KEY).get("/L-1").await;
    assert_eq!(running.sim.stats().faults_injected.latency, 1);
}

#[tokio::test]
async fn timeouts_hang_and_may_have_applied() {
    let config = SimConfig {
        hang: Duration::from_millis(400),
        ..SimConfig::default()
    };
    let running = start_with(config).await;
    let api = Api::acme(&running);
    running.sim.set_faults(
        None,
        Faults {
            timeout_rate: 1.0,
            ..Faults::none()
        },
    );
    // The client gives up; the injection was applied anyway (the client cannot know).
    let short = Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = short
        .post(&api.base)
        .header("X-Api-Key", ACME_KEY)
        .json(&json!({"tickets": [ticket("H-1")]}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(running.sim.status("acme", "H-1"), Some(Status::Injected));

    // Not applied: after the hang, 504.
    running.sim.set_faults(
        None,
        Faults {
            timeout_rate: 1.0,
            timeout_applies: false,
            ..Faults::none()
        },
    );
    let t = Instant::now();
    let (status, body) = api.inject(vec![ticket("H-2")]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["error"], "gateway_timeout");
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert_eq!(running.sim.status("acme", "H-2"), None);
    assert_eq!(running.sim.stats().faults_injected.timeout, 2);
}

#[tokio::test]
async fn diff_concurrency_is_measured_per_tenant() {
    let running = start().await;
    let acme = Api::acme(&running);
    let beta = Api::new(&running, "beta", BETA_KEY);
    running.sim.set_faults(
        Some("acme"),
        Faults {
            latency_ms: 200,
            ..Faults::none()
        },
    );
    let (a, b, c) = tokio::join!(acme.diff(""), acme.diff(""), acme.diff(""));
    assert!(a.0.is_empty() && b.0.is_empty() && c.0.is_empty());
    for _ in 0..3 {
        beta.diff("").await;
    }
    let stats = running.sim.stats();
    assert_eq!(
        (
            stats.tenants["acme"].diff_calls,
            stats.tenants["acme"].diff_max_concurrent
        ),
        (3, 3)
    );
    assert_eq!(
        (
            stats.tenants["beta"].diff_calls,
            stats.tenants["beta"].diff_max_concurrent
        ),
        (3, 1)
    );

    // The HTTP view matches the Rust one.
    let (_, json) = Admin::new(&running).get("/stats").await;
    assert_eq!(json["tenants"]["acme"]["diffMaxConcurrent"], 3);
    let over_http: Stats = serde_json::from_value(json).unwrap();
    assert_eq!(over_http, running.sim.stats());
}

#[tokio::test]
async fn stats_count_requests_and_tickets() {
    let running = start().await;
    let api = Api::acme(&running);
    api.inject(vec![ticket("N-1"), ticket("N-2")]).await;
    api.control(&["N-1"]).await;
    api.cancel(&["N-2"]).await;
    api.get("/N-1").await;
    api.get("/N-404").await;
    api.diff("").await;
    let stats = running.sim.stats();
    let r = &stats.requests;
    assert_eq!(
        (r.total, r.inject, r.cancel, r.control, r.status, r.diff),
        (6, 1, 1, 1, 2, 1)
    );
    assert_eq!(r.by_status.get(&200), Some(&5));
    assert_eq!(r.by_status.get(&404), Some(&1));
    assert_eq!(stats.tickets_by_status[&Status::Controlled], 1);
    assert_eq!(stats.tickets_by_status[&Status::Deleted], 1);
    assert_eq!(stats.tickets_by_status[&Status::Injected], 0);
    assert_eq!(stats.tenants["acme"].changes, 4);
}

#[tokio::test]
async fn admin_tenants_inspection_and_reset() {
    let running = start().await;
    let admin = Admin::new(&running);

    let (status, _) = admin
        .put("/tenants/gamma", json!({"apiKey": "gamma-secret"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let gamma = Api::new(&running, "gamma", "gamma-secret");
    assert_eq!(codes(&gamma.inject(vec![ticket("G-1")]).await.1), [201]);
    assert_eq!(
        admin.put("/tenants/admin", json!({"apiKey": "x"})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin.put("/tenants/delta", json!({"apiKey": ""})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin.put("/tenants/delta", json!({})).await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, list) = admin.get("/tenants").await;
    assert_eq!(list["tenants"], json!(["acme", "beta", "gamma"]));

    // Inspection.
    gamma.inject(vec![ticket("G-1")]).await;
    let (status, view) = admin.get("/tenants/gamma/tickets/G-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["ticketId"], "G-1");
    assert_eq!(view["status"], "INJECTED");
    assert_eq!(view["ticket"], ticket("G-1"));
    assert_eq!(
        view["calls"],
        json!({"inject": 2, "cancel": 0, "control": 0, "status": 0})
    );
    assert_eq!(
        view["sideEffects"],
        json!({"created": 1, "deleted": 0, "controlled": 0})
    );
    let first_seen = view["firstSeenAt"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(first_seen).is_ok());
    assert_eq!(
        first_seen.split('.').nth(1).map(str::len),
        Some(7),
        "micros and Z: {first_seen}"
    );
    assert_eq!(
        admin.get("/tenants/gamma/tickets/G-404").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin.get("/tenants/nobody/tickets/G-1").await.0,
        StatusCode::NOT_FOUND
    );

    // Changing the key locks the old one out.
    assert_eq!(
        admin.put("/tenants/gamma", json!({"apiKey": "rotated"})).await.0,
        StatusCode::OK
    );
    assert_eq!(gamma.get("/G-1").await.0, StatusCode::UNAUTHORIZED);

    // Reset: tickets, counters and faults gone; tenants kept.
    running.sim.set_faults(
        Some("acme"),
        Faults {
            outage: true,
            ..Faults::none()
        },
    );
    admin.put("/faults", json!({"latencyMs": 5})).await;
    let (status, _) = admin.post("/reset", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(running.sim.ticket_ids("gamma").is_empty());
    assert_eq!(running.sim.faults(None), Some(Faults::none()));
    assert_eq!(running.sim.faults(Some("acme")), None);
    let stats = running.sim.stats();
    assert_eq!(stats.requests.total, 0);
    assert!(stats.tickets_by_status.values().all(|n| *n == 0));
    let acme = Api::acme(&running);
    assert_eq!(codes(&acme.inject(vec![ticket("G-1")]).await.1), [201]);
    assert_eq!(acme.diff("").await.0.len(), 1);
    assert_eq!(
        Api::new(&running, "gamma", "rotated").get("/G-1").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unknown_paths_are_json_404_and_shutdown_stops_serving() {
    let running = start().await;
    let (status, _, body) = send(Client::new().get(format!("http://{}/nowhere", running.addr))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");

    let addr = running.addr;
    running.shutdown().await.unwrap();
    let err = Client::new()
        .get(format!("http://{addr}/admin/stats"))
        .send()
        .await;
    assert!(err.is_err());
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    sim: sim::SimArgs,
}

#[tokio::test]
async fn cli_args_and_serve() {
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--tenant",
        "acme=k1",
        "--tenant",
        "beta=k=2",
        "--error-rate",
        "0.25",
        "--latency-ms",
        "3",
        "--max-batch",
        "10",
        "--api-key-header",
        "X-Key",
    ])
    .unwrap();
    let debug = format!("{:?}", cli.sim);
    assert!(!debug.contains("k1") && debug.contains("acme"), "{debug}");
    let config = cli.sim.to_config().unwrap();
    assert_eq!(config.tenants[1].api_key, "k=2");
    assert_eq!((config.max_batch, config.api_key_header.as_str()), (10, "x-key"));
    assert_eq!((config.faults.error_rate, config.faults.latency_ms), (0.25, 3));
    for bad in [
        &["sim", "--tenant", "acme"][..],
        &["sim", "--tenant", "admin=k"],
        &["sim", "--error-rate", "1.5"],
        &["sim", "--max-batch", "0"],
    ] {
        assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
    }

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sim::serve(cli.sim, async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
