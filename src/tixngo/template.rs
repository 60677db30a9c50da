//! Ticket templates for interfaces of kind `tixngo_with_template` (minijinja: Jinja2 syntax,
//! maintained, no unsafe code, and strict undefined handling).
//!
//! A template renders one TIXnGO ticket as JSON from the S-360 injection message. Values are
//! written JSON-escaped (without quotes), so `"name": "{{ performance.host_team }}"` stays a valid
//! JSON string whatever the team is called; `{{ value | tojson }}` writes a whole JSON value
//! (number, list, object, or a quoted string). A variable the message does not have is an error
//! naming the template and the variable, not an empty string.

use std::path::{Path, PathBuf};

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value, value::ValueKind};
use serde_json::value::RawValue;

use super::document::TicketDocument;
use crate::messages::{InjectMessage, MAX_BARCODE_CHARS, MAX_TICKET_ID_CHARS};

/// The name the template is registered under inside its environment.
const NAME: &str = "ticket";

/// A compiled ticket template.
#[derive(Debug)]
pub struct TicketTemplate {
    /// The template file, named in every error.
    path: PathBuf,
    /// Compiled template with the bridge's formatter.
    env: Environment<'static>,
}

/// A template that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file cannot be read.
    #[error("cannot read template {path}: {source}")]
    Read {
        /// Template file.
        path: String,
        /// I/O error.
        source: std::io::Error,
    },
    /// The template does not compile.
    #[error("template {path} line {line}: {detail}")]
    Syntax {
        /// Template file.
        path: String,
        /// Line of the error (1-based; 0 when unknown).
        line: usize,
        /// What is wrong.
        detail: String,
    },
}

impl TicketTemplate {
    /// Reads and compiles `path`.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let source = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_source(path, source)
    }

    /// Compiles `source` (tests and `render`).
    pub fn from_source(path: &Path, source: String) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_formatter(json_formatter);
        // A template is configuration, but keep a runaway loop from stalling a worker.
        env.set_fuel(Some(1_000_000));
        env.add_template_owned(NAME, source)
            .map_err(|e| TemplateError::Syntax {
                path: path.display().to_string(),
                line: e.line().unwrap_or(0),
                detail: e
                    .detail()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.kind().to_string()),
            })?;
        Ok(Self {
            path: path.to_owned(),
            env,
        })
    }

    /// Renders the TIXnGO ticket for `message`, checking it is valid JSON with TIXnGO's required
    /// fields. The error names the template and the problem.
    pub fn render(&self, message: &InjectMessage) -> Result<TicketDocument, String> {
        let name = self.path.display();
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| format!("template {name}: {e}"))?;
        let output = template
            .render(Value::from(minijinja::value::Serde(message)))
            .map_err(|e| describe(&name, &e))?;
        let value: serde_json::Value = serde_json::from_str(&output)
            .map_err(|e| format!("template {name} did not produce valid JSON: {e}"))?;
        check_required(&value).map_err(|problem| format!("template {name}: {problem}"))?;
        let ticket_id = value["ticketId"].as_str().unwrap_or_default().to_owned();
        let json = RawValue::from_string(output).map_err(|e| format!("template {name}: {e}"))?;
        Ok(TicketDocument { ticket_id, json })
    }
}

fn describe(name: &impl std::fmt::Display, error: &Error) -> String {
    let line = error.line().map(|l| format!(" line {l}")).unwrap_or_default();
    match error.kind() {
        ErrorKind::UndefinedError => format!(
            "template {name}{line}: a variable is not in the message ({})",
            error.detail().unwrap_or("undefined value")
        ),
        _ => format!("template {name}{line}: {error}"),
    }
}

/// Writes strings JSON-escaped without quotes, `none` as nothing, everything else as JSON.
/// Output of `tojson` (marked safe) is written as is.
fn json_formatter(out: &mut minijinja::Output, _: &mut minijinja::State, value: &Value) -> Result<(), Error> {
    let io = |_| Error::new(ErrorKind::WriteFailure, "cannot write template output");
    if value.is_safe() {
        return out.write_str(value.as_str().unwrap_or_default()).map_err(io);
    }
    match value.kind() {
        ValueKind::None | ValueKind::Undefined => Ok(()),
        ValueKind::String => {
            let quoted = serde_json::to_string(value.as_str().unwrap_or_default())
                .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
            out.write_str(&quoted[1..quoted.len() - 1]).map_err(io)
        }
        ValueKind::Bool | ValueKind::Number => out.write_str(&value.to_string()).map_err(io),
        _ => {
            let json = serde_json::to_string(value)
                .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
            out.write_str(&json).map_err(io)
        }
    }
}

/// The fields TIXnGO requires (docs/tixngo-api.md), with their limits.
pub fn check_required(ticket: &serde_json::Value) -> Result<(), String> {
    let text = |path: &str, max: usize| -> Result<(), String> {
        let mut node = ticket;
        for part in path.split('.') {
            node = node
                .get(part)
                .ok_or_else(|| format!("required field {path} is missing"))?;
        }
        match node.as_str() {
            Some(s) if !s.trim().is_empty() && s.chars().count() <= max => Ok(()),
            Some(s) if s.trim().is_empty() => Err(format!("required field {path} is empty")),
            Some(_) => Err(format!("field {path} is longer than {max} characters")),
            None => Err(format!("field {path} must be a string")),
        }
    };
    let object = |path: &str| -> Result<(), String> {
        match ticket.get(path) {
            Some(v) if v.is_object() => Ok(()),
            Some(_) => Err(format!("field {path} must be an object")),
            None => Err(format!("required field {path} is missing")),
        }
    };
    if !ticket.is_object() {
        return Err("the output must be one JSON object (a TIXnGO ticket)".into());
    }
    text("ticketId", MAX_TICKET_ID_CHARS)?;
    object("event")?;
    text("event.name", 1024)?;
    text("event.startDate", 64)?;
    for field in ["site", "city", "zip", "countryCode"] {
        text(&format!("event.address.{field}"), 1024)?;
    }
    object("purchaseDetails")?;
    text("purchaseDetails.purchaseDate", 64)?;
    object("security")?;
    text("security.barcode", MAX_BARCODE_CHARS)?;
    object("spectatorDetails")
}
