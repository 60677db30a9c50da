//! The JSON Schemas under `schemas/` describe the same contract as the Rust types: every valid
//! example passes its schema, deserializes into its type and passes `validate`; every invalid
//! example fails both. An example belongs to the schema its file name starts with. No broker.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tixngo_bridge::flows::status::StatusReply;
use tixngo_bridge::messages::{
    CancelMessage, ControlMessage, InjectMessage, MAX_BARCODE_CHARS, MAX_TEXT_CHARS, MAX_TICKET_ID_CHARS,
    OutcomeEvent, StatusQuery, TicketMessage,
};
use tixngo_bridge::tixngo::S360Status;

/// Every schema, by the name its file carries (`schemas/<name>.schema.json`).
const SCHEMAS: &[&str] = &[
    "inject",
    "cancel",
    "control",
    "status-query",
    "status-reply",
    "outcome-event",
];

/// Examples the documentation promises, one per product kind and one per message.
const PROMISED_EXAMPLES: &[&str] = &[
    "inject-match.json",
    "inject-event.json",
    "inject-open-pass.json",
    "inject-service.json",
    "inject-membership-card.json",
    "inject-season-ticket.json",
    "cancel.json",
    "control.json",
    "status-query.json",
    "status-reply.json",
    "outcome-inject-succeeded.json",
    "outcome-control-dead-lettered.json",
    "outcome-status-changed.json",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn schema(name: &str) -> Value {
    read_json(&root().join("schemas").join(format!("{name}.schema.json")))
}

/// A validator that also checks `format` (date-time), which 2020-12 treats as annotation only.
fn validator(name: &str) -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema(name))
        .unwrap_or_else(|e| panic!("schemas/{name}.schema.json does not compile: {e}"))
}

/// The schema errors of `instance`, one line each; empty when valid.
fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} (at {:?})", e.instance_path().as_str()))
        .collect()
}

/// The schema an example belongs to, by its file name's prefix.
fn schema_for(file_name: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("inject-", "inject"),
        ("cancel", "cancel"),
        ("control", "control"),
        ("status-query", "status-query"),
        ("status-reply", "status-reply"),
        ("outcome-", "outcome-event"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| file_name.starts_with(prefix))
        .map(|(_, schema)| *schema)
        .unwrap_or_else(|| panic!("example {file_name} has no known prefix: name it after its schema"))
}

/// The `.json` files directly in `dir`, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Reads `text` the way the bridge does for `schema`: deserialize, then `validate` for S-360's
/// messages. Returns the value as the Rust type serializes it again.
fn rust_check(schema: &str, text: &str) -> Result<Value, String> {
    match schema {
        "inject" => typed::<InjectMessage>(text),
        "cancel" => typed::<CancelMessage>(text),
        "control" => typed::<ControlMessage>(text),
        "status-query" => typed::<StatusQuery>(text),
        "outcome-event" => {
            let event: OutcomeEvent =
                serde_json::from_str(text).map_err(|e| format!("does not deserialize: {e}"))?;
            Ok(serde_json::to_value(event).unwrap())
        }
        "status-reply" => status_reply(text),
        other => panic!("no Rust type for schema {other}"),
    }
}

fn typed<M: DeserializeOwned + TicketMessage + Serialize>(text: &str) -> Result<Value, String> {
    let message: M = serde_json::from_str(text).map_err(|e| format!("does not deserialize: {e}"))?;
    message.validate().map_err(|e| format!("fails validate: {e}"))?;
    Ok(serde_json::to_value(&message).unwrap())
}

/// `StatusReply` is only ever serialized: build one from the example's values (its S-360 status
/// mapped from the TIXnGO status the way the bridge maps it) and serialize it.
fn status_reply(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let string = |field: &str| {
        value[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{field} is not a string"))
    };
    let tixngo_status = match &value["tixngo_status"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => return Err(format!("tixngo_status is {other}")),
    };
    let reply = StatusReply {
        organization: string("organization")?,
        ticket_id: string("ticket_id")?,
        found: value["found"].as_bool().ok_or("found is not a boolean")?,
        s360_status: tixngo_status
            .as_deref()
            .map(|s| S360Status::from_tixngo(s).as_str()),
        tixngo_status,
        read_at: string("read_at")?,
    };
    Ok(serde_json::to_value(reply).unwrap())
}

#[test]
fn every_schema_is_valid_json_schema_2020_12() {
    let on_disk: BTreeSet<String> = json_files(&root().join("schemas"))
        .iter()
        .map(|path| file_name(path))
        .collect();
    let expected: BTreeSet<String> = SCHEMAS.iter().map(|name| format!("{name}.schema.json")).collect();
    assert_eq!(on_disk, expected, "schemas/ holds exactly one schema per message");
    for name in SCHEMAS {
        let schema = schema(name);
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name} declares draft 2020-12"
        );
        if let Err(error) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("schemas/{name}.schema.json is not a valid 2020-12 schema: {error}");
        }
        validator(name);
    }
}

#[test]
fn every_property_says_why_it_exists() {
    fn walk(node: &Value, path: &str, missing: &mut Vec<String>) {
        let Some(object) = node.as_object() else { return };
        if let Some(Value::Object(properties)) = object.get("properties") {
            for (key, property) in properties {
                let here = format!("{path}/{key}");
                // Properties inside `if`/`then` only add constraints to one described elsewhere.
                if !path.contains("/if") && !path.contains("/then") && !path.contains("/else") {
                    let described = property["description"]
                        .as_str()
                        .is_some_and(|d| !d.trim().is_empty());
                    if property.is_object() && !described {
                        missing.push(here.clone());
                    }
                }
                walk(property, &here, missing);
            }
        }
        for (key, child) in object {
            if key == "properties" {
                continue;
            }
            match child {
                Value::Object(_) => walk(child, &format!("{path}/{key}"), missing),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        walk(item, &format!("{path}/{key}/{i}"), missing);
                    }
                }
                _ => {}
            }
        }
    }
    for name in SCHEMAS {
        let schema = schema(name);
        assert!(schema["description"].is_string(), "{name} has a description");
        let mut missing = Vec::new();
        walk(&schema, "", &mut missing);
        assert!(
            missing.is_empty(),
            "{name}: properties without a description: {missing:#?}"
        );
    }
}

#[test]
fn valid_examples_pass_their_schema_and_the_rust_types() {
    let dir = root().join("schemas/examples");
    let files = json_files(&dir);
    let names: BTreeSet<String> = files.iter().map(|path| file_name(path)).collect();
    for promised in PROMISED_EXAMPLES {
        assert!(
            names.contains(*promised),
            "missing example schemas/examples/{promised}"
        );
    }
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    for path in &files {
        let name = file_name(path);
        let schema = schema_for(&name);
        covered.insert(schema);
        let text = fs::read_to_string(path).unwrap();
        let instance: Value = serde_json::from_str(&text).unwrap();
        let validator = validator(schema);
        for error in schema_errors(&validator, &instance) {
            failures.push(format!("{name}: schema {schema}: {error}"));
        }
        match rust_check(schema, &text) {
            Err(error) => failures.push(format!("{name}: Rust type: {error}")),
            Ok(again) => {
                // What the Rust type writes back must still be valid against the schema.
                for error in schema_errors(&validator, &again) {
                    failures.push(format!("{name}: re-serialized: {error}"));
                }
                // The bridge's own messages: the example is exactly what the bridge writes.
                if matches!(schema, "outcome-event" | "status-reply") && again != instance {
                    failures.push(format!("{name}: the bridge would write {again}, not the example"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    for schema in SCHEMAS {
        assert!(covered.contains(schema), "schema {schema} has no example");
    }
}

#[test]
fn the_inject_examples_cover_every_product_kind() {
    let kinds: BTreeSet<String> = json_files(&root().join("schemas/examples"))
        .iter()
        .filter(|path| file_name(path).starts_with("inject-"))
        .map(|path| read_json(path)["product"]["kind"].as_str().unwrap().to_owned())
        .collect();
    let all = schema("inject")["properties"]["product"]["properties"]["kind"]["enum"].clone();
    let all: BTreeSet<String> = serde_json::from_value(all).unwrap();
    assert_eq!(kinds, all);
}

#[test]
fn invalid_examples_fail_their_schema_and_the_rust_types() {
    let files = json_files(&root().join("schemas/examples/invalid"));
    assert!(files.len() >= 3, "a few invalid examples show what is refused");
    let mut failures = Vec::new();
    for path in &files {
        let name = file_name(path);
        let schema = schema_for(&name);
        let text = fs::read_to_string(path).unwrap();
        let instance: Value = serde_json::from_str(&text).unwrap();
        if schema_errors(&validator(schema), &instance).is_empty() {
            failures.push(format!("{name}: the schema {schema} accepts it"));
        }
        if rust_check(schema, &text).is_ok() {
            failures.push(format!("{name}: the Rust type accepts it"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Optional (`Option`) fields may be null as well as absent, in both; non-optional ones with a
/// default (`linked_ticket_ids`, `show_deleted_ticket`) may not be null, in both.
#[test]
fn schema_and_rust_types_agree_on_null() {
    let inject = read_json(&root().join("schemas/examples/inject-match.json"));
    let cancel = read_json(&root().join("schemas/examples/cancel.json"));
    let with = |base: &Value, pointer: &str, value: Value| {
        let mut changed = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        changed.pointer_mut(parent).unwrap()[key] = value;
        changed
    };
    let cases = [
        ("inject", with(&inject, "/seat", Value::Null), true),
        ("inject", with(&inject, "/activation", Value::Null), true),
        ("inject", with(&inject, "/product/code", Value::Null), true),
        ("inject", with(&inject, "/performance/end", Value::Null), true),
        ("inject", with(&inject, "/purchase/price", Value::Null), true),
        ("inject", with(&inject, "/spectator/email", Value::Null), true),
        ("inject", with(&inject, "/linked_ticket_ids", json!([])), true),
        ("inject", with(&inject, "/linked_ticket_ids", Value::Null), false),
        ("inject", with(&inject, "/performance", Value::Null), false),
        (
            "inject",
            with(&inject, "/performance/host_team", Value::Null),
            false,
        ),
        ("inject", with(&inject, "/spectator", Value::Null), false),
        ("inject", with(&inject, "/spectator", json!({})), true),
        ("inject", with(&inject, "/purchase/price", json!(45)), true),
        (
            "inject",
            with(&inject, "/venue/zip", json!("4".repeat(33))),
            false,
        ),
        (
            "inject",
            with(&inject, "/ticket_id", json!("T".repeat(MAX_TICKET_ID_CHARS))),
            true,
        ),
        (
            "inject",
            with(&inject, "/barcode", json!("é".repeat(MAX_BARCODE_CHARS))),
            true,
        ),
        (
            "cancel",
            with(&cancel, "/show_deleted_ticket", Value::Null),
            false,
        ),
        ("cancel", with(&cancel, "/reason", json!("")), false),
    ];
    let mut failures = Vec::new();
    for (schema, instance, expected) in cases {
        let by_schema = schema_errors(&validator(schema), &instance).is_empty();
        let by_rust = rust_check(schema, &instance.to_string()).is_ok();
        if by_schema != expected || by_rust != expected {
            failures.push(format!(
                "{schema} {instance}: expected valid={expected}, schema says {by_schema}, Rust says {by_rust}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn schema_limits_are_the_rust_limits() {
    let inject = schema("inject");
    let limit = |schema: &Value, pointer: &str| {
        schema
            .pointer(&format!("{pointer}/maxLength"))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("no maxLength at {pointer}")) as usize
    };
    assert_eq!(limit(&inject, "/properties/ticket_id"), MAX_TICKET_ID_CHARS);
    assert_eq!(
        limit(&inject, "/properties/linked_ticket_ids/items"),
        MAX_TICKET_ID_CHARS
    );
    assert_eq!(limit(&inject, "/properties/barcode"), MAX_BARCODE_CHARS);
    assert_eq!(
        limit(&inject, "/properties/product/properties/name"),
        MAX_TEXT_CHARS
    );
    for name in ["inject", "cancel", "control", "status-query"] {
        let schema = schema(name);
        assert_eq!(
            limit(&schema, "/properties/ticket_id"),
            MAX_TICKET_ID_CHARS,
            "{name}"
        );
        assert_eq!(limit(&schema, "/properties/organization"), 64, "{name}");
    }
}

/// The AsyncAPI document points at these schema files, and at every one of them.
#[test]
fn asyncapi_refers_to_every_schema_file() {
    let path = root().join("docs/asyncapi.yaml");
    let text = fs::read_to_string(&path).unwrap();
    let mut referenced = BTreeSet::new();
    for (at, _) in text.match_indices("../schemas/") {
        let rest = &text[at..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '#')
            .unwrap_or(rest.len());
        let target = &rest[..end];
        assert!(
            root().join("docs").join(target).is_file(),
            "docs/asyncapi.yaml refers to {target}, which does not exist"
        );
        referenced.insert(target.trim_start_matches("../schemas/").to_owned());
    }
    for name in SCHEMAS {
        assert!(
            referenced.contains(&format!("{name}.schema.json")),
            "docs/asyncapi.yaml does not refer to schemas/{name}.schema.json"
        );
    }
}
