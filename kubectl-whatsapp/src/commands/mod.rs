//! One function per subcommand: read or follow the session, decide with the pure modules,
//! write with server-side apply, print.

mod qr;
mod read;
mod wait;
mod write;

use std::io::Write;

use crds::WhatsAppSession;
use kube::Api;

use crate::cli::Command;
use crate::client::Target;
use crate::error::Error;
use crate::lang::Lang;

/// What every command works with.
pub struct Ctx {
    pub target: Target,
    pub lang: Lang,
    /// Colours and screen redraws: standard output is a terminal and `NO_COLOR` is unset.
    pub terminal: bool,
}

impl Ctx {
    fn api(&self) -> Api<WhatsAppSession> {
        self.target.sessions()
    }

    fn ns(&self) -> &str {
        &self.target.namespace
    }

    /// The session, or why it cannot be read.
    async fn get(&self, name: &str) -> Result<WhatsAppSession, Error> {
        self.api()
            .get(name)
            .await
            .map_err(|e| Error::from_kube(e, "get", self.ns(), Some(name)))
    }
}

/// Runs `command`; what it prints goes to `out` (standard output; messages about progress go
/// to standard error).
pub async fn run(ctx: &Ctx, command: Command, out: &mut impl Write) -> Result<(), Error> {
    match command {
        Command::List { all_namespaces } => read::list(ctx, all_namespaces, out).await,
        Command::Status { name } => read::status(ctx, &name, out).await,
        Command::Connect { name } => write::connect(ctx, &name, out).await,
        Command::Logout { name } => write::logout(ctx, &name, out).await,
        Command::Stop { name } => {
            write::set_desired(ctx, &name, crds::DesiredState::Stopped, out).await
        }
        Command::Start { name } => {
            write::set_desired(ctx, &name, crds::DesiredState::Running, out).await
        }
        Command::Qr {
            name,
            timeout,
            invert,
        } => qr::qr(ctx, &name, timeout, invert, out).await,
        Command::Wait {
            name,
            state,
            timeout,
        } => wait::wait(ctx, &name, state.state(), timeout, out).await,
    }
}

/// Writing to standard output failed (a closed pipe): nothing useful is left to do.
fn print(out: &mut impl Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
