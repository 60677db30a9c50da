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

fn load_error(source: &str) -> String {
    match TicketTemplate::from_source(Path::new("inline.j2"), source.to_owned()) {
        Ok(_) => panic!("template unexpectedly loaded:\n{source}"),
        Err(error) => error.to_string(),
    }
}

fn example_source() -> String {
    std::fs::read_to_string(EXAMPLE).unwrap()
}

/// The example template with its last line (`}`) replaced by `tail`.
fn example_with_tail(tail: &str) -> String {
    let source = example_source();
    let end = source.trim_end().rfind('}').unwrap();
    format!("{}{tail}", &source[..end])
}

#[test]
fn missing_variable_names_the_template_and_the_variable_at_load() {
    // An optional field used without `is defined`: the bundled examples without their optional
    // fields find it when the template loads.
    let source = example_source().replace(
        "\"id\": \"{{ performance.id }}\",",
        "\"id\": \"{{ performance.id }}\", \"competition\": \"{{ performance.competition }}\",",
    );
    let line = source
        .lines()
        .position(|l| l.contains("competition\": "))
        .unwrap()
        + 1;
    let error = load_error(&source);
    assert!(
        error.contains(&format!("inline.j2 line {line}"))
            && error.contains("`performance.competition` is not in the message"),
        "{error}"
    );
    // A field the message never has, in a branch no example takes.
    let error = load_error(
        "{\"ticketId\": \"{{ ticket_id }}\"\n{% if product.kind == \"none\" %}{{ performance.host_tem }}{% endif %}}",
    );
    assert!(
        error.contains("line 2") && error.contains("`performance.host_tem` is not a field"),
        "{error}"
    );
}

#[test]
fn output_that_is_not_json_is_refused_at_load() {
    let error = load_error(r#"{"ticketId": "{{ ticket_id }}",}"#);
    assert!(error.contains("not valid JSON"), "{error}");
}

#[test]
fn missing_required_field_is_named_at_load() {
    let error = load_error(
        r#"{"ticketId": "{{ ticket_id }}", "event": {"name": "n", "startDate": "2026-01-01T00:00:00Z",
        "address": {"site": "s", "city": "c", "countryCode": "CH"}}, "purchaseDetails": {"purchaseDate": "2026-01-01T00:00:00Z"},
        "security": {"barcode": "b"}, "spectatorDetails": {}}"#,
    );
    assert!(error.contains("event.address.zip is required"), "{error}");
}

#[test]
fn unknown_filter_fails_at_load_with_file_and_line() {
    // The issue's example: the open-pass branch renders fine, every dated ticket would fail.
    let source = example_source().replace(
        "\"startDate\": \"{{ performance.start }}\"",
        "\"startDate\": \"{{ performance.start | datetimeformat }}\"",
    );
    let line = source.lines().position(|l| l.contains("datetimeformat")).unwrap() + 1;
    let error = load_error(&source);
    assert!(
        error.contains(&format!("inline.j2 line {line}"))
            && error.contains("unknown filter `datetimeformat`"),
        "{error}"
    );
    // In a branch no example takes, and a test and a function that do not exist.
    for (source, needle) in [
        (
            "{% if product.kind == \"none\" %}{{ ticket_id | shout }}{% endif %}",
            "unknown filter `shout`",
        ),
        (
            "{% if product.kind is kind_of_match %}{% endif %}",
            "unknown test `kind_of_match`",
        ),
        (
            "{% if product.kind == \"none\" %}{{ now() }}{% endif %}",
            "unknown function `now`",
        ),
    ] {
        let error = load_error(&format!("{}\n{source}", example_source().trim_end()));
        let line = example_source().lines().count() + 1;
        assert!(
            error.contains(&format!("line {line}")) && error.contains(needle),
            "{needle}: {error}"
        );
    }
}

#[test]
fn a_key_written_twice_is_refused_at_load() {
    let source = example_with_tail(",\n  \"ticketId\": \"{{ organization }}-{{ ticket_id }}\"\n}\n");
    let line = source.lines().count() - 1;
    let error = load_error(&source);
    assert!(
        error.contains(&format!("line {line}")) && error.contains("writes ticketId twice"),
        "{error}"
    );
    // Nested keys are named with their path.
    let source = example_source().replace(
        "\"city\": \"{{ venue.city }}\",",
        "\"city\": \"{{ venue.city }}\", \"zip\": \"0000\",",
    );
    let error = load_error(&source);
    assert!(error.contains("event.address.zip twice"), "{error}");
}

#[test]
fn a_ticket_id_other_than_the_message_s_is_refused_at_load() {
    let source = example_source().replace(
        "\"ticketId\": \"{{ ticket_id }}\"",
        "\"ticketId\": \"{{ organization }}-{{ ticket_id }}\"",
    );
    let error = load_error(&source);
    assert!(
        error.contains("line ") && error.contains("ticketId is \"ACME-") && error.contains("ticket_id"),
        "{error}"
    );
}

#[test]
fn a_field_outside_the_contract_is_named() {
    let source = example_source().replace(
        "\"countryCode\": \"{{ venue.country_code }}\"",
        "\"countryCode\": \"{{ venue.country_code | lower }}\"",
    );
    let line = source.lines().position(|l| l.contains("| lower")).unwrap() + 1;
    let error = load_error(&source);
    assert!(
        error.contains(&format!("line {line}"))
            && error.contains("event.address.countryCode must be 2 upper-case letters"),
        "{error}"
    );
}

#[test]
fn mapping_and_template_follow_the_same_limits() {
    // 600 x "Ä" per team: each field is within the message's limits, the event name is 1,203
    // characters. The old template check refused it (an unwritten 1024 limit); the mapping sent it.
    let template = TicketTemplate::load(Path::new(EXAMPLE)).unwrap();
    let mut m = match_ticket("ACME", "T-AE");
    m["performance"]["host_team"] = json!("Ä".repeat(600));
    m["performance"]["opposing_team"] = json!("Ä".repeat(600));
    let ae = message(m);
    let rendered = template.render(&ae).unwrap();
    let via_template: Value = serde_json::from_str(rendered.json.get()).unwrap();
    let via_mapping = tixngo_bridge::tixngo::mapping::to_tixngo(&ae);
    assert_eq!(via_template["event"]["name"], via_mapping["event"]["name"]);
    assert!(tixngo_bridge::tixngo::contract::check_ticket(&via_mapping).is_empty());
    // Every bundled example through the mapping meets the contract the templates are held to.
    for (name, text) in tixngo_bridge::tixngo::template::EXAMPLES {
        let m = message(serde_json::from_str(text).unwrap());
        let problems =
            tixngo_bridge::tixngo::contract::check_ticket(&tixngo_bridge::tixngo::mapping::to_tixngo(&m));
        assert!(problems.is_empty(), "{name}: {problems:?}");
    }
}

#[test]
fn config_check_exits_78_naming_file_line_and_problem_for_each_broken_template() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "filter.json.j2",
            example_source().replace(
                "\"startDate\": \"{{ performance.start }}\"",
                "\"startDate\": \"{{ performance.start | datetimeformat }}\"",
            ),
            "unknown filter `datetimeformat`",
        ),
        (
            "duplicate.json.j2",
            example_with_tail(",\n  \"ticketId\": \"{{ organization }}-{{ ticket_id }}\"\n}\n"),
            "writes ticketId twice",
        ),
        (
            "ticket-id.json.j2",
            example_source().replace(
                "\"ticketId\": \"{{ ticket_id }}\"",
                "\"ticketId\": \"{{ organization }}-{{ ticket_id }}\"",
            ),
            "but the message's ticket_id is",
        ),
    ];
    for (file, source, problem) in cases {
        let template = dir.path().join(file);
        std::fs::write(&template, source).unwrap();
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
        assert_eq!(out.status.code(), Some(78), "{file}: {stderr}");
        assert!(
            stderr.contains(&format!("{file} line ")) && stderr.contains(problem),
            "{file}: {stderr}"
        );
    }
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
    // The exact bytes the bridge sends, not a re-serialization.
    let template = TicketTemplate::load(Path::new(EXAMPLE)).unwrap();
    let sent = template
        .render(&self::message(match_ticket("ACME", "R-1")))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), sent.json.get());
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

#[test]
fn a_refused_date_names_the_field_not_a_column() {
    let mut m = match_ticket("ACME", "D-1");
    m["performance"]["start"] = json!("2026-12-06 18:00");
    let body = serde_json::to_vec(&m).unwrap();
    let error = tixngo_bridge::messages::from_json::<InjectMessage>(&body)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("performance.start: ") && !error.contains("column"),
        "{error}"
    );
    // And through `render`, as an operator meets it.
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("m.json");
    std::fs::write(&message, &body).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tixngo-bridge"))
        .args(["render", "--organization", "ACME", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
        .arg("--message")
        .arg(&message)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("performance.start: ") && !stderr.contains("column"),
        "{stderr}"
    );
}
