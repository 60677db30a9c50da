//! Configuration validation: the example stays valid, and each bad input names its problem.

use std::process::Command;

use tixngo_bridge::config::{self, ConfigError};

const GOOD: &str = r#"
[[interfaces]]
organization = "ACME"
kind = "tixngo"
url = "https://tixngo.example.com/acme/organizer/tickets"
username = "admin@acme.example"
api_key = "k-123"
notification_emails = "a@acme.example, b@acme.example"
"#;

fn check(text: &str) -> Result<config::Settings, ConfigError> {
    config::from_toml(text)?.validate_with(|_| None)
}

fn problems(text: &str) -> Vec<String> {
    match check(text) {
        Ok(_) => panic!("configuration unexpectedly valid:\n{text}"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn assert_problem(text: &str, location: &str, needle: &str) {
    let problems = problems(text);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(location) && p.contains(needle)),
        "expected a problem at {location} mentioning {needle:?}, got {problems:#?}"
    );
}

#[test]
fn good_configuration_is_valid() {
    let settings = check(GOOD).unwrap();
    let acme = settings.interface("ACME").unwrap();
    assert_eq!(acme.notification_emails, ["a@acme.example", "b@acme.example"]);
    assert_eq!(acme.api_key_header, "X-Api-Key");
    assert!(
        !format!("{acme:?}").contains("k-123"),
        "Debug must not show the key"
    );
    assert!(!settings.redacted_toml().contains("k-123"));
}

#[test]
fn example_file_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let settings = config::load(std::path::Path::new(path)).unwrap();
    assert_eq!(settings.interfaces.len(), 2);
}

#[test]
fn duplicate_organization_is_refused_with_the_reason() {
    let text = format!("{GOOD}\n{GOOD}");
    assert_problem(
        &text,
        "interfaces[ACME].organization",
        "only one TIXnGO interface per organization",
    );
}

#[test]
fn url_must_end_with_organizer_tickets() {
    let text = GOOD.replace("/acme/organizer/tickets", "/acme/tickets");
    assert_problem(&text, "interfaces[ACME].url", "must end with `organizer/tickets`");
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let text = GOOD.replace("https://tixngo.example.com", "http://tixngo.example.com");
    assert_problem(&text, "interfaces[ACME].url", "unencrypted");
    let allowed = text.replace(
        "kind = \"tixngo\"",
        "kind = \"tixngo\"\nallow_insecure_http = true",
    );
    assert!(check(&allowed).is_ok());
    let loopback = GOOD.replace("https://tixngo.example.com", "http://127.0.0.1:8089");
    assert!(check(&loopback).is_ok());
}

#[test]
fn missing_api_key_is_refused() {
    let text = GOOD.replace("api_key = \"k-123\"\n", "");
    assert_problem(&text, "interfaces[ACME].api_key", "missing");
}

#[test]
fn api_key_env_must_be_set() {
    let text = GOOD.replace(
        "api_key = \"k-123\"",
        "api_key_env = \"NO_SUCH_VARIABLE_FOR_TESTS\"",
    );
    assert_problem(
        &text,
        "interfaces[ACME].api_key_env",
        "NO_SUCH_VARIABLE_FOR_TESTS is not set",
    );
    let settings = config::from_toml(&text)
        .unwrap()
        .validate_with(|name| (name == "NO_SUCH_VARIABLE_FOR_TESTS").then(|| "from-env".to_owned()))
        .unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        settings.interface("ACME").unwrap().api_key.expose_secret(),
        "from-env"
    );
}

#[test]
fn api_key_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "file-key\n").unwrap();
    let text = GOOD.replace(
        "api_key = \"k-123\"",
        &format!("api_key_file = {:?}", path.display().to_string()),
    );
    let settings = check(&text).unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        settings.interface("ACME").unwrap().api_key.expose_secret(),
        "file-key"
    );
}

#[test]
fn bad_email_is_refused() {
    let text = GOOD.replace("b@acme.example", "not-an-address");
    assert_problem(
        &text,
        "interfaces[ACME].notification_emails",
        "\"not-an-address\" is not a valid e-mail",
    );
}

#[test]
fn template_kind_needs_a_template() {
    let text = GOOD.replace("kind = \"tixngo\"", "kind = \"tixngo_with_template\"");
    assert_problem(&text, "interfaces[ACME].template", "is required");
    let missing = text.replace(
        "kind = \"tixngo_with_template\"",
        "kind = \"tixngo_with_template\"\ntemplate = \"/nonexistent/t.j2\"",
    );
    assert_problem(&missing, "interfaces[ACME].template", "does not exist");
}

#[test]
fn every_problem_is_listed_at_once() {
    let text = GOOD
        .replace("/acme/organizer/tickets", "/acme")
        .replace("b@acme.example", "nope")
        .replace("api_key = \"k-123\"\n", "");
    assert_eq!(problems(&text).len(), 3, "{:#?}", problems(&text));
}

#[test]
fn unknown_keys_are_refused() {
    let text = format!("[worker]\nprefetsh = 10\n{GOOD}");
    let error = config::from_toml(&text).unwrap_err().to_string();
    assert!(error.contains("prefetsh"), "{error}");
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, GOOD).unwrap();
    let env = [
        (
            "TIXNGO_BRIDGE__AMQP__URL".to_owned(),
            "amqp://u:p@rabbit:5672/%2f".to_owned(),
        ),
        ("TIXNGO_BRIDGE__WORKER__PREFETCH".to_owned(), "7".to_owned()),
    ]
    .into_iter()
    .collect();
    let settings = config::load_with_env(&path, env)
        .unwrap()
        .validate_with(|_| None)
        .unwrap();
    assert_eq!(settings.worker.prefetch, 7);
    assert!(format!("{:?}", settings.amqp).contains("u:***@rabbit"));
}

fn bridge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tixngo-bridge"))
}

#[test]
fn config_check_exits_0_on_the_example_and_hides_secrets() {
    let out = bridge()
        .args(["config", "check", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ACME") && stdout.contains("api_key = \"***\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("acme-demo-key") && !stdout.contains("guest:guest"),
        "{stdout}"
    );
}

#[test]
fn config_check_exits_78_listing_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!("{GOOD}\n{GOOD}").replace("https://tixngo.example.com", "http://tixngo.example.com"),
    )
    .unwrap();
    let out = bridge()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("only one TIXnGO interface"), "{stderr}");
    assert!(stderr.contains("interfaces[ACME].url"), "{stderr}");
    assert!(!stderr.contains("k-123"), "{stderr}");
}

#[test]
fn usage_errors_exit_64() {
    let out = bridge().args(["no-such-command"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = bridge().args(["--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// GOOD with an SMTP section, so the notifier's settings are there too.
fn good_with_smtp() -> String {
    format!(
        "{GOOD}\n[notifier]\nfallback_emails = [\"ops@bridge.example\"]\n[notifier.smtp]\nhost = \"127.0.0.1\"\nport = 2525\n\
         security = \"none\"\nusername = \"bridge\"\npassword = \"file-password\"\nfrom = \"bridge@ops.example\"\ntimeout = \"10s\"\n"
    )
}

fn load_env(text: &str, vars: &[(&str, &str)]) -> Result<config::Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    let env = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config::load_with_env(&path, env)?.validate_with(|_| None)
}

#[test]
fn environment_strings_are_kept_verbatim() {
    use secrecy::ExposeSecret;
    let settings = load_env(
        &good_with_smtp(),
        &[
            ("TIXNGO_BRIDGE__NOTIFIER__SMTP__PASSWORD", "0123"),
            ("TIXNGO_BRIDGE__AMQP__CONNECTION_NAME", "007"),
            ("TIXNGO_BRIDGE__TOPOLOGY__QUEUE_PREFIX", "1e3"),
            ("TIXNGO_BRIDGE__NOTIFIER__SMTP__USERNAME", "true"),
        ],
    )
    .unwrap();
    let smtp = settings.notifier.smtp.as_ref().unwrap();
    let login = smtp.credentials.as_ref().unwrap();
    assert_eq!(login.password.expose_secret(), "0123");
    assert_eq!(login.username, "true");
    assert_eq!(settings.amqp.connection_name, "007");
    assert_eq!(settings.topology.queue_prefix, "1e3");
}

#[test]
fn environment_lists_are_comma_separated() {
    let settings = load_env(
        &good_with_smtp(),
        &[
            ("TIXNGO_BRIDGE__TOPOLOGY__RETRY_TIERS", "5s, 30s"),
            (
                "TIXNGO_BRIDGE__NOTIFIER__FALLBACK_EMAILS",
                "a@ops.example,b@ops.example",
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        settings.topology.tiers(),
        [
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(30)
        ]
    );
    assert_eq!(
        settings.notifier.fallback_emails,
        ["a@ops.example", "b@ops.example"]
    );
    let single = load_env(GOOD, &[("TIXNGO_BRIDGE__TOPOLOGY__RETRY_TIERS", "1m")]).unwrap();
    assert_eq!(single.topology.tiers(), [std::time::Duration::from_secs(60)]);
}

#[test]
fn an_environment_error_names_the_variable_not_the_file() {
    for (name, value) in [
        ("TIXNGO_BRIDGE__WORKER__PREFETCH", "many"),
        ("TIXNGO_BRIDGE__TOPOLOGY__RETRY_TIERS", "5s,soon"),
        ("TIXNGO_BRIDGE__WORKER__PREFETSH", "10"),
    ] {
        let error = load_env(GOOD, &[(name, value)]).unwrap_err();
        let problem = &error.problems[0];
        assert_eq!(problem.location, name, "{error}");
        assert!(!problem.to_string().contains("bridge.toml"), "{error}");
    }
}

/// Every setting the effective configuration shows (`config check`), written in the environment
/// as README says (lists comma-separated, everything else verbatim), loads to the same value: a
/// new setting of any type is covered without a new test.
#[test]
fn every_setting_loads_through_the_environment() {
    let settings = load_env(&good_with_smtp(), &[]).unwrap();
    let shown: toml::Table = toml::from_str(&settings.redacted_toml()).unwrap();
    let mut vars = Vec::new();
    fn walk(prefix: &str, table: &toml::Table, vars: &mut Vec<(String, String)>) {
        for (key, value) in table {
            let name = format!("{prefix}__{}", key.to_ascii_uppercase());
            let text = match value {
                toml::Value::Table(inner) => {
                    walk(&name, inner, vars);
                    continue;
                }
                // One interface per organization is an array of tables: not settable from the
                // environment (README says so).
                toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => continue,
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                toml::Value::String(s) if s.contains("***") => continue,
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vars.push((name, text));
        }
    }
    walk("TIXNGO_BRIDGE", &shown, &mut vars);
    assert!(vars.len() > 40, "{vars:?}");
    let mut pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Secrets are not shown; the password goes with the username.
    pairs.push(("TIXNGO_BRIDGE__NOTIFIER__SMTP__PASSWORD", "secret"));
    // An empty file: every value comes from the environment (interfaces aside).
    let reloaded = load_env(GOOD, &pairs).unwrap_or_else(|e| panic!("{e}"));
    let again: toml::Table = toml::from_str(&reloaded.redacted_toml()).unwrap();
    for (name, _) in &vars {
        let path: Vec<String> = name
            .trim_start_matches("TIXNGO_BRIDGE__")
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let get = |t: &toml::Table| {
            let mut node = toml::Value::Table(t.clone());
            for part in &path {
                node = node
                    .get(part)
                    .cloned()
                    .unwrap_or(toml::Value::String("<absent>".into()));
            }
            node
        };
        assert_eq!(get(&again), get(&shown), "{name}");
    }
}

/// `config check | head -1`, `render | head`, `topology export | head`: a reader that goes away
/// ends the command quietly, exit 0, no panic.
#[test]
fn a_closed_pipe_ends_printing_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("m.json");
    std::fs::write(&message, include_str!("../../schemas/examples/inject-match.json")).unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let message = message.display().to_string();
    for args in [
        vec!["config", "check", "--config", example],
        vec!["topology", "export", "--config", example],
        vec![
            "render",
            "--config",
            example,
            "--organization",
            "ACME",
            "--message",
            &message,
        ],
    ] {
        let mut child = bridge()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn since_after_until_is_a_usage_error() {
    for command in ["list", "show", "replay", "purge"] {
        let out = bridge()
            .args(["dlq", command, "--since", "1h", "--until", "2h", "--config"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{command}: {stderr}");
        assert!(
            stderr.contains("--since") && stderr.contains("--until"),
            "{stderr}"
        );
    }
}

/// A fatal error is printed once, with its cause once, and no colour codes reach a pipe.
#[test]
fn a_fatal_error_is_printed_once_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        format!("[amqp]\nurl = \"amqp://guest:guest@127.0.0.1:1/%2f\"\n[http]\nenabled = false\n{GOOD}"),
    )
    .unwrap();
    let out = bridge()
        .args(["run", "--flows", "inject", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in a pipe: {stderr:?}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
}
