//! Secrets: where API keys and passwords come from (the file, an environment variable or a file
//! of their own), kept in `SecretString` so that no `Debug` or log prints them.

use std::path::PathBuf;

use secrecy::SecretString;

/// A command-line value that is a secret (a URL with a password): kept in a `SecretString`.
pub fn secret_arg(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

/// A secret given inline, by environment variable or by file (trailing newline ignored).
/// `Ok(None)`: none given. `Err((field, message))`: `field` is `name`, `name_env` or `name_file`.
pub(super) fn resolve_secret(
    name: &str,
    inline: &Option<SecretString>,
    env_var: &Option<String>,
    file: &Option<PathBuf>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SecretString>, (String, String)> {
    match (inline, env_var, file) {
        (Some(value), None, None) => Ok(Some(value.clone())),
        (None, Some(var), None) => match env(var) {
            Some(value) if !value.trim().is_empty() => Ok(Some(SecretString::from(value.trim().to_owned()))),
            _ => Err((
                format!("{name}_env"),
                format!("environment variable {var} is not set or empty"),
            )),
        },
        (None, None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(SecretString::from(value.trim().to_owned()))),
            Ok(_) => Err((format!("{name}_file"), format!("{} is empty", path.display()))),
            Err(e) => Err((
                format!("{name}_file"),
                format!("cannot read {}: {e}", path.display()),
            )),
        },
        (None, None, None) => Ok(None),
        _ => Err((
            name.to_owned(),
            format!("set only one of {name}, {name}_env and {name}_file"),
        )),
    }
}
