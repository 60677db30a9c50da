//! The raw layer: the TOML file, then the `TIXNGO_BRIDGE__SECTION__KEY` environment overrides,
//! deserialized strictly into [`RawSettings`] (no validation here).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{ConfigError, ENV_PREFIX, RawSettings};

/// Reads `path` and the given environment map (tests pass their own), without validating.
pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<RawSettings, ConfigError> {
    let location = path.display().to_string();
    if !path.is_file() {
        return Err(ConfigError::one(
            location,
            "configuration file not found (pass --config FILE; config/example.toml is an annotated example)",
        ));
    }
    let overrides = EnvOverrides::new(env);
    config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(overrides.clone())
        .build()
        .and_then(|c| c.try_deserialize::<RawSettings>())
        .map_err(|e| ConfigError::one(overrides.blame(&e).unwrap_or(location), e.to_string()))
}

/// Settings that are lists. In the environment they are written comma-separated
/// (`TIXNGO_BRIDGE__TOPOLOGY__RETRY_TIERS=5s,30s`; empty for an empty list); every other
/// setting is taken verbatim as a string and converted to the setting's type, so
/// `TIXNGO_BRIDGE__NOTIFIER__SMTP__PASSWORD=0123` stays `0123`. A test loads every setting
/// through the environment, so a new list setting missing here fails it.
pub const ENV_LIST_SETTINGS: &[&str] = &["topology.retry_tiers", "notifier.fallback_emails"];

/// The `TIXNGO_BRIDGE__SECTION__KEY` variables as a configuration source: values kept as the
/// strings they are (the `config` crate's own parsing turned `0123` into the number 123), list
/// settings split at commas, and each value's origin the variable's name, so an error names it.
#[derive(Debug, Clone)]
struct EnvOverrides {
    /// Setting path (`notifier.smtp.password`) → (variable name, value), for this process's
    /// variables with the prefix.
    values: BTreeMap<String, (String, String)>,
}

impl EnvOverrides {
    fn new(env: HashMap<String, String>) -> Self {
        let prefix = format!("{ENV_PREFIX}__");
        let values = env
            .into_iter()
            .filter_map(|(name, value)| {
                let rest = name.strip_prefix(&prefix)?;
                let key = rest
                    .split("__")
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>()
                    .join(".");
                Some((key, (name, value)))
            })
            .collect();
        Self { values }
    }

    /// The variable a configuration error is about, when it is about one.
    fn blame(&self, error: &config::ConfigError) -> Option<String> {
        if let config::ConfigError::Type {
            origin: Some(origin), ..
        } = error
            && self.values.values().any(|(name, _)| name == origin)
        {
            return Some(origin.clone());
        }
        let text = error.to_string();
        self.values
            .iter()
            .find(|(key, _)| {
                text.contains(&format!("`{key}`"))
                    || text.contains(&format!("`{key}["))
                    || key
                        .rsplit('.')
                        .next()
                        .is_some_and(|last| text.contains(&format!("unknown field `{last}`")))
            })
            .map(|(_, (name, _))| name.clone())
    }
}

impl config::Source for EnvOverrides {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self
            .values
            .iter()
            .map(|(key, (name, value))| {
                let origin = Some(name);
                let kind = if ENV_LIST_SETTINGS.contains(&key.as_str()) {
                    config::ValueKind::Array(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|item| !item.is_empty())
                            .map(|item| config::Value::new(origin, item.to_owned()))
                            .collect(),
                    )
                } else {
                    config::ValueKind::String(value.clone())
                };
                (key.clone(), config::Value::new(origin, kind))
            })
            .collect())
    }
}

/// Parses configuration from a TOML string (tests and examples).
pub fn from_toml(text: &str) -> Result<RawSettings, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::one("configuration", e.to_string()))
}
