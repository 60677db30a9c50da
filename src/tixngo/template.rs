//! Ticket templates for interfaces of kind `tixngo_with_template` (minijinja: Jinja2 syntax,
//! maintained, no unsafe code, and strict undefined handling).
//!
//! A template renders one TIXnGO ticket as JSON from the S-360 injection message. Values are
//! written JSON-escaped (without quotes), so `"name": "{{ performance.host_team }}"` stays a valid
//! JSON string whatever the team is called; `{{ value | tojson }}` writes a whole JSON value
//! (number, list, object, or a quoted string). A variable the message does not have is an error
//! naming the template and the variable, not an empty string.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use minijinja::machinery::Instruction;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value, value::ValueKind};
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::contract::check_ticket;
use super::document::TicketDocument;
use crate::messages::{InjectMessage, TicketMessage};

/// The name the template is registered under inside its environment.
const NAME: &str = "ticket";

/// The injection examples every template must render into a valid ticket when it loads, one per
/// product kind, built into the binary so it needs no file of the repository.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "inject-match.json",
        include_str!("../../schemas/examples/inject-match.json"),
    ),
    (
        "inject-event.json",
        include_str!("../../schemas/examples/inject-event.json"),
    ),
    (
        "inject-service.json",
        include_str!("../../schemas/examples/inject-service.json"),
    ),
    (
        "inject-open-pass.json",
        include_str!("../../schemas/examples/inject-open-pass.json"),
    ),
    (
        "inject-membership-card.json",
        include_str!("../../schemas/examples/inject-membership-card.json"),
    ),
    (
        "inject-season-ticket.json",
        include_str!("../../schemas/examples/inject-season-ticket.json"),
    ),
];

/// The injection message's schema: which variables a template may use.
const INJECT_SCHEMA: &str = include_str!("../../schemas/inject.schema.json");

/// Names a template may call although neither the environment nor the template defines them.
const SPECIAL_FUNCTIONS: &[&str] = &["loop", "super", "caller", "self", "varargs", "kwargs"];

/// A compiled ticket template.
#[derive(Debug)]
pub struct TicketTemplate {
    /// The template file, named in every error.
    path: PathBuf,
    /// Compiled template with the bridge's formatter.
    env: Environment<'static>,
    /// The template's text, to find the line that writes a key an error names.
    source: String,
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
    /// The template compiles but cannot work: it uses a filter, test, function or variable that
    /// does not exist, or one of the bundled examples does not render into a valid ticket.
    #[error("template {path}{}: {detail}", line_suffix(*.line))]
    Invalid {
        /// Template file.
        path: String,
        /// Line of the template the problem is on, when it can be told.
        line: Option<usize>,
        /// What is wrong, naming the variable or ticket field.
        detail: String,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

/// Why a rendering was refused: the problem and, when it can be told, the template's line.
#[derive(Debug)]
struct Refusal {
    /// Line of the template.
    line: Option<usize>,
    /// What is wrong.
    detail: String,
}

impl TicketTemplate {
    /// Reads, compiles and checks `path` (see [`TicketTemplate::from_source`]).
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let source = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_source(path, source)
    }

    /// Compiles `source` and checks everything that can be checked before a real ticket arrives:
    /// every filter, test and function it uses exists, every variable it reads is a field of the
    /// injection message, and each bundled example (every product kind, with all its optional
    /// sections and with as few as it can have) renders into a ticket that meets the TIXnGO
    /// contract. So a template that cannot work fails `config check` and start-up, not tickets.
    pub fn from_source(path: &Path, source: String) -> Result<Self, TemplateError> {
        let name = path.display().to_string();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_formatter(json_formatter);
        // A template is configuration, but keep a runaway loop from stalling a worker.
        env.set_fuel(Some(1_000_000));
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| TemplateError::Syntax {
                path: name.clone(),
                line: e.line().unwrap_or(0),
                detail: e
                    .detail()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.kind().to_string()),
            })?;
        let template = Self {
            path: path.to_owned(),
            env,
            source,
        };
        let invalid = |refusal: Refusal| TemplateError::Invalid {
            path: name.clone(),
            line: refusal.line,
            detail: refusal.detail,
        };
        template.check_names().map_err(invalid)?;
        for (example, text) in EXAMPLES {
            for (variant, message) in example_variants(text) {
                template.render_checked(&message).map_err(|refusal| {
                    invalid(Refusal {
                        detail: format!(
                            "{} (rendering the bundled example {example}{variant})",
                            refusal.detail
                        ),
                        ..refusal
                    })
                })?;
            }
        }
        Ok(template)
    }

    /// Renders the TIXnGO ticket for `message`, checking it is one JSON object without repeated
    /// keys, that its `ticketId` is the message's `ticket_id`, and that it meets the TIXnGO
    /// contract (docs/tixngo-api.md). The error names the template, the line when known, and the
    /// variable or field.
    pub fn render(&self, message: &InjectMessage) -> Result<TicketDocument, String> {
        self.render_checked(message).map_err(|refusal| {
            format!(
                "template {}{}: {}",
                self.path.display(),
                line_suffix(refusal.line),
                refusal.detail
            )
        })
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn render_checked(&self, message: &InjectMessage) -> Result<TicketDocument, Refusal> {
        let template = self.env.get_template(NAME).map_err(|e| Refusal {
            line: e.line(),
            detail: e.to_string(),
        })?;
        let output = template
            .render(Value::from(minijinja::value::Serde(message)))
            .map_err(|e| Refusal {
                line: e.line(),
                detail: describe(&e),
            })?;
        let value = parse_unique(&output).map_err(|(detail, key)| Refusal {
            line: key.and_then(|key| line_of_key(self.source(), &key, true)),
            detail,
        })?;
        let problems = check_ticket(&value);
        if let Some(first) = problems.first() {
            let key = first.path.rsplit(['.', ']']).next().unwrap_or_default();
            let list = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Refusal {
                line: line_of_key(self.source(), key, false),
                detail: format!("the ticket does not meet the TIXnGO contract: {list}"),
            });
        }
        let ticket_id = value["ticketId"].as_str().unwrap_or_default().to_owned();
        if ticket_id != message.ticket_id() {
            return Err(Refusal {
                line: line_of_key(self.source(), "ticketId", false),
                detail: format!(
                    "ticketId is {ticket_id:?} but the message's ticket_id is {:?}: write ticket_id \
                     unchanged (S-360's id is the ticket's identity for every later cancel, control \
                     and status)",
                    message.ticket_id()
                ),
            });
        }
        let json = RawValue::from_string(output).map_err(|e| Refusal {
            line: None,
            detail: e.to_string(),
        })?;
        Ok(TicketDocument { ticket_id, json })
    }

    /// Every filter, test and function the template uses exists, and every variable it reads is
    /// a field of the injection message, including in branches no example takes.
    fn check_names(&self) -> Result<(), Refusal> {
        let template = self.env.get_template(NAME).map_err(|e| Refusal {
            line: e.line(),
            detail: e.to_string(),
        })?;
        let compiled = minijinja::machinery::get_compiled_template(&template);
        let blocks = std::iter::once(&compiled.instructions).chain(compiled.blocks.values());
        let globals: HashSet<String> = self.env.globals().map(|(name, _)| name.to_owned()).collect();
        let mut locals = HashSet::new();
        let mut used = Vec::new();
        for instructions in blocks {
            let mut index = 0;
            while let Some(instruction) = instructions.get(index) {
                let line = instructions.get_line(index);
                match instruction {
                    Instruction::StoreLocal(name) => {
                        locals.insert((*name).to_owned());
                    }
                    Instruction::ApplyFilter(name, ..) => used.push(("filter", *name, line)),
                    Instruction::PerformTest(name, ..) => used.push(("test", *name, line)),
                    Instruction::CallFunction(name, ..) => used.push(("function", *name, line)),
                    _ => {}
                }
                index += 1;
            }
        }
        for (what, name, line) in used {
            let known = match what {
                "filter" => !self.is_unknown(&format!("{{{{ none | {name} }}}}"), ErrorKind::UnknownFilter),
                "test" => !self.is_unknown(&format!("{{{{ none is {name} }}}}"), ErrorKind::UnknownTest),
                _ => globals.contains(name) || locals.contains(name) || SPECIAL_FUNCTIONS.contains(&name),
            };
            if !known {
                return Err(Refusal {
                    line,
                    detail: format!("unknown {what} `{name}`"),
                });
            }
        }
        let fields = message_fields();
        let mut undeclared: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        undeclared.sort();
        for variable in undeclared {
            let root = variable.split('.').next().unwrap_or_default();
            if globals.contains(root) || fields.contains(&variable) {
                continue;
            }
            return Err(Refusal {
                line: line_of(self.source(), &variable),
                detail: format!(
                    "variable `{variable}` is not a field of the injection message \
                     (schemas/inject.schema.json; README \"Ticket templates\" lists them)"
                ),
            });
        }
        Ok(())
    }

    /// Whether rendering `probe` in this environment fails with `kind`.
    fn is_unknown(&self, probe: &str, kind: ErrorKind) -> bool {
        matches!(self.env.render_str(probe, ()), Err(e) if e.kind() == kind)
    }
}

/// Describes a rendering error, naming the variable when one is undefined: minijinja knows the
/// span of the failing expression, which is the variable as the template writes it.
fn describe(error: &Error) -> String {
    let expression = error
        .range()
        .zip(error.template_source())
        .and_then(|(range, source)| source.get(range))
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    match (error.kind(), expression) {
        (ErrorKind::UndefinedError, Some(expression)) => format!(
            "`{expression}` is not in the message (an optional field S-360 left out? guard it with `is defined`)"
        ),
        (ErrorKind::UndefinedError, None) => format!(
            "a variable is not in the message ({})",
            error.detail().unwrap_or("undefined value")
        ),
        (_, Some(expression)) => format!(
            "{}: {} (in `{expression}`)",
            error.kind(),
            error.detail().unwrap_or_default()
        ),
        (_, None) => match error.detail() {
            Some(detail) => format!("{}: {detail}", error.kind()),
            None => error.kind().to_string(),
        },
    }
}

/// The 1-based line of the first occurrence of `text` in `source`.
fn line_of(source: &str, text: &str) -> Option<usize> {
    let at = source.find(text)?;
    Some(source[..at].matches('\n').count() + 1)
}

/// The line that writes the JSON key `key` (`"key"`): the first one, or the last one when
/// `last` (for a key written twice, the second writing is the culprit).
fn line_of_key(source: &str, key: &str, last: bool) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    let quoted = format!("\"{key}\"");
    let at = if last {
        source.rfind(&quoted)
    } else {
        source.find(&quoted)
    }?;
    Some(source[..at].matches('\n').count() + 1)
}

/// Every variable path a template may read: `product`, `product.kind`, … from the schema.
fn message_fields() -> BTreeSet<String> {
    let mut fields = BTreeSet::new();
    let Ok(schema) = serde_json::from_str::<serde_json::Value>(INJECT_SCHEMA) else {
        return fields;
    };
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            fields.insert(name.clone());
            if let Some(members) = property["properties"].as_object() {
                for member in members.keys() {
                    fields.insert(format!("{name}.{member}"));
                }
            }
        }
    }
    fields
}

/// The message of a bundled example as written, then with as many optional fields removed as a
/// valid message allows, so `is defined` guards are exercised both ways. The second part of each
/// pair says which variant it is, for the error.
fn example_variants(text: &str) -> Vec<(&'static str, InjectMessage)> {
    let Ok(full) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let valid = |value: &serde_json::Value| {
        serde_json::from_value::<InjectMessage>(value.clone())
            .ok()
            .filter(|m| m.validate().is_ok())
    };
    let mut variants = Vec::new();
    if let Some(message) = valid(&full) {
        variants.push(("", message));
    }
    let Ok(schema) = serde_json::from_str::<serde_json::Value>(INJECT_SCHEMA) else {
        return variants;
    };
    let required = |node: &serde_json::Value| -> HashSet<String> {
        node["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let mut optional: Vec<(String, Option<String>)> = Vec::new();
    let top_required = required(&schema);
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            if !top_required.contains(name) {
                optional.push((name.clone(), None));
            }
            let inner_required = required(property);
            if let Some(members) = property["properties"].as_object() {
                for member in members.keys().filter(|m| !inner_required.contains(*m)) {
                    optional.push((name.clone(), Some(member.clone())));
                }
            }
        }
    }
    let mut minimal = full.clone();
    for (name, member) in optional {
        let mut candidate = minimal.clone();
        let removed = match (&member, candidate.as_object_mut()) {
            (None, Some(object)) => object.remove(&name).is_some(),
            (Some(member), Some(object)) => object
                .get_mut(&name)
                .and_then(serde_json::Value::as_object_mut)
                .is_some_and(|inner| inner.remove(member).is_some()),
            _ => false,
        };
        if removed && valid(&candidate).is_some() {
            minimal = candidate;
        }
    }
    if minimal != full
        && let Some(message) = valid(&minimal)
    {
        variants.push((" without its optional fields", message));
    }
    variants
}

/// Parses `text` as JSON like `serde_json` does, but refuses an object that has the same key twice
/// (`serde_json` keeps the last, and TIXnGO may read either): the error, and the repeated key.
fn parse_unique(text: &str) -> Result<serde_json::Value, (String, Option<String>)> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = Unique { path: String::new() }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|e| {
        let message = e.to_string();
        match message.strip_prefix(DUPLICATE) {
            Some(rest) => {
                let path = rest.split(" at line ").next().unwrap_or(rest).to_owned();
                let key = path.rsplit(['.', ']']).next().unwrap_or_default().to_owned();
                (
                    format!(
                        "the ticket writes {path} twice; TIXnGO would keep one of them and the \
                         bridge could not tell which"
                    ),
                    Some(key),
                )
            }
            None => (format!("the ticket is not valid JSON: {message}"), None),
        }
    })
}

/// Start of the error [`Unique`] raises for a repeated key, followed by the key's path.
const DUPLICATE: &str = "duplicate key ";

/// Deserializes one JSON value at `path`, refusing repeated keys.
struct Unique {
    /// Where the value is in the ticket (`event.address`), for the error.
    path: String,
}

impl Unique {
    fn at(&self, member: &str) -> Self {
        Self {
            path: if self.path.is_empty() {
                member.to_owned()
            } else {
                format!("{}.{member}", self.path)
            },
        }
    }
}

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Unique {
            path: format!("{}[{}]", self.path, items.len()),
        })? {
            items.push(item);
        }
        Ok(items.into())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let member = self.at(&key);
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("{DUPLICATE}{}", member.path)));
            }
            let value = map.next_value_seed(member)?;
            object.insert(key, value);
        }
        Ok(object.into())
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
