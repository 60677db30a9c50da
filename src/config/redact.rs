//! Redaction: what `config check` prints. The effective settings are serialized as they are
//! (derived `Serialize` on every settings type), so a new setting is printed without anyone
//! remembering to; secrets are `SecretString`, which does not serialize, so a new secret does not
//! compile until it names one of the serializers below.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;
use url::Url;

use std::collections::BTreeMap;

use super::{Interface, Settings};

/// Replaces the password of a URL with `***`, for display.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// `***` for any secret.
pub(super) fn secret<S: Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("***")
}

/// A URL that may carry a password, with the password as `***`.
pub(super) fn url<S: Serializer>(value: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(value.expose_secret()))
}

/// A value by its `Display` form (a parsed URL without credentials).
pub(super) fn display<S: Serializer, T: std::fmt::Display>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// A list written comma-separated in the file.
pub(super) fn comma_separated<S: Serializer>(value: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.join(", "))
}

/// The interfaces as the file's `[[interfaces]]` list, in organization order.
pub(super) fn interfaces<S: Serializer>(
    value: &BTreeMap<String, Interface>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(value.values())
}

impl Settings {
    /// The effective configuration as TOML, secrets replaced by `***` (for `config check`).
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# the configuration cannot be printed as TOML: {e}\n"))
    }
}
