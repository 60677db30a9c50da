//! Ticket templates: the example renders every product TIXnGO accepts; template errors are
//! clear; hostile values cannot break the JSON.

use std::path::Path;

use serde_json::{Value, json};
use tixngo_bridge::messages::InjectMessage;
use tixngo_bridge::tixngo::template::{TemplateError, TicketTemplate};

use crate::helpers::match_ticket;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/templates/example.json.j2");

fn message(value: Value) -> InjectMessage {
    serde_json::from_value(value).unwrap()
}

fn render(template: &TicketTemplate, value: Value) -> Result<Value, String> {
    template
        .render(&message(value))
        .map(|doc| serde_json::from_str(doc.json.get()).unwrap())
}

fn inline(source: &str) -> TicketTemplate {
    TicketTemplate::from_source(Path::new("inline.j2"), source.to_owned()).unwrap()
}

#[test]
fn example_template_renders_a_match_with_the_team_names() {
    let template = TicketTemplate::load(Path::new(EXAMPLE)).unwrap();
    let ticket = render(&template, match_ticket("ACME", "TPL-1")).unwrap();
    assert_eq!(ticket["ticketId"], "TPL-1");
    assert_eq!(ticket["event"]["name"], "Servette FC - FC Basel 1893");
    assert_eq!(ticket["event"]["address"]["zip"], "1212");
    assert_eq!(ticket["spectatorDetails"]["lastName"], "Müller");
    assert_eq!(ticket["purchaseDetails"]["price"], 45.0);
}

#[test]
fn hostile_values_stay_inside_their_strings() {
    let template = TicketTemplate::load(Path::new(EXAMPLE)).unwrap();
    let mut m = match_ticket("ACME", "TPL-2");
    let hostile = "Quote \" back\\slash\nnew line {{ not_a_var }} </script><b>é 日本 \u{0007}";
    m["spectator"]["last_name"] = json!(hostile);
    m["performance"]["host_team"] = json!(hostile);
    m["venue"]["site"] = json!("x".repeat(1000));
    let ticket = render(&template, m).unwrap();
    assert_eq!(ticket["spectatorDetails"]["lastName"], hostile);
    assert_eq!(ticket["event"]["name"], format!("{hostile} - FC Basel 1893"));
    assert_eq!(ticket["event"]["address"]["site"].as_str().unwrap().len(), 1000);
}

#[test]
fn syntax_error_names_file_and_line() {
    let error = TicketTemplate::from_source(Path::new("bad.j2"), "{\n\"a\": \"{{ x | }}\"\n}".to_owned())
        .unwrap_err();
    match error {
        TemplateError::Syntax { path, line, .. } => {
            assert_eq!(path, "bad.j2");
            assert_eq!(line, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_variable_names_the_template() {
    let template = inline(r#"{"ticketId": "{{ ticket_id }}", "x": "{{ performance.no_such_field }}"}"#);
    let error = render(&template, match_ticket("ACME", "TPL-3")).unwrap_err();
    assert!(
        error.contains("inline.j2") && error.contains("not in the message"),
        "{error}"
    );
}

#[test]
fn output_that_is_not_json_is_refused() {
    let template = inline(r#"{"ticketId": "{{ ticket_id }}",}"#);
    let error = render(&template, match_ticket("ACME", "TPL-4")).unwrap_err();
    assert!(error.contains("did not produce valid JSON"), "{error}");
}

#[test]
fn missing_required_field_is_named() {
    let template = inline(
        r#"{"ticketId": "{{ ticket_id }}", "event": {"name": "n", "startDate": "2026-01-01T00:00:00Z",
        "address": {"site": "s", "city": "c", "countryCode": "CH"}}, "purchaseDetails": {"purchaseDate": "2026-01-01T00:00:00Z"},
        "security": {"barcode": "b"}, "spectatorDetails": {}}"#,
    );
    let error = render(&template, match_ticket("ACME", "TPL-5")).unwrap_err();
    assert!(error.contains("event.address.zip is missing"), "{error}");
}

#[test]
fn config_check_reports_a_template_syntax_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("broken.json.j2");
    std::fs::write(&template, "{\n  \"ticketId\": \"{{ ticket_id | }}\"\n}\n").unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[[interfaces]]\norganization = \"ACME\"\nkind = \"tixngo_with_template\"\ntemplate = {:?}\nurl = \"http://127.0.0.1:1/organizer/tickets\"\napi_key = \"k\"\n",
            template.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tixngo-bridge"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("broken.json.j2 line 2"), "{stderr}");
}

#[test]
fn render_command_prints_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("m.json");
    std::fs::write(
        &message,
        serde_json::to_vec(&match_ticket("ACME", "R-1")).unwrap(),
    )
    .unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[[interfaces]]\norganization = \"ACME\"\nkind = \"tixngo_with_template\"\ntemplate = {EXAMPLE:?}\nurl = \"http://127.0.0.1:1/organizer/tickets\"\napi_key = \"k\"\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tixngo-bridge"))
        .args(["render", "--organization", "ACME", "--config"])
        .arg(&config)
        .arg("--message")
        .arg(&message)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ticket: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ticket["event"]["name"], "Servette FC - FC Basel 1893");
}

#[tokio::test]
async fn every_injection_example_is_accepted_by_the_simulator_with_mapping_and_template() {
    use tixngo_bridge::tixngo::{TicketDocument, TixngoClient, client::http_client, mapping};

    let sim = crate::helpers::spawn_sim().await;
    let settings = tixngo_bridge::config::from_toml(&format!(
        "[[interfaces]]\norganization = \"ACME\"\nkind = \"tixngo\"\nurl = \"{}\"\napi_key = \"{}\"\n",
        sim.base_url("ACME"),
        crate::helpers::ORGS[0].1
    ))
    .unwrap()
    .validate_with(|_| None)
    .unwrap();
    let client = TixngoClient::new(
        http_client(&settings.tixngo).unwrap(),
        settings.interface("ACME").unwrap(),
        &settings.tixngo,
    )
    .unwrap();
    let template = TicketTemplate::load(Path::new(EXAMPLE)).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("inject-") || !name.ends_with(".json") {
            continue;
        }
        let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (how, mut doc) in [
            ("mapping", {
                let m = message(value.clone());
                TicketDocument {
                    ticket_id: m.ticket_id.clone(),
                    json: serde_json::value::to_raw_value(&mapping::to_tixngo(&m)).unwrap(),
                }
            }),
            ("template", template.render(&message(value.clone())).unwrap()),
        ] {
            // One ticket id per way of rendering, so the two never conflict.
            let mut json: Value = serde_json::from_str(doc.json.get()).unwrap();
            doc.ticket_id = format!("{}-{how}", doc.ticket_id);
            json["ticketId"] = json!(doc.ticket_id);
            doc.json = serde_json::value::to_raw_value(&json).unwrap();
            let results = client.inject(&[&doc]).await.unwrap();
            assert!(results[0].is_ok(), "{name} via {how}: {:?}", results[0]);
            checked += 1;
        }
    }
    assert!(checked >= 12, "every product kind, both ways: {checked}");
}
