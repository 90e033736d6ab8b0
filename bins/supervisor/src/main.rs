//! `supervisor run --config supervisor.toml` keeps the configured processes alive and healthy
//! and serves their control API; `supervisor ctl ...` talks to a running one.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use supervisor::config::{Config, TOKEN_ENV};
use supervisor::ctl::{Client, print_logs, print_statuses};

#[derive(Debug, Parser)]
#[command(
    name = "supervisor",
    version,
    about = "Keeps processes alive and healthy; controls them over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Supervise the processes of the configuration until SIGTERM or SIGINT.
    Run {
        #[arg(long, default_value = "supervisor.toml")]
        config: PathBuf,
    },
    /// Check a configuration as `run` would (the token, every process, the dependencies,
    /// the users) without starting anything: before restarting with a changed file.
    Check {
        #[arg(long, default_value = "supervisor.toml")]
        config: PathBuf,
    },
    /// Control a running supervisor.
    Ctl {
        /// Its control API (default: the `listen` address of --config).
        #[arg(long, env = "SUPERVISOR_URL")]
        url: Option<String>,
        /// Read the address and token from this configuration.
        #[arg(long, default_value = "supervisor.toml")]
        config: PathBuf,
        /// The CA to trust for the control API's certificate (default: `control.ca_file` of
        /// --config, else the Mozilla roots).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Print the JSON answers as they are.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Action,
    },
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Every process, or one.
    Status {
        name: Option<String>,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    Restart {
        name: String,
    },
    /// Its recent output.
    Logs {
        name: String,
        #[arg(long, default_value_t = 100)]
        lines: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config } => check(&config),
        Command::Ctl {
            url,
            config,
            ca_file,
            json,
            action,
        } => ctl(url, &config, ca_file, json, &action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("supervisor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::load(path)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(supervisor::run(config))
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let processes: Vec<String> = config.processes.iter().map(|p| p.name.clone()).collect();
    // Building the supervisor is the check `run` makes: names, dependencies, each spec.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async { orchestrator::Supervisor::new(config.processes).map(drop) })?;
    println!(
        "{}: valid; {} process(es): {}",
        path.display(),
        processes.len(),
        processes.join(", ")
    );
    Ok(())
}

fn ctl(
    url: Option<String>,
    path: &std::path::Path,
    ca_file: Option<PathBuf>,
    json: bool,
    action: &Action,
) -> anyhow::Result<()> {
    let (url, token, ca_file) = match (url, std::env::var(TOKEN_ENV)) {
        // Address and token given: the configuration, when there is one, may still name the CA.
        (Some(url), Ok(token)) => {
            let ca_file = ca_file.or_else(|| {
                path.exists()
                    .then(|| Config::load(path).ok())
                    .flatten()
                    .and_then(|config| config.control.ca_file)
            });
            (url, token, ca_file)
        }
        (url, token) => {
            let config = Config::load(path)?;
            let scheme = if config.control.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let url = url.unwrap_or_else(|| format!("{scheme}://{}", config.control.listen));
            let ca_file = ca_file.or_else(|| config.control.ca_file.clone());
            (
                url,
                token.unwrap_or_else(|_| config.token().to_owned()),
                ca_file,
            )
        }
    };
    let client = Client::new(&url, &token, ca_file.as_deref())?;
    let answer = match action {
        Action::Status { name } => client.status(name.as_deref())?,
        Action::Start { name } => client.act("start", name)?,
        Action::Stop { name } => client.act("stop", name)?,
        Action::Restart { name } => client.act("restart", name)?,
        Action::Logs { name, lines } => client.logs(name, *lines)?,
    };
    if json {
        println!("{answer}");
    } else if matches!(action, Action::Logs { .. }) {
        print_logs(&answer);
    } else {
        print_statuses(&answer);
    }
    Ok(())
}
