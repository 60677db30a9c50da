//! What the `dlq` commands print: tables and text for people, JSON for scripts.

use serde_json::{Value, json};

use super::letter::DeadLetter;
use super::ops::{Listing, Summary};
use crate::broker::headers;
use crate::output::{escape, escape_lines, hex};

/// Shown where a value is missing.
const NONE: &str = "unknown";

/// `list` as JSON: totals and one object per group (`organization` and `http_status` are
/// `null` when unknown).
pub fn listing_json(listing: &Listing) -> Value {
    let (dlq, parked) = totals(listing);
    json!({
        "total": dlq + parked,
        "dlq": dlq,
        "parked": parked,
        "scanned": listing.scanned,
        "max_delivery_count": listing.max_delivery_count,
        "groups": listing.groups.iter().map(|((flow, organization, class, status), counts)| json!({
            "flow": flow.as_str(),
            "organization": organization,
            "error_class": class.as_str(),
            "http_status": status,
            "dlq": counts.dlq,
            "parked": counts.parked,
            "total": counts.total(),
        })).collect::<Vec<_>>(),
    })
}

/// `list` as a table.
pub fn listing_table(listing: &Listing) -> String {
    let (dlq, parked) = totals(listing);
    if listing.groups.is_empty() {
        return format!("no dead letters match ({} read)\n", listing.scanned);
    }
    let mut rows = vec![[
        "FLOW".to_owned(),
        "ORGANIZATION".to_owned(),
        "ERROR CLASS".to_owned(),
        "HTTP".to_owned(),
        "DLQ".to_owned(),
        "PARKED".to_owned(),
        "TOTAL".to_owned(),
    ]];
    for ((flow, organization, class, status), counts) in &listing.groups {
        rows.push([
            flow.as_str().to_owned(),
            escape(organization.as_deref().unwrap_or(NONE)).into_owned(),
            class.as_str().to_owned(),
            status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            counts.dlq.to_string(),
            counts.parked.to_string(),
            counts.total().to_string(),
        ]);
    }
    let mut text = table(&rows, 3);
    text.push_str(&format!(
        "total {} (dlq {dlq}, parked {parked}); {} read\n",
        dlq + parked,
        listing.scanned
    ));
    text
}

fn totals(listing: &Listing) -> (u64, u64) {
    listing
        .groups
        .values()
        .fold((0, 0), |(d, p), c| (d + c.dlq, p + c.parked))
}

/// Left-aligned text columns, numbers (from `numeric_from` on) right-aligned.
fn table<const N: usize>(rows: &[[String; N]], numeric_from: usize) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i >= numeric_from {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// `show` as text: one block per message, failure headers first, then the other headers, then
/// the body (pretty-printed when it is JSON).
pub fn letter_text(letter: &DeadLetter) -> String {
    let or_none = |v: &Option<String>| escape(v.as_deref().unwrap_or(NONE)).into_owned();
    let count = |v: Option<i64>| v.map_or_else(|| "0".to_owned(), |n| n.to_string());
    let mut text = format!(
        "== {} ({}) message {}\n",
        escape(&letter.queue),
        letter.source.as_str(),
        or_none(&letter.message_id)
    );
    text.push_str(&format!(
        "flow: {}  organization: {}  ticket: {}\n",
        letter.flow,
        or_none(&letter.organization),
        or_none(&letter.ticket_id)
    ));
    text.push_str(&format!(
        "error: {}{}  retries: {}  replays: {}  returned to queue: {}\n",
        letter.error_class.as_str(),
        letter
            .http_status
            .map_or_else(String::new, |s| format!(" (HTTP {s})")),
        count(letter.retry_count),
        count(letter.replay_count),
        count(letter.delivery_count),
    ));
    text.push_str(&format!(
        "first failure: {}  last failure: {}\n",
        or_none(&letter.first_failure_at),
        letter
            .failed_at
            .map(headers::rfc3339)
            .unwrap_or_else(|| NONE.to_owned())
    ));
    if let Some(message) = &letter.error_message {
        text.push_str(&format!("reason: {}\n", escape(message)));
    }
    let json = letter.to_json();
    if let Some(all) = json["headers"].as_object() {
        let others: Vec<String> = all
            .iter()
            .filter(|(k, _)| !SHOWN_ABOVE.contains(&k.as_str()))
            .map(|(k, v)| format!("  {}: {}", escape(k), escape(&v.to_string())))
            .collect();
        if !others.is_empty() {
            text.push_str("other headers:\n");
            text.push_str(&others.join("\n"));
            text.push('\n');
        }
    }
    match std::str::from_utf8(&letter.body) {
        Ok(body) => {
            text.push_str("body:\n");
            let pretty = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok());
            text.push_str(&escape_lines(pretty.as_deref().unwrap_or(body)));
        }
        Err(_) => {
            // Not text: never raw to a terminal, and never lossily (the bytes stay recoverable).
            text.push_str(&format!("body ({} bytes, not UTF-8, hex):\n", letter.body.len()));
            let hex = hex(&letter.body);
            let lines: Vec<&str> = hex
                .as_bytes()
                .chunks(64)
                .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
                .collect();
            text.push_str(&lines.join("\n"));
        }
    }
    text.push_str("\n\n");
    text
}

/// Headers `letter_text` already prints by name.
const SHOWN_ABOVE: &[&str] = &[
    headers::FLOW,
    headers::ORGANIZATION,
    headers::TICKET_ID,
    headers::ERROR_CLASS,
    headers::HTTP_STATUS,
    headers::RETRY_COUNT,
    headers::REPLAY_COUNT,
    super::letter::DELIVERY_COUNT,
    headers::FIRST_FAILURE_AT,
    headers::LAST_FAILURE_AT,
    headers::ERROR_MESSAGE,
];

/// One line per message a dry run selected.
pub fn selected_line(letter: &DeadLetter) -> String {
    format!(
        "{}  {}  {}  {}  {}{}",
        escape(&letter.queue),
        escape(letter.organization.as_deref().unwrap_or(NONE)),
        escape(letter.ticket_id.as_deref().unwrap_or(NONE)),
        letter.error_class.as_str(),
        letter.http_status.map_or_else(String::new, |s| format!("{s}  ")),
        letter
            .failed_at
            .map(headers::rfc3339)
            .unwrap_or_else(|| NONE.to_owned())
    )
}

/// The closing line of `replay`, `replay --dry-run` and `purge`, e.g. "replayed 12, skipped 30
/// (not matching), failed 0".
pub fn summary_line(verb: &str, summary: &Summary, dry_run: bool) -> String {
    let mut line = if dry_run {
        format!(
            "would replay {}, skipped {} (not matching); dry run, nothing moved",
            summary.done, summary.skipped
        )
    } else {
        format!(
            "{verb} {}, skipped {} (not matching), failed {}",
            summary.done, summary.skipped, summary.failed
        )
    };
    if summary.limit_reached {
        line.push_str("; stopped at --limit");
    }
    if summary.interrupted {
        line.push_str("; interrupted: run the same command again to continue");
    }
    line
}
