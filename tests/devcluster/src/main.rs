//! `devcluster`: a real local Kubernetes for development and tests (docs/design.md §6, §7).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use devcluster::daemon::{self, DaemonOptions};
use devcluster::lifecycle::{self, UpOptions};
use devcluster::state::{PodCidr, StateLayout};

#[derive(Parser)]
#[command(
    version,
    about = "A real local Kubernetes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and a node (kubelet, containerd, kube-proxy, CoreDNS) with a local image registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster in the background; returns once it is ready and prints
    /// KUBECONFIG=..., HOST_IP=..., NODE_IP=..., REGISTRY=... and NETWORK_POLICY=... (also written to
    /// STATE_DIR/cluster.env).
    /// Already running: prints the same and returns.
    Up {
        /// Directory for everything the cluster keeps (certificates, etcd, logs, volumes).
        #[arg(long, env = "DEVCLUSTER_STATE_DIR")]
        state_dir: PathBuf,
        /// Pod network: its first /30 links the host (first address, HOST_IP) and the node
        /// (second, NODE_IP); pods get its upper half.
        #[arg(long, env = "DEVCLUSTER_POD_CIDR", default_value = "10.244.0.0/24")]
        pod_cidr: String,
        /// NAT pod traffic to the outside world (needs iptables; tests never use it).
        #[arg(long, env = "DEVCLUSTER_POD_EGRESS")]
        pod_egress: bool,
        /// Do not enforce NetworkPolicy: no kube-router on the node, pods reach each other
        /// whatever the policies say (cluster.env NETWORK_POLICY=off).
        #[arg(long, env = "DEVCLUSTER_NO_NETWORK_POLICY")]
        no_network_policy: bool,
        /// Directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler
        /// [default: the versioned build cache, built by control-plane/build.sh when missing].
        #[arg(long, env = "DEVCLUSTER_BIN_DIR")]
        bin_dir: Option<PathBuf>,
        /// Give up when not ready after this many seconds.
        #[arg(long, env = "DEVCLUSTER_UP_TIMEOUT", default_value_t = 180)]
        timeout_secs: u64,
        /// Requests per second (bursts of twice that) each client of kube-controller-manager,
        /// kube-scheduler and the kubelet may send [default: their own, 20, 50 and 50]. At
        /// 20/s the StatefulSet controller creates ~5 pods a second; benches that start
        /// hundreds of pods raise it, as large clusters do.
        #[arg(long, env = "DEVCLUSTER_API_QPS", value_parser = clap::value_parser!(u32).range(1..=10000))]
        api_qps: Option<u32>,
    },
    /// Stop the cluster and remove its processes, mounts and network namespaces (idempotent).
    Down {
        #[arg(long, env = "DEVCLUSTER_STATE_DIR")]
        state_dir: PathBuf,
    },
    /// Restart one component of the running cluster, as a crash or an upgrade would: the
    /// supervisor stops it (SIGTERM, SIGKILL after 10 s; --kill: SIGKILL at once) and starts
    /// it again with the same command line, and this returns once it is back: etcd healthy
    /// and the API server ready; kube-apiserver /readyz ok; kubelet: the node's Lease renewed
    /// by the new kubelet and the node Ready; containerd: its socket answering and the node
    /// Ready; kube-controller-manager and kube-scheduler: started. Pods keep running. Only a
    /// requested restart is survived: any other exit of a component still stops the cluster.
    /// One restart at a time per cluster (a second one waits). Exit status 0 when back.
    Restart {
        #[arg(long, env = "DEVCLUSTER_STATE_DIR")]
        state_dir: PathBuf,
        /// SIGKILL at once (a crash) instead of SIGTERM first.
        #[arg(long)]
        kill: bool,
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(devcluster::control::RESTARTABLE))]
        component: String,
    },
    /// The supervisor `up` starts detached (internal).
    #[command(hide = true)]
    Daemon {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        pod_cidr: String,
        #[arg(long)]
        pod_egress: bool,
        #[arg(long)]
        no_network_policy: bool,
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        #[arg(long)]
        api_qps: Option<u32>,
    },
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,kube_client=off,hyper=warn")
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up {
            state_dir,
            pod_cidr,
            pod_egress,
            no_network_policy,
            bin_dir,
            timeout_secs,
            api_qps,
        } => {
            init_logs(false);
            let exe = match std::env::current_exe() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("devcluster up: locating own executable: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = UpOptions {
                state_dir,
                pod_cidr,
                pod_egress,
                network_policy: !no_network_policy,
                bin_dir,
                api_qps,
                exe,
                timeout: Duration::from_secs(timeout_secs),
            };
            match lifecycle::up(&opts).await {
                Ok(env) => {
                    print!("{}", env.render());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("devcluster up: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Down { state_dir } => {
            init_logs(false);
            match lifecycle::down(&state_dir).await {
                Ok(true) => {
                    eprintln!("devcluster: stopped {}", state_dir.display());
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    eprintln!(
                        "devcluster: {} was not running (leftovers removed)",
                        state_dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("devcluster down: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Restart {
            state_dir,
            kill,
            component,
        } => match devcluster::control::restart(&state_dir, &component, kill).await {
            Ok(reply) => {
                eprintln!("devcluster: {}", reply.message);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("devcluster restart {component}: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Daemon {
            state_dir,
            pod_cidr,
            pod_egress,
            no_network_policy,
            bin_dir,
            api_qps,
        } => {
            init_logs(true);
            let pod_cidr = match PodCidr::parse(&pod_cidr) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "bad pod CIDR");
                    return ExitCode::FAILURE;
                }
            };
            let opts = DaemonOptions {
                layout: StateLayout::new(state_dir),
                pod_cidr,
                pod_egress,
                network_policy: !no_network_policy,
                bin_dir,
                api_qps,
            };
            match daemon::run(opts).await {
                0 => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
    }
}
