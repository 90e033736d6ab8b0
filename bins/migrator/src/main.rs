use std::process::ExitCode;

use clap::Parser;
use migrator::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are not failures; every usage error is exit status 1,
            // keeping 2 to mean "verify found pending or drifted migrations".
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FODI_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    migrator::run(cli).await
}
