//! The command line: kubectl's connection flags (`-n`, `--context`, `--kubeconfig`) and one
//! subcommand per action. kubectl hands a plugin every argument after `kubectl whatsapp`
//! unchanged, so the plugin parses them itself, with kubectl's names and meanings.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use crds::SessionState;

use crate::lang::Lang;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-whatsapp",
    bin_name = "kubectl whatsapp",
    version,
    about = "Manage WhatsAppSessions (whatsapp-operator) from kubectl: list, status, link a phone \
             with a QR drawn in the terminal, log out, stop, start, wait.",
    long_about = None,
    after_help = "Uses your kubeconfig and RBAC only (no hub). Every write is a server-side apply \
                  of the same spec requests the hub makes (desiredState, qrRequestedAt, \
                  logoutRequestedAt), as field manager kubectl-whatsapp.\n\
                  Messages follow LC_ALL / LC_MESSAGES / LANG (es or en; Spanish otherwise), or \
                  --lang.\n\n\
                  Examples:\n  kubectl whatsapp list -A\n  kubectl whatsapp qr ventas -n acme\n  \
                  kubectl whatsapp wait ventas --for=connected --timeout=5m"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// The namespace (default: the kubeconfig context's namespace, else "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Language of the messages: es or en (default: from LC_ALL / LC_MESSAGES / LANG).
    #[arg(long, global = true, env = "KUBECTL_WHATSAPP_LANG", value_enum)]
    pub lang: Option<Lang>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the sessions of the namespace (or of all with -A): tenant, status, QR, phone.
    List {
        /// Sessions of every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Show one session: desired and observed state, QR, phone, last error, conditions.
    Status { name: String },
    /// Draw the session's live QR in the terminal until a phone scans it; prints the phone
    /// number and exits 0 once connected. Starts the session and asks for a QR when none is valid.
    Qr {
        name: String,
        /// Give up after this long (e.g. 90s, 10m, 1h30m).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Draw dark modules as blocks (for terminals with a light background) when colours are
        /// off (output not a terminal, or NO_COLOR set).
        #[arg(long)]
        invert: bool,
    },
    /// Make sure the session runs and ask for a fresh QR when none is valid (what the UI's
    /// "Conectar WhatsApp" does); `qr` shows it.
    Connect { name: String },
    /// Ask the session to log out of WhatsApp and wipe its saved login.
    Logout { name: String },
    /// Stop the session: no pod, its data kept (spec.desiredState=Stopped).
    Stop { name: String },
    /// Start a stopped session (spec.desiredState=Running).
    Start { name: String },
    /// Wait until the session reaches a state, like `kubectl wait`.
    Wait {
        name: String,
        /// The state to wait for.
        #[arg(long = "for", value_enum)]
        state: WaitFor,
        /// Give up after this long (e.g. 30s, 5m).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// The states `wait --for` accepts: those of `status.status` (docs/design.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WaitFor {
    Init,
    #[value(name = "qr_required", alias = "qr-required")]
    QrRequired,
    Connecting,
    Connected,
    Disconnected,
    Error,
}

impl WaitFor {
    pub fn state(self) -> SessionState {
        match self {
            Self::Init => SessionState::Init,
            Self::QrRequired => SessionState::QrRequired,
            Self::Connecting => SessionState::Connecting,
            Self::Connected => SessionState::Connected,
            Self::Disconnected => SessionState::Disconnected,
            Self::Error => SessionState::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-whatsapp").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kubectl_flags_are_accepted_before_and_after_the_subcommand() {
        let c = parse(&["-n", "acme", "--context", "prod", "qr", "ventas"]).unwrap();
        assert_eq!(c.global.namespace.as_deref(), Some("acme"));
        assert_eq!(c.global.context.as_deref(), Some("prod"));
        assert!(
            matches!(c.command, Command::Qr { ref name, timeout, invert: false } if name == "ventas" && timeout == Duration::from_secs(600))
        );
        let c = parse(&["status", "ventas", "--namespace=acme", "--lang", "en"]).unwrap();
        assert_eq!(c.global.namespace.as_deref(), Some("acme"));
        assert_eq!(c.global.lang, Some(Lang::En));
    }

    #[test]
    fn wait_takes_a_state_and_a_timeout() {
        let c = parse(&["wait", "s1", "--for=connected", "--timeout=2m"]).unwrap();
        match c.command {
            Command::Wait {
                name,
                state,
                timeout,
            } => {
                assert_eq!(name, "s1");
                assert_eq!(state.state(), SessionState::Connected);
                assert_eq!(timeout, Duration::from_secs(120));
            }
            other => panic!("{other:?}"),
        }
        let c = parse(&["wait", "s1", "--for", "qr-required"]).unwrap();
        assert!(
            matches!(c.command, Command::Wait { state: WaitFor::QrRequired, timeout, .. } if timeout == Duration::from_secs(30))
        );
        assert!(parse(&["wait", "s1"]).is_err(), "--for is required");
        assert!(parse(&["wait", "s1", "--for=linked"]).is_err());
    }

    #[test]
    fn list_all_namespaces_and_missing_names() {
        assert!(matches!(
            parse(&["list", "-A"]).unwrap().command,
            Command::List {
                all_namespaces: true
            }
        ));
        for cmd in ["status", "qr", "connect", "logout", "stop", "start"] {
            assert!(parse(&[cmd]).is_err(), "{cmd} without a name");
        }
        assert!(parse(&[]).is_err(), "a subcommand is required");
    }

    #[test]
    fn timeouts_take_the_binaries_one_duration_grammar() {
        let timeout = |t: &str| match parse(&["wait", "s", "--for", "connected", "--timeout", t]) {
            Ok(Cli {
                command: Command::Wait { timeout, .. },
                ..
            }) => Ok(timeout),
            Ok(_) => panic!("not a wait"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(timeout("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(timeout("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(timeout("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(timeout("1.5m"), Ok(Duration::from_secs(90)));
        for bad in ["", "m", "5x", "90", "-1"] {
            assert!(timeout(bad).is_err(), "{bad}");
        }
    }
}
