//! `tixngo-lab`: bench, chaos and demo (see the library's documentation).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match tixngo_lab::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    tixngo_bridge::telemetry::init_with_default(cli.log_format, cli.command.default_log_filter());
    tixngo_lab::cli::run(cli).await
}
