//! The contract test over docs/tixngo-api.md (issue 3): the page is read at test time, so the
//! documentation cannot drift from the simulator or from the bridge's client.
//!
//! - Every example marked `<!-- contract: NAME request|body|response -->` in the page is sent to
//!   a fresh simulator over HTTP, after its `# given:` set-up, and the answer must match the one
//!   shown.
//! - The same request is then made with the bridge's `TixngoClient` against another fresh
//!   simulator in the same state; the client must classify the answer (and each item of it) as
//!   the tables of section 9 say: success, idempotent success, transient or permanent.
//! - The code tables of sections 1, 3, 4, 5 and 9 are read: a row that no example (or, for
//!   section 9's situations without an HTTP status, no scenario below) exercises fails, and so
//!   does an example whose code no table lists.
//!
//! Matching rule for answers (stated for readers in section 1 of the page): the documented
//! status, the documented headers, and a body with the same members, arrays of the same length
//! and values of the same JSON type. Values must be equal, with two exceptions: `…` inside a
//! documented string stands for any text, and a documented RFC 3339 date-time stands for any
//! RFC 3339 date-time (the simulator's clock). Everything else the simulator returns is stable
//! (ticket ids, codes, statuses, messages, pagination keys), so it is compared exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use futures::future::join_all;
use reqwest::{Client, Method, Url};
use serde_json::{Value, json};
use tixngo_bridge::config;
use tixngo_bridge::tixngo::error::status_class;
use tixngo_bridge::tixngo::{
    CallError, CancelItem, ControlItem, DiffPage, ErrorClass, ItemResult, TicketDocument, TicketState,
    TixngoClient, client::http_client,
};
use tixngo_sim::{self as sim, Faults, RunningSim, SimConfig};

use crate::helpers::{ORGS, eventually};

const DOC: &str = "docs/tixngo-api.md";
/// The organization `{base}` and `<key>` stand for in the examples.
const ORG: &str = ORGS[0].0;
const KEY: &str = ORGS[0].1;
/// How long a simulated timeout hangs for the examples: the 504 example needs the hang to end,
/// and no example needs it long.
const EXAMPLE_HANG: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// Reading the page
// ---------------------------------------------------------------------------------------------

/// Where something is in the page, so a failure says which section to read.
#[derive(Debug, Clone)]
struct Place {
    /// The `## ` heading above it.
    section: String,
    /// 1-based line, to find it in an editor.
    line: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DOC} section \"{}\" (line {})", self.section, self.line)
    }
}

/// A Markdown table of the page.
#[derive(Debug)]
struct Table {
    /// Its section and first line.
    place: Place,
    /// The `### ` heading above it: section 9 has three tables.
    subsection: String,
    /// Header cells, to tell a code table from a field table.
    header: Vec<String>,
    /// Body rows (the `|---|` line removed).
    rows: Vec<Row>,
}

#[derive(Debug, Clone)]
struct Row {
    /// 1-based line, for failure messages.
    line: usize,
    /// Cells, trimmed, Markdown kept.
    cells: Vec<String>,
}

impl Row {
    fn cell(&self, i: usize) -> &str {
        self.cells.get(i).map(String::as_str).unwrap_or("")
    }
}

/// A simulator set-up step (`# given: …`).
#[derive(Debug, Clone)]
enum Given {
    /// The ticket exists (injected by this test with content of its own) in this status.
    Ticket { id: String, status: String },
    /// The organization's faults (`PUT /admin/tenants/{org}/faults`).
    Faults(Value),
    /// `--max-batch`.
    MaxBatch(usize),
}

/// Header lines of an example, in order, as written.
type Headers = Vec<(String, String)>;

#[derive(Debug, Clone)]
struct Request {
    /// `GET`, `POST`…
    method: String,
    /// URL with `{base}` or `HOST:PORT` still in it.
    target: String,
    /// Exactly the headers to send (none is added, so missing ones can be shown).
    headers: Headers,
    /// Sent as written (not re-serialized), so a body that is not JSON can be shown.
    body: Option<String>,
}

#[derive(Debug, Clone)]
struct Response {
    /// HTTP status.
    status: u16,
    /// Headers the answer must carry (others are ignored).
    headers: Headers,
    /// Documented body, `null` when none is shown.
    body: Value,
}

/// One documented example: set-up, request and the answer the page promises.
#[derive(Debug, Clone)]
struct Case {
    /// NAME of its markers.
    name: String,
    /// Where its request is, for failure messages.
    place: Place,
    /// Simulator set-up, in order.
    given: Vec<Given>,
    /// What to send.
    request: Request,
    /// What must come back.
    response: Response,
}

impl Case {
    fn what(&self) -> String {
        format!("{}, example `{}`", self.place, self.name)
    }
}

#[derive(Debug)]
struct Doc {
    /// Every marked example, in page order.
    cases: Vec<Case>,
    /// Every table, in page order.
    tables: Vec<Table>,
}

/// An example while its markers are read (request, body and response may come in any order).
#[derive(Default)]
struct Partial {
    /// Where the request marker is.
    place: Option<Place>,
    /// From the request block's `# given:` lines.
    given: Vec<Given>,
    /// From the request block.
    request: Option<Request>,
    /// From a separate `body` block (a ```json block reads better for a long body).
    body: Option<String>,
    /// From the response block.
    response: Option<Response>,
}

fn doc() -> Doc {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {DOC}: {e}"));
    match parse(&text) {
        Ok(doc) => doc,
        Err(problems) => panic!(
            "{DOC} has contract markers this test cannot read:\n- {}",
            problems.join("\n- ")
        ),
    }
}

fn parse(text: &str) -> Result<Doc, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut section = String::from("(before the first section)");
    let mut subsection = String::new();
    let mut pending: Option<(String, String, Option<u16>, usize)> = None;
    let mut partials: BTreeMap<String, Partial> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut tables = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let number = i + 1;
        if line.starts_with("```") {
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && !lines[end].trim().starts_with("```") {
                end += 1;
            }
            // Blocks indented inside list items keep their indentation; strip it.
            let indent = lines[i].len() - lines[i].trim_start().len();
            let block: Vec<&str> = lines[start..end.min(lines.len())]
                .iter()
                .map(|l| l.get(indent.min(l.len() - l.trim_start().len())..).unwrap_or(l))
                .collect();
            if let Some((name, role, status, marker_line)) = pending.take() {
                let place = Place {
                    section: section.clone(),
                    line: marker_line,
                };
                let partial = partials.entry(name.clone()).or_insert_with(|| {
                    order.push(name.clone());
                    Partial::default()
                });
                let at = |what: &str| format!("{place}, example `{name}`: {what}");
                match role.as_str() {
                    "request" => match parse_request(&block) {
                        Ok((given, request)) if partial.request.is_none() => {
                            partial.place = Some(place.clone());
                            partial.given = given;
                            partial.request = Some(request);
                        }
                        Ok(_) => problems.push(at("a second request")),
                        Err(e) => problems.push(at(&e)),
                    },
                    "body" if partial.body.is_none() => partial.body = Some(block.join("\n")),
                    "response" if partial.response.is_none() => match parse_response(&block, status) {
                        Ok(response) => partial.response = Some(response),
                        Err(e) => problems.push(at(&e)),
                    },
                    other => problems.push(at(&format!("a second {other}"))),
                }
            }
            i = end + 1;
            continue;
        }
        if pending.is_some() && !line.is_empty() {
            let (name, _, _, marker_line) = pending.take().unwrap_or_default();
            problems.push(format!(
                "{DOC} line {marker_line}: the marker of example `{name}` must be followed by a ``` block"
            ));
        }
        if let Some(title) = line.strip_prefix("## ") {
            section = title.to_owned();
            subsection.clear();
        } else if let Some(title) = line.strip_prefix("### ") {
            subsection = title.to_owned();
        } else if let Some(marker) = line.strip_prefix("<!-- contract:") {
            match parse_marker(marker) {
                Ok((name, role, status)) => pending = Some((name, role, status, number)),
                Err(e) => problems.push(format!("{DOC} line {number}: {e}")),
            }
        } else if line.starts_with('|') {
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].trim().starts_with('|') {
                rows.push(Row {
                    line: i + 1,
                    cells: split_row(lines[i].trim()),
                });
                i += 1;
            }
            let header = rows.remove(0).cells;
            rows.retain(|r| {
                !r.cells
                    .iter()
                    .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':')))
            });
            tables.push(Table {
                place: Place {
                    section: section.clone(),
                    line: number,
                },
                subsection: subsection.clone(),
                header,
                rows,
            });
            continue;
        }
        i += 1;
    }
    if let Some((name, _, _, line)) = pending {
        problems.push(format!(
            "{DOC} line {line}: the marker of example `{name}` has no block"
        ));
    }
    let mut cases = Vec::new();
    for name in order {
        let Some(partial) = partials.remove(&name) else {
            continue;
        };
        let (Some(place), Some(mut request), Some(response)) =
            (partial.place, partial.request, partial.response)
        else {
            problems.push(format!(
                "{DOC}: example `{name}` needs both a `request` and a `response` marker"
            ));
            continue;
        };
        if let Some(body) = partial.body {
            if request.body.is_some() {
                problems.push(format!("{place}, example `{name}`: two request bodies"));
            }
            request.body = Some(body);
        }
        cases.push(Case {
            name,
            place,
            given: partial.given,
            request,
            response,
        });
    }
    if problems.is_empty() {
        Ok(Doc { cases, tables })
    } else {
        Err(problems)
    }
}

/// `NAME request`, `NAME body`, `NAME response` or `NAME response STATUS`, then `-->`.
fn parse_marker(marker: &str) -> Result<(String, String, Option<u16>), String> {
    let inner = marker
        .trim()
        .strip_suffix("-->")
        .ok_or("a contract marker must end on its line with -->")?;
    let words: Vec<&str> = inner.split_whitespace().collect();
    match words.as_slice() {
        [name, role @ ("request" | "body" | "response")] => Ok(((*name).into(), (*role).into(), None)),
        [name, "response", status] => {
            let status = status
                .parse()
                .map_err(|_| format!("`{status}` is not an HTTP status"))?;
            Ok(((*name).into(), "response".into(), Some(status)))
        }
        _ => Err(format!(
            "cannot read marker `{inner}`: expected NAME request|body|response [STATUS]"
        )),
    }
}

fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

/// Headers until the first empty line, then the body (if any).
fn head_and_body(lines: &[&str]) -> Result<(Headers, Option<String>), String> {
    let mut headers = Vec::new();
    let mut rest = lines.iter();
    for line in rest.by_ref() {
        if line.trim().is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("`{line}` is not a header line"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let body = rest.copied().collect::<Vec<_>>().join("\n");
    Ok((headers, (!body.trim().is_empty()).then_some(body)))
}

fn parse_request(block: &[&str]) -> Result<(Vec<Given>, Request), String> {
    let mut given = Vec::new();
    let mut lines = block
        .iter()
        .copied()
        .skip_while(|l| l.trim().is_empty())
        .peekable();
    while let Some(line) = lines.next_if(|l| l.starts_with('#')) {
        let step = line
            .strip_prefix("# given:")
            .ok_or_else(|| format!("`{line}`: the only comment a request may start with is `# given: …`"))?;
        given.push(parse_given(step.trim())?);
    }
    let first = lines.next().ok_or("empty request block")?;
    let (method, target) = first
        .split_once(' ')
        .ok_or_else(|| format!("`{first}` is not a request line (METHOD TARGET)"))?;
    let rest: Vec<&str> = lines.collect();
    let (headers, body) = head_and_body(&rest)?;
    Ok((
        given,
        Request {
            method: method.to_owned(),
            target: target.trim().to_owned(),
            headers,
            body,
        },
    ))
}

fn parse_given(step: &str) -> Result<Given, String> {
    if let Some(json) = step.strip_prefix("faults ") {
        return serde_json::from_str(json)
            .map(Given::Faults)
            .map_err(|e| format!("given faults: {e}"));
    }
    if let Some(n) = step.strip_prefix("simulator --max-batch ") {
        return n
            .trim()
            .parse()
            .map(Given::MaxBatch)
            .map_err(|e| format!("given max batch: {e}"));
    }
    match step.rsplit_once(" is ") {
        Some((id, status)) if !id.is_empty() && sim::Status::parse(status).is_some() => Ok(Given::Ticket {
            id: id.to_owned(),
            status: status.to_owned(),
        }),
        _ => Err(format!(
            "cannot read `# given: {step}`: expected `TICKET is STATUS`, `faults {{…}}` or `simulator --max-batch N`"
        )),
    }
}

fn parse_response(block: &[&str], status: Option<u16>) -> Result<Response, String> {
    let text: Vec<&str> = block
        .iter()
        .copied()
        .skip_while(|l| l.trim().is_empty())
        .collect();
    let (status, headers, body) = match (status, text.first()) {
        (Some(status), _) => (status, Vec::new(), Some(text.join("\n"))),
        (None, Some(line)) if line.starts_with("HTTP/") => {
            let status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("`{line}` has no status"))?;
            let (headers, body) = head_and_body(&text[1..])?;
            (status, headers, body)
        }
        _ => {
            return Err(
                "a response needs a status: `response STATUS` in the marker, or an `HTTP/1.1 STATUS` line"
                    .to_owned(),
            );
        }
    };
    let body = match body {
        Some(body) => {
            serde_json::from_str(&body).map_err(|e| format!("the documented answer is not JSON: {e}"))?
        }
        None => Value::Null,
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// Section 9 and the code tables
// ---------------------------------------------------------------------------------------------

/// What the bridge does with an answer (section 9's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Done: outcome event, ack.
    Success,
    /// Already done (a repeat): outcome event, ack, no second side effect.
    IdempotentSuccess,
    /// Retry later.
    Transient,
    /// Dead-letter.
    Permanent,
    /// Pause the organization (breaker open at once), never a dead letter.
    Pause,
}

impl Class {
    fn parse(cell: &str) -> Option<Class> {
        match cell.replace('*', "").trim().to_lowercase().as_str() {
            "success" => Some(Class::Success),
            "idempotent success" => Some(Class::IdempotentSuccess),
            "transient" => Some(Class::Transient),
            "permanent" => Some(Class::Permanent),
            "pause" => Some(Class::Pause),
            _ => None,
        }
    }

    fn of_error(class: ErrorClass) -> Class {
        match class {
            ErrorClass::Transient => Class::Transient,
            ErrorClass::Permanent => Class::Permanent,
            ErrorClass::Pause => Class::Pause,
        }
    }
}

/// The leading HTTP code of a cell such as `201 created` or ``200 `DELETED` ``.
fn leading_code(cell: &str) -> Option<u16> {
    let digits: String = cell
        .trim_start_matches('`')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The HTTP codes a cell names in backticks: exact (`429`) or a family (`5xx`).
fn codes_in(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|c| {
            c.len() == 3
                && c.starts_with(|ch: char| ch.is_ascii_digit())
                && (c.chars().all(|ch| ch.is_ascii_digit()) || c.ends_with("xx"))
        })
        .map(str::to_owned)
        .collect()
}

/// A row of section 9: "whole request", "per item" or "reads".
#[derive(Debug, Clone)]
struct Rule {
    /// Which of section 9's tables, for failure messages.
    kind: &'static str,
    /// `inject`, `cancel`, `control`, `status`, `diff`; empty for whole-request rows.
    call: String,
    /// The answer cell, as written.
    answer: String,
    /// Exact codes and families (`5xx`) the row names.
    codes: Vec<String>,
    /// `other 4xx`: every code of the family that no other row names.
    other: bool,
    /// `None` for "see per item".
    class: Option<Class>,
    /// The note cell: two scenarios check what it promises.
    note: String,
    /// 1-based line: identifies the row when counting which rows were exercised.
    line: usize,
    /// The `## ` heading, for failure messages.
    section: String,
}

impl Rule {
    fn what(&self) -> String {
        let call = if self.call.is_empty() {
            String::new()
        } else {
            format!("{} ", self.call)
        };
        format!(
            "{DOC} section \"{}\" ({} table, line {}): row `{call}{}`",
            self.section,
            self.kind,
            self.line,
            self.answer.replace('`', "")
        )
    }

    fn class_text(&self) -> String {
        self.class
            .map_or_else(|| "see per item".to_owned(), |c| format!("{c:?}"))
    }

    fn names(&self, code: u16) -> bool {
        let code = code.to_string();
        self.codes.contains(&code)
    }

    fn family(&self, code: u16) -> bool {
        let family = format!("{}xx", code / 100);
        self.codes.contains(&family)
    }
}

/// Section 9's three tables.
struct Section9 {
    /// "Whole request": HTTP statuses and transport situations.
    whole: Vec<Rule>,
    /// "Per item": the codes of batch results.
    items: Vec<Rule>,
    /// "Reads": status and diff answers that are not classified as a whole request.
    reads: Vec<Rule>,
}

fn table<'a>(doc: &'a Doc, section: &str, subsection: &str) -> &'a Table {
    doc.tables
        .iter()
        .find(|t| t.place.section.starts_with(section) && t.subsection.starts_with(subsection))
        .unwrap_or_else(|| panic!("{DOC}: no table under \"{section}\" / \"{subsection}\""))
}

fn section9(doc: &Doc) -> Result<Section9, Vec<String>> {
    let mut problems = Vec::new();
    let mut read = |kind: &'static str, subsection: &str, with_call: bool| -> Vec<Rule> {
        let t = table(doc, "9.", subsection);
        let (answer_col, class_col, note_col) = if with_call { (1, 2, 3) } else { (0, 1, 2) };
        t.rows
            .iter()
            .filter_map(|row| {
                let class_cell = row.cell(class_col);
                let class = if class_cell.trim() == "see per item" {
                    None
                } else {
                    match Class::parse(class_cell) {
                        Some(c) => Some(c),
                        None => {
                            problems.push(format!(
                                "{DOC} line {}: class `{class_cell}` is not success, idempotent success, transient, permanent or pause",
                                row.line
                            ));
                            return None;
                        }
                    }
                };
                let answer = row.cell(answer_col).to_owned();
                let mut codes = codes_in(&answer);
                if with_call && let Some(code) = leading_code(&answer) {
                    codes = vec![code.to_string()];
                }
                Some(Rule {
                    kind,
                    call: if with_call { row.cell(0).to_owned() } else { String::new() },
                    other: answer.trim_start().starts_with("other"),
                    answer,
                    codes,
                    class,
                    note: row.cell(note_col).to_owned(),
                    line: row.line,
                    section: t.place.section.clone(),
                })
            })
            .collect()
    };
    let whole = read("whole request", "Whole request", false);
    let items = read("per item", "Per item", true);
    let reads = read("reads", "Reads", true);
    for rule in items.iter().chain(&reads) {
        if rule.codes.is_empty() {
            problems.push(format!("{}: no HTTP code in the answer cell", rule.what()));
        }
    }
    if problems.is_empty() {
        Ok(Section9 { whole, items, reads })
    } else {
        Err(problems)
    }
}

impl Section9 {
    /// The whole-request row for an HTTP status: a row naming it, else a row naming its family,
    /// else the `other` row of its family.
    fn whole_rule(&self, status: u16) -> Option<&Rule> {
        let named = |r: &&Rule| !r.other && r.names(status);
        let family = |r: &&Rule| !r.other && r.family(status);
        let other = |r: &&Rule| r.other && r.family(status);
        self.whole
            .iter()
            .find(named)
            .or_else(|| self.whole.iter().find(family))
            .or_else(|| self.whole.iter().find(other))
    }

    fn item_rule(&self, call: &str, code: u16) -> Option<&Rule> {
        self.items.iter().find(|r| r.call == call && r.names(code))
    }

    fn read_rule(&self, call: &str, status: u16) -> Option<&Rule> {
        self.reads.iter().find(|r| r.call == call && r.names(status))
    }
}

// ---------------------------------------------------------------------------------------------
// The simulator, set up as an example says
// ---------------------------------------------------------------------------------------------

/// The ticket a `# given: ID is STATUS` step injects: the smallest valid one, with a barcode no
/// example uses, so an example sending `ID` sends other content.
fn given_ticket(id: &str) -> Value {
    json!({
        "ticketId": id,
        "event": {"name": "Set up by tests/it/contract.rs", "startDate": "2030-05-01T20:00:00+02:00",
                  "address": {"site": "Stade de Genève", "city": "Genève", "zip": "1212", "countryCode": "CH"}},
        "purchaseDetails": {"purchaseDate": "2030-01-02T10:00:00Z"},
        "security": {"barcode": format!("given-{id}")},
        "spectatorDetails": {}
    })
}

async fn start_sim(http: &Client, given: &[Given], hang: Duration) -> Result<RunningSim, String> {
    let mut config = SimConfig {
        hang,
        ..SimConfig::default()
    };
    for step in given {
        if let Given::MaxBatch(n) = step {
            config.max_batch = *n;
        }
    }
    for (org, key) in ORGS {
        config = config.with_tenant(org, key);
    }
    let running = sim::spawn(config, "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?)
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    for step in given {
        match step {
            Given::MaxBatch(_) => {}
            Given::Ticket { id, status } => {
                let answer = http
                    .post(running.base_url(ORG))
                    .header("X-Api-Key", KEY)
                    .json(&json!({"tickets": [given_ticket(id)]}))
                    .send()
                    .await
                    .map_err(|e| format!("given {id}: {e}"))?;
                let body: Value = answer.json().await.map_err(|e| format!("given {id}: {e}"))?;
                if body["results"][0]["code"] != 201 {
                    return Err(format!("given {id}: the simulator answered {body}"));
                }
                if status != "INJECTED" {
                    let mut url = Url::parse(&running.admin_url()).map_err(|e| e.to_string())?;
                    url.path_segments_mut()
                        .map_err(|()| "admin URL cannot have segments".to_owned())?
                        .extend(["tenants", ORG, "tickets", id, "transition"]);
                    let answer = http
                        .post(url)
                        .json(&json!({ "to": status }))
                        .send()
                        .await
                        .map_err(|e| format!("given {id} is {status}: {e}"))?;
                    if !answer.status().is_success() {
                        let text = answer.text().await.unwrap_or_default();
                        return Err(format!("given {id} is {status}: the simulator answered {text}"));
                    }
                }
            }
            Given::Faults(faults) => {
                let answer = http
                    .put(format!("{}/tenants/{ORG}/faults", running.admin_url()))
                    .json(faults)
                    .send()
                    .await
                    .map_err(|e| format!("given faults: {e}"))?;
                if !answer.status().is_success() {
                    let text = answer.text().await.unwrap_or_default();
                    return Err(format!("given faults {faults}: the simulator answered {text}"));
                }
            }
        }
    }
    Ok(running)
}

/// The first `<N MiB of C>` in a body: what comes before it, N, C, and what follows.
fn generated(body: &str) -> Option<(&str, usize, char, &str)> {
    let mut from = 0;
    while let Some(at) = body[from..].find('<') {
        let start = from + at;
        let found = body[start + 1..].split_once('>').and_then(|(inside, after)| {
            let (n, c) = inside.split_once(" MiB of ")?;
            let mut chars = c.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return None;
            };
            Some((&body[..start], n.parse().ok()?, c, after))
        });
        if found.is_some() {
            return found;
        }
        from = start + 1;
    }
    None
}

/// A request body with each `<N MiB of C>` written out: N × 2^20 times the character C (so
/// that an example can show a body over a size limit).
fn expand_body(body: &str) -> String {
    match generated(body) {
        Some((before, n, c, after)) => {
            format!("{before}{}{}", c.to_string().repeat(n << 20), expand_body(after))
        }
        None => body.to_owned(),
    }
}

/// `{base}`, `HOST:PORT` and `<key>` as they are on this simulator.
fn expand(text: &str, running: &RunningSim) -> String {
    text.replace("{base}", &running.base_url(ORG))
        .replace("HOST:PORT", &running.addr.to_string())
        .replace("<key>", KEY)
}

// ---------------------------------------------------------------------------------------------
// Matching an answer against the documented one
// ---------------------------------------------------------------------------------------------

fn is_date_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn text_matches(documented: &str, actual: &str) -> bool {
    if let (Some((head, _)), Some((_, tail))) = (documented.split_once('…'), documented.rsplit_once('…'))
    {
        actual.len() >= head.len() + tail.len() && actual.starts_with(head) && actual.ends_with(tail)
    } else if is_date_time(documented) {
        is_date_time(actual)
    } else {
        documented == actual
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Differences between the documented JSON and the answer, each with its JSON path.
fn compare(documented: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    let at = if path.is_empty() { "the body" } else { path };
    match (documented, actual) {
        (Value::Object(d), Value::Object(a)) => {
            for key in d.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{at}: member `{key}` is documented but missing"));
            }
            for key in a.keys().filter(|k| !d.contains_key(*k)) {
                out.push(format!("{at}: member `{key}` = {} is not documented", a[key]));
            }
            for (key, d) in d {
                if let Some(a) = a.get(key) {
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    compare(d, a, &path, out);
                }
            }
        }
        (Value::Array(d), Value::Array(a)) => {
            if d.len() != a.len() {
                out.push(format!(
                    "{at}: {} items documented, {} answered",
                    d.len(),
                    a.len()
                ));
            }
            for (i, (d, a)) in d.iter().zip(a).enumerate() {
                compare(d, a, &format!("{path}[{i}]"), out);
            }
        }
        (Value::String(d), Value::String(a)) => {
            if !text_matches(d, a) {
                out.push(format!("{at}: documented {documented}, answered {actual}"));
            }
        }
        (d, a) if type_name(d) != type_name(a) => out.push(format!(
            "{at}: documented a {} ({d}), answered a {} ({a})",
            type_name(d),
            type_name(a)
        )),
        (d, a) => {
            if d != a {
                out.push(format!("{at}: documented {d}, answered {a}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Every example, replayed over HTTP
// ---------------------------------------------------------------------------------------------

async fn replay_http(case: &Case, http: &Client) -> Vec<String> {
    let running = match start_sim(http, &case.given, EXAMPLE_HANG).await {
        Ok(r) => r,
        Err(e) => return vec![format!("{}: set-up failed: {e}", case.what())],
    };
    let mut problems = Vec::new();
    let result = send(case, &running, http).await;
    let (status, headers, body) = match result {
        Ok(answer) => answer,
        Err(e) => return vec![format!("{}: {e}", case.what())],
    };
    let documented = &case.response;
    if status != documented.status {
        problems.push(format!(
            "HTTP {} documented, {status} answered",
            documented.status
        ));
    }
    for (name, value) in &documented.headers {
        match headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            Some(actual) if text_matches(value, actual) => {}
            actual => problems.push(format!(
                "header `{name}: {value}` documented, answered {actual:?}"
            )),
        }
    }
    compare(&documented.body, &body, "", &mut problems);
    problems
        .into_iter()
        .map(|p| format!("{}: {p}", case.what()))
        .collect()
}

async fn send(
    case: &Case,
    running: &RunningSim,
    http: &Client,
) -> Result<(u16, reqwest::header::HeaderMap, Value), String> {
    let request = &case.request;
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|e| format!("method `{}`: {e}", request.method))?;
    let url = expand(&request.target, running);
    let mut builder = http.request(method, &url);
    for (name, value) in &request.headers {
        builder = builder.header(name, expand(value, running));
    }
    if let Some(body) = &request.body {
        builder = builder.body(expand_body(body));
    }
    let answer = builder.send().await.map_err(|e| format!("request failed: {e}"))?;
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| format!("answer unreadable: {e}"))?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "HTTP {status} with a body that is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })?
    };
    Ok((status, headers, body))
}

#[tokio::test]
async fn every_documented_example_is_what_the_simulator_answers() {
    let doc = doc();
    assert!(!doc.cases.is_empty(), "{DOC} has no contract examples");
    // One client for every example: building one blocks the thread (TLS roots) for a while.
    let http = Client::new();
    let problems: Vec<String> = join_all(doc.cases.iter().map(|case| replay_http(case, &http)))
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        problems.is_empty(),
        "{DOC} and the simulator disagree:\n- {}",
        problems.join("\n- ")
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The same requests made by the bridge's client, classified as section 9 says
// ---------------------------------------------------------------------------------------------

/// The bridge's settings for one interface at `base` with `key`.
fn settings(base: &str, key: &str, timeout: &str) -> Result<config::Settings, String> {
    let text = format!(
        "[tixngo]\nrequest_timeout = \"{timeout}\"\nconnect_timeout = \"1s\"\n[[interfaces]]\norganization = \"{ORG}\"\nkind = \"tixngo\"\nurl = \"{base}\"\nusername = \"admin@acme.example\"\napi_key = \"{key}\"\n"
    );
    config::from_toml(&text)
        .map_err(|e| format!("client settings: {e}"))?
        .validate_with(|_| None)
        .map_err(|e| format!("client settings: {e:?}"))
}

/// The connection pool every client of one test shares, as the bridge's interfaces do.
/// (Building one is slow in a debug build, and it blocks the thread while it loads the TLS
/// roots: one per example would starve the other examples' simulators.)
fn pool(timeout: &str) -> reqwest::Client {
    let settings =
        settings("http://127.0.0.1:1/ACME/organizer/tickets", KEY, timeout).unwrap_or_else(|e| panic!("{e}"));
    http_client(&settings.tixngo).unwrap_or_else(|e| panic!("HTTP client: {e}"))
}

/// A client for `base` with `key`, on `pool` (whose timeout is `timeout`).
fn client(pool: &reqwest::Client, base: &str, key: &str, timeout: &str) -> Result<TixngoClient, String> {
    let settings = settings(base, key, timeout)?;
    let interface = settings.interface(ORG).ok_or("no interface")?;
    TixngoClient::new(pool.clone(), interface, &settings.tixngo).map_err(|e| e.to_string())
}

/// A client call equivalent to a documented request.
enum Call {
    /// `TixngoClient::inject`.
    Inject(Vec<TicketDocument>),
    /// `TixngoClient::cancel`.
    Cancel(Vec<CancelItem>),
    /// `TixngoClient::control`.
    Control(Vec<ControlItem>),
    /// `TixngoClient::status` of this ticket id.
    Status(String),
    /// `TixngoClient::diff` with this key and limit.
    Diff(Option<String>, u32),
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Inject(_) => "inject",
            Call::Cancel(_) => "cancel",
            Call::Control(_) => "control",
            Call::Status(_) => "status",
            Call::Diff(..) => "diff",
        }
    }
}

/// What the client made of the answer.
enum Outcome {
    /// A batch call's per-item results.
    Items(Vec<ItemResult>),
    /// A status read (`None`: not in TIXnGO).
    Status(Option<TicketState>),
    /// A diff page.
    Diff(DiffPage),
    /// The call as a whole failed.
    Failed(CallError),
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn string(item: &Value, key: &str) -> Option<String> {
    item.get(key)?.as_str().map(str::to_owned)
}

/// An optional string member: `Some(None)` when absent or null, `None` when not a string.
fn optional_string(item: &Value, key: &str) -> Option<Option<String>> {
    match item.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

/// Whether an item has only members the client's type can carry.
fn only(item: &Value, known: &[&str]) -> Option<()> {
    item.as_object()?
        .keys()
        .all(|k| known.contains(&k.as_str()))
        .then_some(())
}

fn cancel_item(item: &Value) -> Option<CancelItem> {
    only(item, &["ticketId", "reason", "showDeletedTicket"])?;
    Some(CancelItem {
        ticket_id: string(item, "ticketId")?,
        reason: string(item, "reason")?,
        show_deleted_ticket: item.get("showDeletedTicket")?.as_bool()?,
    })
}

fn control_item(item: &Value) -> Option<ControlItem> {
    only(item, &["ticketId", "controlledAt", "gate", "controlPoint"])?;
    Some(ControlItem {
        ticket_id: string(item, "ticketId")?,
        controlled_at: string(item, "controlledAt")?,
        gate: optional_string(item, "gate")?,
        control_point: optional_string(item, "controlPoint")?,
    })
}

/// A ticket is sent as the document it is (the bridge maps or renders it before the call).
fn ticket_document(item: &Value) -> Option<TicketDocument> {
    Some(TicketDocument {
        ticket_id: string(item, "ticketId")?,
        json: serde_json::value::to_raw_value(item).ok()?,
    })
}

/// Every item of `{"<key>": [...]}` (and nothing else in the body) converted, or `None`.
fn batch<T>(body: &Value, key: &str, convert: fn(&Value) -> Option<T>) -> Option<Vec<T>> {
    let object = body.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.get(key)?.as_array()?.iter().map(convert).collect()
}

/// The client's base URL and key, and the call, that send what the example sends; `Err` says
/// why the client cannot (it always sends its key, a JSON content type and well-formed items).
fn client_call(case: &Case, running: &RunningSim) -> Result<(String, String, Call), String> {
    let request = &case.request;
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| expand(v, running))
    };
    let key = header("X-Api-Key").ok_or("the client always sends its API key")?;
    let mut url = Url::parse(&expand(&request.target, running)).map_err(|e| e.to_string())?;
    let query: BTreeMap<String, String> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default()
        .to_owned();
    let mut parent = url.clone();
    if let Ok(mut segments) = parent.path_segments_mut() {
        segments.pop();
    }
    let body: Option<Value> = match &request.body {
        // Parsing megabytes of JSON in a debug build is slow, and no section 9 row needs it.
        Some(text) if generated(text).is_some() => {
            return Err("generated bodies are only sent over HTTP".into());
        }
        Some(text) => Some(serde_json::from_str(text).map_err(|_| "the client only sends JSON")?),
        None => None,
    };
    let call = match (request.method.as_str(), last.as_str()) {
        ("GET", "diff") => {
            let limit = match query.get("limit") {
                Some(v) => v.parse().map_err(|_| "the client sends a numeric limit")?,
                // Section 7: the limit defaults to 1000; the client always sends one.
                None => 1000,
            };
            Call::Diff(query.get("paginationKey").cloned(), limit)
        }
        ("GET", id) => Call::Status(percent_decode(id).ok_or("ticket id is not percent-encoded UTF-8")?),
        ("POST", last) => {
            if header("Content-Type").as_deref() != Some("application/json") {
                return Err("the client always sends Content-Type: application/json".into());
            }
            let body = body.ok_or("a batch call has a body")?;
            let call = match last {
                "cancellations" => batch(&body, "cancellations", cancel_item).map(Call::Cancel),
                "controls" => batch(&body, "controls", control_item).map(Call::Control),
                _ => batch(&body, "tickets", ticket_document).map(Call::Inject),
            };
            call.ok_or_else(|| format!("the client cannot send this body: {body}"))?
        }
        (other, _) => return Err(format!("the client never sends {other}")),
    };
    let base = match call {
        Call::Inject(_) => url,
        _ => parent,
    };
    Ok((base.to_string(), key, call))
}

async fn run(client: &TixngoClient, call: &Call) -> Outcome {
    let result = match call {
        Call::Inject(docs) => client
            .inject(&docs.iter().collect::<Vec<_>>())
            .await
            .map(Outcome::Items),
        Call::Cancel(items) => client
            .cancel(&items.iter().collect::<Vec<_>>())
            .await
            .map(Outcome::Items),
        Call::Control(items) => client
            .control(&items.iter().collect::<Vec<_>>())
            .await
            .map(Outcome::Items),
        Call::Status(id) => client.status(id).await.map(Outcome::Status),
        Call::Diff(key, limit) => client.diff(key.as_deref(), *limit).await.map(Outcome::Diff),
    };
    result.unwrap_or_else(Outcome::Failed)
}

/// Section 9 rows exercised through the client, by line: a row nobody exercises fails.
type Exercised = BTreeSet<usize>;

/// Makes the example's request with the client and checks the class of the answer, and of
/// each item, against section 9. `Ok(Some(why))`: the client cannot send this request.
async fn replay_client(
    case: &Case,
    rules: &Section9,
    pool: &reqwest::Client,
    exercised: &mut Exercised,
) -> Result<Option<String>, Vec<String>> {
    let fail = |p: String| vec![format!("{}: {p}", case.what())];
    let running = start_sim(pool, &case.given, EXAMPLE_HANG)
        .await
        .map_err(|e| fail(format!("set-up failed: {e}")))?;
    let (base, key, call) = match client_call(case, &running) {
        Ok(call) => call,
        Err(why) => return Ok(Some(why)),
    };
    let client = client(pool, &base, &key, "5s").map_err(fail)?;
    let outcome = run(&client, &call).await;
    let documented = &case.response;
    let status = documented.status;
    let reads = matches!(call, Call::Status(_) | Call::Diff(..));
    let read_rule = reads.then(|| rules.read_rule(call.name(), status)).flatten();
    let rule = if !reads && status == 200 {
        rules.whole_rule(200)
    } else {
        read_rule.or_else(|| rules.whole_rule(status))
    };
    let Some(rule) = rule else {
        return Err(fail(format!("section 9 has no row for HTTP {status}")));
    };
    exercised.insert(rule.line);
    let mut problems = Vec::new();
    match (rule.class, outcome) {
        (None, Outcome::Items(results)) => check_items(
            call.name(),
            &documented.body,
            &results,
            rules,
            exercised,
            &mut problems,
        ),
        (Some(Class::Success), Outcome::Status(None)) if status == 404 => {}
        (Some(Class::Success), Outcome::Status(Some(state))) if status == 200 => {
            let body = &documented.body;
            if Some(state.ticket_id.as_str()) != body["ticketId"].as_str()
                || Some(state.status.as_str()) != body["status"].as_str()
            {
                problems.push(format!("the client read {state:?}, documented {body}"));
            }
        }
        (Some(Class::Success), Outcome::Diff(page)) if status == 200 => {
            check_diff(&page, &documented.body, &mut problems)
        }
        (Some(Class::Transient | Class::Permanent | Class::Pause), Outcome::Failed(e)) => {
            check_failure(&e, documented, rule, &mut problems)
        }
        (_, Outcome::Failed(e)) => problems.push(format!(
            "{} says {}, the client failed: {e}",
            rule.what(),
            rule.class_text()
        )),
        (_, _) => problems.push(format!(
            "{} says {}, the client read another kind of answer",
            rule.what(),
            rule.class_text()
        )),
    }
    if problems.is_empty() {
        Ok(None)
    } else {
        Err(problems
            .into_iter()
            .map(|p| format!("{}: {p}", case.what()))
            .collect())
    }
}

/// Each documented result against the client's: its code's per-item row, status and fields.
fn check_items(
    call: &str,
    body: &Value,
    results: &[ItemResult],
    rules: &Section9,
    exercised: &mut Exercised,
    problems: &mut Vec<String>,
) {
    let empty = Vec::new();
    let items = body["results"].as_array().unwrap_or(&empty);
    if items.len() != results.len() {
        problems.push(format!(
            "{} results documented, the client returned {}",
            items.len(),
            results.len()
        ));
    }
    for (i, (item, result)) in items.iter().zip(results).enumerate() {
        let code = item["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(0);
        let Some(rule) = rules.item_rule(call, code) else {
            problems.push(format!(
                "results[{i}] has code {code}, for which section 9's per-item table has no `{call}` row"
            ));
            continue;
        };
        exercised.insert(rule.line);
        let (class, detail) = match result {
            Ok(ok) => {
                if ok.status.as_deref() != item["status"].as_str() {
                    problems.push(format!(
                        "results[{i}]: the client read status {:?}, documented {}",
                        ok.status, item["status"]
                    ));
                }
                let class = if ok.unchanged {
                    Class::IdempotentSuccess
                } else {
                    Class::Success
                };
                (class, format!("{ok:?}"))
            }
            Err(e) => {
                if e.code != code {
                    problems.push(format!(
                        "results[{i}]: the client read code {}, documented {code}",
                        e.code
                    ));
                }
                for field in item["errors"].as_array().unwrap_or(&empty) {
                    let name = field["field"].as_str().unwrap_or_default();
                    if !e.message.contains(name) {
                        problems.push(format!(
                            "results[{i}]: the failure message does not name field `{name}`: {}",
                            e.message
                        ));
                    }
                }
                (Class::of_error(e.class), e.to_string())
            }
        };
        if Some(class) != rule.class {
            problems.push(format!(
                "results[{i}] (code {code}): {} says {}, the client made it {class:?} ({detail})",
                rule.what(),
                rule.class_text()
            ));
        }
    }
}

/// A failed call: its class, the status the client saw, and `Retry-After` when documented.
fn check_failure(e: &CallError, documented: &Response, rule: &Rule, problems: &mut Vec<String>) {
    let class = Class::of_error(e.class());
    if Some(class) != rule.class {
        problems.push(format!(
            "{} says {}, the client made it {class:?}: {e}",
            rule.what(),
            rule.class_text()
        ));
    }
    if e.http_status() != Some(documented.status) {
        problems.push(format!(
            "HTTP {} documented, the client saw {:?}: {e}",
            documented.status,
            e.http_status()
        ));
    }
    let retry_after = documented
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Retry-After"))
        .and_then(|(_, v)| v.parse().ok())
        .map(Duration::from_secs);
    if retry_after.is_some() && e.retry_after() != retry_after {
        problems.push(format!(
            "Retry-After {retry_after:?} documented, the client kept {:?}",
            e.retry_after()
        ));
    }
}

fn check_diff(page: &DiffPage, body: &Value, problems: &mut Vec<String>) {
    let empty = Vec::new();
    let changes = body["changes"].as_array().unwrap_or(&empty);
    let read: Vec<Value> = page
        .changes
        .iter()
        .map(|c| json!({"ticketId": c.ticket_id, "previousStatus": c.previous_status, "status": c.status}))
        .collect();
    let documented: Vec<Value> = changes
        .iter()
        .map(|c| json!({"ticketId": c["ticketId"], "previousStatus": c["previousStatus"], "status": c["status"]}))
        .collect();
    if read != documented
        || Some(page.next_page_key.as_str()) != body["nextPageKey"].as_str()
        || Some(page.has_more) != body["hasMore"].as_bool()
    {
        problems.push(format!("the client read {page:?}, documented {body}"));
    }
}

/// Section 9's whole-request rows that name no HTTP status: the situation each describes,
/// produced for real. A new row of that kind needs a scenario here, or the test fails.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    /// Nothing listens on the port.
    Refused,
    /// The interface's host name does not resolve (`.invalid`, RFC 2606).
    Dns,
    /// The simulator applies the call, then hangs past the client's timeout.
    ClientTimeout,
    /// A 200 whose body is not what the call documents: reading ticket `diff` gets the diff page
    /// (section 6: the fixed paths take precedence).
    NotDocumentedJson,
}

fn scenario_for(answer: &str) -> Option<Scenario> {
    let answer = answer.to_lowercase();
    if answer.contains("connection refused") {
        Some(Scenario::Refused)
    } else if answer.contains("dns") {
        Some(Scenario::Dns)
    } else if answer.contains("client timeout") {
        Some(Scenario::ClientTimeout)
    } else if answer.contains("not the documented json") {
        Some(Scenario::NotDocumentedJson)
    } else {
        None
    }
}

async fn play(scenario: Scenario, rule: &Rule, pool: &reqwest::Client) -> Vec<String> {
    let what = |p: String| vec![format!("{}: {p}", rule.what())];
    let expect = |e: &CallError, kind_ok: bool| -> Vec<String> {
        let class = Class::of_error(e.class());
        let mut problems = Vec::new();
        if !kind_ok {
            problems.push(format!("{}: the client reported {e:?}", rule.what()));
        }
        if Some(class) != rule.class {
            problems.push(format!(
                "{} says {}, the client made it {class:?}: {e}",
                rule.what(),
                rule.class_text()
            ));
        }
        problems
    };
    match scenario {
        Scenario::Refused => {
            let addr = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(addr) => addr,
                Err(e) => return what(format!("no free port: {e}")),
            };
            let client = match client(pool, &sim::base_url(addr, ORG), KEY, "5s") {
                Ok(c) => c,
                Err(e) => return what(e),
            };
            match client.status("ACME-1").await {
                Err(e) => expect(&e, matches!(e, CallError::Connect(_))),
                Ok(v) => what(format!("a call to a closed port answered {v:?}")),
            }
        }
        Scenario::Dns => {
            let client = match client(
                pool,
                "https://tixngo-bridge-test.invalid/ACME/organizer/tickets",
                KEY,
                "5s",
            ) {
                Ok(c) => c,
                Err(e) => return what(e),
            };
            match client.status("ACME-1").await {
                Err(e) => expect(&e, matches!(e, CallError::Dns(_))),
                Ok(v) => what(format!("a call to an unknown host answered {v:?}")),
            }
        }
        Scenario::ClientTimeout => {
            let running = match start_sim(
                pool,
                &[Given::Faults(json!({"timeoutRate": 1, "timeoutApplies": true}))],
                sim::DEFAULT_HANG,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => return what(e),
            };
            let client = match client(&self::pool("500ms"), &running.base_url(ORG), KEY, "500ms") {
                Ok(c) => c,
                Err(e) => return what(e),
            };
            let ticket = TicketDocument {
                ticket_id: "ACME-T".into(),
                json: match serde_json::value::to_raw_value(&given_ticket("ACME-T")) {
                    Ok(raw) => raw,
                    Err(e) => return what(e.to_string()),
                },
            };
            let mut problems = match client.inject(&[&ticket]).await {
                Err(e) => expect(&e, matches!(e, CallError::Timeout(_))),
                Ok(v) => return what(format!("the hanging call answered {v:?}")),
            };
            // The note: the call may have been applied, and a retry is safe (idempotent).
            let sim = running.sim.clone();
            eventually("the timed-out injection applied", || {
                sim.ticket(ORG, "ACME-T").is_some_and(|t| t.status.is_some())
            })
            .await;
            running.sim.set_faults(Some(ORG), Faults::none());
            match client.inject(&[&ticket]).await {
                Ok(results) if matches!(results.as_slice(), [Ok(ok)] if ok.unchanged) => {}
                other => problems.push(format!(
                    "{}: \"{}\", but the retry answered {other:?} instead of an idempotent success",
                    rule.what(),
                    rule.note
                )),
            }
            problems
        }
        Scenario::NotDocumentedJson => {
            let running = match start_sim(pool, &[], EXAMPLE_HANG).await {
                Ok(r) => r,
                Err(e) => return what(e),
            };
            let client = match client(pool, &running.base_url(ORG), KEY, "5s") {
                Ok(c) => c,
                Err(e) => return what(e),
            };
            match client.status("diff").await {
                Err(e) => expect(&e, matches!(e, CallError::Protocol { .. })),
                Ok(v) => what(format!("reading ticket `diff` gave {v:?}")),
            }
        }
    }
}

/// The `200` row's note: a result that does not match its item is a protocol error.
async fn mismatched_result(rule: &Rule, pool: &reqwest::Client) -> Vec<String> {
    let expected = if rule.note.contains("permanent") {
        Class::Permanent
    } else if rule.note.contains("transient") {
        Class::Transient
    } else {
        return vec![format!(
            "{}: the note names no class for a mismatched result",
            rule.what()
        )];
    };
    let running = match start_sim(pool, &[], EXAMPLE_HANG).await {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let client = match client(pool, &running.base_url(ORG), KEY, "5s") {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    // The ticket document says ACME-2 while the bridge's item says ACME-1, so TIXnGO's one
    // result names a ticket the bridge did not expect.
    let ticket = TicketDocument {
        ticket_id: "ACME-1".into(),
        json: match serde_json::value::to_raw_value(&given_ticket("ACME-2")) {
            Ok(raw) => raw,
            Err(e) => return vec![e.to_string()],
        },
    };
    match client.inject(&[&ticket]).await {
        Err(e @ CallError::Protocol { .. }) if Class::of_error(e.class()) == expected => Vec::new(),
        other => vec![format!(
            "{}: \"{}\", but a result for another ticket gave {other:?}",
            rule.what(),
            rule.note
        )],
    }
}

#[tokio::test]
async fn the_client_classifies_every_answer_as_section_9_says() {
    let doc = doc();
    let rules =
        section9(&doc).unwrap_or_else(|p| panic!("{DOC} section 9 cannot be read:\n- {}", p.join("\n- ")));
    let mut problems = Vec::new();
    let mut exercised = Exercised::new();
    let pool = pool("5s");
    let (rules_ref, pool_ref) = (&rules, &pool);
    let replays = join_all(doc.cases.iter().map(|case| async move {
        let mut exercised = Exercised::new();
        let result = replay_client(case, rules_ref, pool_ref, &mut exercised).await;
        (case, result, exercised)
    }))
    .await;
    let mut not_sent = Vec::new();
    for (case, result, seen) in replays {
        exercised.extend(seen);
        match result {
            Ok(None) => {}
            Ok(Some(why)) => not_sent.push(format!("`{}` ({why})", case.name)),
            Err(p) => problems.extend(p),
        }
    }
    for rule in &rules.whole {
        if !rule.codes.is_empty() {
            if rule.names(200) {
                problems.extend(mismatched_result(rule, &pool).await);
            }
            continue;
        }
        match scenario_for(&rule.answer) {
            Some(scenario) => {
                exercised.insert(rule.line);
                problems.extend(play(scenario, rule, &pool).await);
            }
            None => problems.push(format!(
                "{}: this situation has no scenario in tests/it/contract.rs (`scenario_for`)",
                rule.what()
            )),
        }
    }
    for rule in rules.whole.iter().chain(&rules.items).chain(&rules.reads) {
        if !exercised.contains(&rule.line) {
            problems.push(format!(
                "{}: no documented example that the client can send produces this answer",
                rule.what()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{DOC} and the bridge's client disagree (examples the client cannot send: {}):\n- {}",
        not_sent.join(", "),
        problems.join("\n- ")
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The code tables and the examples cover each other
// ---------------------------------------------------------------------------------------------

/// The call an example makes, from its method and path.
fn call_of(case: &Case) -> &'static str {
    let path = case.request.target.split('?').next().unwrap_or_default();
    match (
        case.request.method.as_str(),
        path.rsplit('/').next().unwrap_or_default(),
    ) {
        ("POST", "cancellations") => "cancel",
        ("POST", "controls") => "control",
        ("POST", _) => "inject",
        ("GET", "diff") => "diff",
        ("GET", _) => "status",
        _ => "other",
    }
}

#[test]
fn code_tables_and_examples_cover_each_other() {
    let doc = doc();
    let rules =
        section9(&doc).unwrap_or_else(|p| panic!("{DOC} section 9 cannot be read:\n- {}", p.join("\n- ")));
    let mut problems = Vec::new();

    // Section 1's error codes: each row answered by an example, each error answer in the table.
    let errors = table(&doc, "1.", "Bodies and errors");
    let listed: Vec<(u16, String, usize)> = errors
        .rows
        .iter()
        .map(|r| {
            (
                leading_code(r.cell(0)).unwrap_or(0),
                r.cell(1).trim_matches('`').to_owned(),
                r.line,
            )
        })
        .collect();
    let answered: Vec<(u16, &str, &Case)> = doc
        .cases
        .iter()
        .filter_map(|c| Some((c.response.status, c.response.body.get("error")?.as_str()?, c)))
        .collect();
    for (status, error, line) in &listed {
        if !answered.iter().any(|(s, e, _)| s == status && e == error) {
            problems.push(format!(
                "{DOC} line {line}: error `{status} {error}` has no example (add one marked `<!-- contract: … -->`)"
            ));
        }
    }
    for (status, error, case) in &answered {
        if !listed.iter().any(|(s, e, _)| s == status && e == error) {
            problems.push(format!(
                "{}: answers `{status} {error}`, which the error table of section 1 (line {}) does not list",
                case.what(),
                errors.place.line
            ));
        }
    }

    // Sections 3 to 5: each per-ticket code has an example in its section and a section 9 row;
    // each code an example answers is in its section's table.
    for (section, call) in [("3.", "inject"), ("4.", "cancel"), ("5.", "control")] {
        let Some(codes) = doc
            .tables
            .iter()
            .find(|t| t.place.section.starts_with(section) && t.header.first().is_some_and(|h| h == "code"))
        else {
            problems.push(format!("{DOC} section {section}: no per-ticket code table"));
            continue;
        };
        let examples: Vec<(u16, &Case)> = doc
            .cases
            .iter()
            .filter(|c| call_of(c) == call && c.response.status == 200)
            .flat_map(|c| {
                c.response.body["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(move |r| Some((u16::try_from(r["code"].as_u64()?).ok()?, c)))
            })
            .collect();
        let table_codes: Vec<u16> = codes
            .rows
            .iter()
            .filter_map(|r| leading_code(r.cell(0)))
            .collect();
        for row in &codes.rows {
            let Some(code) = leading_code(row.cell(0)) else {
                problems.push(format!("{DOC} line {}: no code in `{}`", row.line, row.cell(0)));
                continue;
            };
            if !examples
                .iter()
                .any(|(c, case)| *c == code && case.place.section.starts_with(section))
            {
                problems.push(format!(
                    "{DOC} line {}: {call} code {code} has no example in section {section}",
                    row.line
                ));
            }
            if rules.item_rule(call, code).is_none() {
                problems.push(format!(
                    "{DOC} line {}: {call} code {code} has no row in section 9's per-item table",
                    row.line
                ));
            }
        }
        for (code, case) in &examples {
            if !table_codes.contains(code) {
                problems.push(format!(
                    "{}: a {call} result with code {code}, which section {section} (line {}) does not list",
                    case.what(),
                    codes.place.line
                ));
            }
        }
    }

    // Section 9's whole-request rows against the client's own status classification, for every
    // 4xx and 5xx (the simulator cannot answer all of them: 408, for one).
    for status in 400..=599u16 {
        match rules.whole_rule(status) {
            Some(rule) => {
                let class = Class::of_error(status_class(status));
                if Some(class) != rule.class {
                    problems.push(format!(
                        "{} says {} for HTTP {status}, the client's status_class says {class:?}",
                        rule.what(),
                        rule.class_text()
                    ));
                }
            }
            None => problems.push(format!(
                "{DOC} section 9: no whole-request row covers HTTP {status}"
            )),
        }
    }

    assert!(
        problems.is_empty(),
        "{DOC}'s tables and examples disagree:\n- {}",
        problems.join("\n- ")
    );
}
