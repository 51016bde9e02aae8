use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use hub::config::{Cli, Command};

fn init_logs() {
    // docs/hub.md "Logs": kube-client's duplicates of errors the hub reports are off.
    let filter = runtime::logs::filter("");
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .init();
}

fn hash_password() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    // One trailing newline comes from `echo`/a terminal, not from the password.
    let password = input
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&input);
    if password.is_empty() {
        eprintln!("empty password on stdin");
        return ExitCode::FAILURE;
    }
    match hub::auth::users::hash_password(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    init_logs();
    let shutdown = match runtime::shutdown::Shutdown::on_signals() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the signal handlers");
            return ExitCode::FAILURE;
        }
    };
    match hub::app::run(cli.serve, async move { shutdown.started().await }).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "wa-hub failed");
            ExitCode::FAILURE
        }
    }
}
