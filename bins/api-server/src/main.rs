#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::path::PathBuf;

use api_server::Application;
use api_server::settings::Settings;
use clap::Parser;

mod log_output;

/// Serves the FODI REST API. With no database configured (database.url, FODI__DATABASE__URL),
/// it starts and migrates a private PostgreSQL cluster under ./.data/pg.
#[derive(Debug, Parser)]
#[command(name = "api-server", version)]
struct Cli {
    /// Configuration file (default: ./fodi.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration (defaults, file, environment; secrets redacted) as
    /// TOML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the SHA-256 of a service token read from standard input (its first line), for
    /// `[[auth.tokens]] sha256`: the configuration holds the hash, never the token.
    HashToken,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::HashToken) = cli.command {
        let mut token = String::new();
        std::io::stdin().read_line(&mut token)?;
        anyhow::ensure!(
            token.trim().len() >= 32,
            "a service token should be at least 32 characters (e.g. `openssl rand -hex 32`)"
        );
        println!("{}", api_server::access::tokens::hash_token(&token));
        return Ok(());
    }
    let mut settings: Settings = app_config::load(cli.config.as_deref())?;
    settings.apply_seed_environment(|name| std::env::var(name).ok())?;
    if cli.print_config {
        print!("{}", toml::to_string_pretty(&settings.redacted())?);
        return Ok(());
    }
    let _log_output = init_tracing(&settings.log)?;
    let application = Application::build(settings).await?;
    application.run_until_stopped().await?;
    Ok(())
}

/// Logs to standard output through a shared buffer ([`log_output`]): lines are never
/// dropped, and a busy server writes a buffer of lines per system call. Dropping the returned
/// guard writes what is buffered.
fn init_tracing(
    log: &api_server::settings::LogSettings,
) -> anyhow::Result<log_output::FlushOnDrop> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FODI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let colours = std::io::stdout().is_terminal();
    let flush = log_output::start()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(log_output::line);
    if log.json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(flush)
}
