use std::path::PathBuf;

use api_server::Application;
use api_server::settings::Settings;
use clap::Parser;

/// Serves the FODI REST API. With no database configured (database.url, FODI__DATABASE__URL),
/// it starts and migrates a private PostgreSQL cluster under ./.data/pg.
#[derive(Debug, Parser)]
#[command(name = "api-server", version)]
struct Cli {
    /// Configuration file (default: ./fodi.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = app_config::load(cli.config.as_deref())?;
    init_tracing(&settings.log);
    let application = Application::build(settings).await?;
    application.run_until_stopped().await?;
    Ok(())
}

fn init_tracing(log: &api_server::settings::LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FODI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if log.json {
        builder.json().init();
    } else {
        builder.init();
    }
}
