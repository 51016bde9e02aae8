//! `--pod-egress`: NAT for traffic from the pod network to the outside world, so sessions on a
//! user's machine can reach the real WhatsApp Web. Tests never use it (docs/design.md §7): without
//! it pods reach the host's bridge address and nothing beyond.

use std::process::Command;

use crate::state::PodCidr;

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("--pod-egress needs iptables (apt-get install -y iptables): {0}")]
    Iptables(std::io::Error),
    #[error("`{0}` failed: {1}")]
    Failed(String, String),
    #[error("enabling IPv4 forwarding: {0}")]
    Forwarding(std::io::Error),
}

fn rule(cidr: &PodCidr, op: &str) -> Vec<String> {
    let c = cidr.to_string();
    [
        "-t",
        "nat",
        op,
        "POSTROUTING",
        "-s",
        &c,
        "!",
        "-d",
        &c,
        "-j",
        "MASQUERADE",
        "-m",
        "comment",
        "--comment",
        "devcluster",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn iptables(args: &[String]) -> Result<(), EgressError> {
    let out = Command::new("iptables")
        .args(args)
        .output()
        .map_err(EgressError::Iptables)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EgressError::Failed(
            format!("iptables {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().into(),
        ))
    }
}

pub fn enable(cidr: &PodCidr) -> Result<(), EgressError> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(EgressError::Forwarding)?;
    // -C first: `up` after a crash must not stack duplicate rules
    if iptables(&rule(cidr, "-C")).is_err() {
        iptables(&rule(cidr, "-A"))?;
    }
    Ok(())
}

pub fn disable(cidr: &PodCidr) {
    while iptables(&rule(cidr, "-D")).is_ok() {}
}
