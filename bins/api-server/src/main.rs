#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
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
    /// GET /health of the server this configuration describes (or --url) and exit 0 when it
    /// answers 200, 1 otherwise: a container health check needs no curl in the image.
    Health {
        /// Default: http(s)://127.0.0.1:<server.port>/health (the configured host when it is
        /// not a wildcard address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Check an inclusion proof (the JSON of GET /api/v1/ledger/transfers/{id}/proof) against
    /// the hash of a block you pinned earlier; exits non-zero when it does not hold.
    VerifyProof {
        /// The proof's JSON file (`-` for standard input).
        proof: PathBuf,
        /// The pinned block's hash, 64 hex digits.
        #[arg(long)]
        pinned: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::VerifyProof { proof, pinned }) = &cli.command {
        let text = if proof.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(proof)?
        };
        let proof: ledger::InclusionProof = serde_json::from_str(&text)?;
        let pinned = ledger::seal::parse_hash(pinned)
            .map_err(|error| anyhow::anyhow!("--pinned: {error} (64 hex digits)"))?;
        ledger::seal::proof::verify(&proof, &pinned)?;
        println!(
            "transfer {} is in block {} of the chain holding the pinned block",
            proof.transfer_id, proof.block_height
        );
        return Ok(());
    }
    if let Some(Command::HashToken) = cli.command {
        let mut token = String::new();
        std::io::stdin().read_line(&mut token)?;
        anyhow::ensure!(
            token.trim().len() >= 32,
            "a service token should be at least 32 characters (e.g. `openssl rand -hex 32`)"
        );
        println!("{}", access::tokens::hash_token(&token));
        return Ok(());
    }
    let mut settings: Settings = app_config::load(cli.config.as_deref())?;
    settings.apply_seed_environment(|name| std::env::var(name).ok())?;
    if let Some(Command::Health { url }) = &cli.command {
        return probe_health(&settings, url.as_deref());
    }
    if cli.print_config {
        print!("{}", toml::to_string_pretty(&settings.redacted())?);
        let budget = api_server::pools::connection_budget(&settings);
        let total: usize = budget.iter().map(|(_, count)| count).sum();
        println!("\n# PostgreSQL connections this instance may open at most: {total}");
        for (part, count) in budget {
            println!("#   {count:>4}  {part}");
        }
        return Ok(());
    }
    let _log_output = init_tracing(&settings.log)?;
    let application = Application::build(settings).await?;
    application.run_until_stopped().await?;
    Ok(())
}

/// `api-server health`: one GET, a short timeout.
fn probe_health(settings: &Settings, url: Option<&str>) -> anyhow::Result<()> {
    let server = &settings.server;
    let host = match server.host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_owned(),
        // An IPv6 literal is bracketed in a URL.
        host if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
        host => host.to_owned(),
    };
    let scheme = if server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = url.map_or_else(
        || format!("{scheme}://{host}:{}/health", server.port),
        str::to_owned,
    );
    // The probe checks that this host's own server answers: its certificate names the public
    // host, not 127.0.0.1, and nothing secret is sent, so the certificate is not checked.
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(true)
        .build();
    let agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let status = agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?
        .status();
    anyhow::ensure!(status == 200, "GET {url} answered {status}");
    println!("{url}: {status}");
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
