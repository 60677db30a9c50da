//! What commands print for people and scripts: text whose control characters are escaped (a
//! value from a message or header must not move the cursor, retitle or clear the terminal, or
//! break a table's line), bytes that are not UTF-8 as hex, and standard output that may be
//! closed early (`dlq show | head -1`) without a panic.

use std::borrow::Cow;
use std::io::Write;

/// Exit code when standard output fails for another reason than a closed pipe (EX_IOERR).
pub const EXIT_IO: i32 = 74;

/// Writes `text` to standard output. When the reader has gone away (a closed pipe: `| head`),
/// the process ends quietly with exit 0: the reader has what it wanted. Any other write error is
/// reported once, exit 74.
pub fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    match result {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => {
            eprintln!("error: cannot write to standard output: {error}");
            std::process::exit(EXIT_IO);
        }
    }
}

/// [`print`] followed by a new line.
pub fn println(text: &str) {
    print(&format!("{text}\n"));
}

/// Whether a character must not reach a terminal as is: C0 and C1 controls, DEL, and the
/// Unicode bidirectional overrides and isolates (which reorder the rest of the line).
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` for one line of terminal output: every control character written as an escape
/// (`\n`, `\r`, `\t`, else `\u{1b}`), everything else (accents, emoji, right-to-left letters)
/// unchanged.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_keeping(text, false)
}

/// Like [`escape`], but keeps line breaks (and tabs): for multi-line text such as a body.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_keeping(text, true)
}

fn escape_keeping(text: &str, lines: bool) -> Cow<'_, str> {
    let keep = |c: char| lines && (c == '\n' || c == '\t');
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if keep(c) || !is_unsafe(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(out)
}

/// Lower-case hex of `bytes`, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_letters_kept() {
        assert_eq!(
            escape("T-\u{1b}]2;pwned\u{7}\u{1b}[2J"),
            "T-\\u{1b}]2;pwned\\u{7}\\u{1b}[2J"
        );
        assert_eq!(escape("ACME\r\nX"), "ACME\\r\\nX");
        assert_eq!(escape("Zürich 東京 عربي 🎫"), "Zürich 東京 عربي 🎫");
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape_lines("a\nb\r"), "a\nb\\r");
        assert_eq!(hex(&[0, 0xff, 0x1b]), "00ff1b");
    }
}
