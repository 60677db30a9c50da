#![forbid(unsafe_code)]

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match tixngo_bridge::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    tixngo_bridge::telemetry::init(cli.log_format);
    tixngo_bridge::cli::run(cli).await
}
