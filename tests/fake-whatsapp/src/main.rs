//! `fake-whatsapp --listen ADDR`: serves the stand-in page and its control API, prints
//! `FAKE_WHATSAPP_URL=http://ADDR/` on stdout once listening.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fake_whatsapp::{FakeWhatsApp, Generation, PageConfig, Timings};

/// A stand-in for WhatsApp Web for tests (the page modules automation reads, QR rotation,
/// linked devices) with a control API under /_fake/. See docs/fake-whatsapp.md.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0: any free port; the URL printed says which).
    #[arg(long, env = "FAKE_WHATSAPP_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Lifetime of the first QR of a round, in seconds (fractions allowed).
    #[arg(long, env = "FAKE_WHATSAPP_FIRST_QR_SECS", default_value_t = 60.0)]
    first_qr_secs: f64,
    /// Lifetime of each following QR, in seconds.
    #[arg(long, env = "FAKE_WHATSAPP_NEXT_QR_SECS", default_value_t = 20.0)]
    next_qr_secs: f64,
    /// QRs per round before the page goes UNPAIRED_IDLE (expired; reload button / Cmd.refreshQR()).
    #[arg(long, env = "FAKE_WHATSAPP_MAX_QRS", default_value_t = 6)]
    max_qrs: u32,
    /// How long a freshly loaded page stays OPENING, in seconds.
    #[arg(long, env = "FAKE_WHATSAPP_OPENING_SECS", default_value_t = 0.3)]
    opening_secs: f64,
    /// PAIRING → CONNECTED after a scan, in seconds.
    #[arg(long, env = "FAKE_WHATSAPP_PAIRING_SECS", default_value_t = 1.0)]
    pairing_secs: f64,
    /// CONNECTED → hasSynced, in seconds.
    #[arg(long, env = "FAKE_WHATSAPP_SYNC_SECS", default_value_t = 0.5)]
    sync_secs: f64,
    /// Generation of WhatsApp Web's internals to serve: 2026-04 (as whatsapp-web.js 1.34.7
    /// reads it) or 2026-03 (as 1.34.6 reads it). See docs/fake-whatsapp.md.
    #[arg(long, env = "FAKE_WHATSAPP_GENERATION", default_value_t = Generation::default())]
    generation: Generation,
    /// Test hook: a module the page's loader does not know (repeatable; env: comma-separated),
    /// as if WhatsApp had removed or renamed it.
    #[arg(
        long = "without-module",
        env = "FAKE_WHATSAPP_WITHOUT_MODULES",
        value_delimiter = ','
    )]
    without_modules: Vec<String>,
}

fn secs(name: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|e| format!("--{name} {v}: {e}"))
}

fn timings(a: &Args) -> Result<Timings, String> {
    if a.max_qrs == 0 {
        return Err("--max-qrs must be at least 1".into());
    }
    Ok(Timings {
        first_qr: secs("first-qr-secs", a.first_qr_secs)?,
        next_qr: secs("next-qr-secs", a.next_qr_secs)?,
        max_qrs: a.max_qrs,
        opening: secs("opening-secs", a.opening_secs)?,
        pairing: secs("pairing-secs", a.pairing_secs)?,
        sync: secs("sync-secs", a.sync_secs)?,
        ..Timings::default()
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let timings = match timings(&args) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "bad arguments");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeWhatsApp::start_with(
        args.listen,
        timings,
        PageConfig {
            generation: args.generation,
            without_modules: args.without_modules.clone(),
        },
    )
    .await
    {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    println!("FAKE_WHATSAPP_URL={}", fake.url());
    let _ = std::io::stdout().flush();
    tracing::info!(url = %fake.url(), generation = %args.generation, "listening");
    tokio::select! {
        _ = fake.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::SUCCESS
}
