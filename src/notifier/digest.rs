//! One digest e-mail: the dead letters of one organization, flow and error class.
//!
//! Every value from a message (ticket id, error text) is first made single-line and bounded
//! ([`clean`]), then placed by minijinja: as is in the text body, HTML-escaped in the HTML body.
//! The subject is built from our own values only (configured organization code, flow, class
//! token, a count), so no message field can add a header.

use minijinja::{AutoEscape, Environment, context};
use serde::Serialize;

use super::smtp::Email;
use crate::failure_class::FailureClass;
use crate::flow::Flow;

/// Longest error text shown per ticket.
const MAX_ERROR_CHARS: usize = 300;
/// Longest ticket id shown.
const MAX_TICKET_CHARS: usize = 128;

/// What a digest is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// A configured organization code, or `None` when the message names none we know.
    pub organization: Option<String>,
    /// Flow name.
    pub flow: Flow,
    /// Error class (`rejected`, `invalid-message`, `retries-exhausted`, `delivery-limit`, …).
    pub class: FailureClass,
}

/// One dead letter, as shown in a digest.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Ticket id, cleaned; `?` when unknown.
    pub ticket_id: String,
    /// Error text, cleaned.
    pub error: String,
    /// TIXnGO's HTTP status, when there was one.
    pub http_status: Option<i64>,
}

impl Line {
    /// A line from raw header values.
    pub fn new(ticket_id: Option<&str>, error: Option<&str>, http_status: Option<i64>) -> Self {
        Self {
            ticket_id: ticket_id.map_or_else(|| "?".to_owned(), |t| clean(t, MAX_TICKET_CHARS)),
            error: error.map_or_else(String::new, |e| clean(e, MAX_ERROR_CHARS)),
            http_status,
        }
    }
}

/// Single line (every control character, CR and LF included, becomes a space), at most `max`
/// characters.
pub fn clean(text: &str, max: usize) -> String {
    let mut cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        cleaned.push('…');
    }
    cleaned
}

const TEXT: &str = "\
{{ count }} ticket(s) of {{ organization }} could not be delivered to TIXnGO ({{ flow }} flow).
Error class: {{ class }}

{% for line in lines -%}
- {{ line.ticket_id }}{% if line.http_status %} (HTTP {{ line.http_status }}){% endif %}: {{ line.error }}
{% endfor -%}
{% if count > lines|length %}… and {{ count - lines|length }} more.
{% endif %}
They are kept in {{ parked }}. Once the cause is fixed, deliver them again with:

    {{ replay }}

List what is waiting with: tixngo-bridge dlq list
";

const HTML: &str = r#"<!DOCTYPE html>
<html><body style="font-family: sans-serif">
<p><strong>{{ count }}</strong> ticket(s) of <strong>{{ organization }}</strong> could not be delivered to TIXnGO ({{ flow }} flow).<br>
Error class: <code>{{ class }}</code></p>
<table border="1" cellpadding="4" cellspacing="0">
<tr><th>Ticket</th><th>HTTP</th><th>Error</th></tr>
{% for line in lines %}<tr><td>{{ line.ticket_id }}</td><td>{{ line.http_status or "" }}</td><td>{{ line.error }}</td></tr>
{% endfor %}</table>
{% if count > lines|length %}<p>… and {{ count - lines|length }} more.</p>{% endif %}
<p>They are kept in <code>{{ parked }}</code>. Once the cause is fixed, deliver them again with:</p>
<pre>{{ replay }}</pre>
</body></html>
"#;

/// Builds the digest e-mail of `key` for `count` dead letters, listing `lines`.
pub fn render(
    key: &GroupKey,
    count: usize,
    lines: &[Line],
    parked_queue: &str,
    to: Vec<String>,
) -> Result<Email, minijinja::Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.add_template("digest.txt", TEXT)?;
    env.add_template("digest.html", HTML)?;
    let organization = key.organization.as_deref().unwrap_or("(unknown organization)");
    let mut replay = format!("tixngo-bridge dlq replay --flow {}", key.flow);
    if let Some(code) = &key.organization {
        replay.push_str(&format!(" --organization {code}"));
    }
    replay.push_str(&format!(" --error-class {}", key.class));
    let values = context! {
        count => count,
        organization => organization,
        flow => key.flow.as_str(),
        class => key.class.as_str(),
        lines => minijinja::Value::from(minijinja::value::Serde(lines)),
        parked => parked_queue,
        replay => replay,
    };
    Ok(Email {
        to,
        subject: format!(
            "[tixngo-bridge] {organization} {}: {count} ticket(s) not delivered ({})",
            key.flow, key.class
        ),
        text: env.get_template("digest.txt")?.render(&values)?,
        html: env.get_template("digest.html")?.render(&values)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_cannot_break_out() {
        let key = GroupKey {
            organization: Some("ACME".into()),
            flow: Flow::Inject,
            // A hostile header value is no class of the vocabulary: `unknown`.
            class: FailureClass::of_dead_letter(Some("rejected\r\nBcc: x@evil.example"), None),
        };
        let lines = [Line::new(
            Some("T-1\r\nBcc: victim@example.com"),
            Some("<script>alert(1)</script>\n\nfake paragraph"),
            Some(422),
        )];
        let email = render(
            &key,
            1,
            &lines,
            "tixngo.inject.parked",
            vec!["a@b.example".into()],
        )
        .unwrap();
        assert_eq!(key.class, FailureClass::Unknown);
        assert!(!email.subject.contains('\n'));
        assert!(!email.text.contains("\r\nBcc"));
        assert!(email.text.contains("T-1  Bcc: victim@example.com"));
        assert!(!email.html.contains("<script>"));
        assert!(email.html.contains("&lt;script&gt;"));
        assert!(
            email
                .text
                .contains("tixngo-bridge dlq replay --flow inject --organization ACME --error-class unknown")
        );
    }
}
