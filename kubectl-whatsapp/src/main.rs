use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kubectl_whatsapp::cli::Cli;
use kubectl_whatsapp::client::Target;
use kubectl_whatsapp::commands::{self, Ctx};
use kubectl_whatsapp::lang::Lang;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let lang = Lang::detect(cli.global.lang, |k| std::env::var(k).ok());
    let result = async {
        let target = Target::new(&cli.global).await?;
        let terminal = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let ctx = Ctx {
            target,
            lang,
            terminal,
        };
        commands::run(&ctx, cli.command, &mut std::io::stdout()).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message(lang));
            ExitCode::from(1)
        }
    }
}
