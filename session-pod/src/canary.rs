//! `wa-session canary`: opens WhatsApp Web (the configured URL) in Chromium exactly as the agent
//! would, links nothing, and reports which of the page driver's assumptions hold — so a change
//! on WhatsApp's side is seen before sessions break, and a replacement driver script
//! (`WA_DRIVER_DIR`) can be tried against the live page first. docs/session-agent.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::browser::BrowserSession;
use crate::config::Config;
use crate::driver::{Driver, PageState, Snapshot};
use crate::error::{Error, Result};

/// Checks WhatsApp Web against the page driver's assumptions without linking anything. The
/// browser is configured like the agent's (`WA_*` environment: user agent, proxy, heap, ...);
/// a throw-away profile is used. Exit status: 0 all hold, 1 some do not, 2 the check could not run.
#[derive(Parser, Debug, Clone)]
#[command(name = "wa-session canary", version)]
pub struct CanaryArgs {
    /// WhatsApp Web URL.
    #[arg(long, env = "WA_URL", default_value = "https://web.whatsapp.com/")]
    pub url: String,

    /// Page-driver script overrides to try (`<name>.js`).
    #[arg(long, env = "WA_DRIVER_DIR")]
    pub driver_dir: Option<PathBuf>,

    /// How long the page may take to boot and show a QR.
    #[arg(long, env = "WA_CANARY_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One assumption and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    /// `window.Debug.VERSION` of the page, when it booted.
    pub version: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "wa-session canary: {} (WhatsApp Web {})\n",
            self.url,
            self.version.as_deref().unwrap_or("?")
        );
        for c in &self.checks {
            out.push_str(&format!(
                "{:<5} {:<30} {}\n",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        out.push_str(&if failed == 0 {
            format!("all {} assumptions hold\n", self.checks.len())
        } else {
            format!(
                "{failed} of {} assumptions do not hold\n",
                self.checks.len()
            )
        });
        out
    }
}

/// What `canary.js` returns.
#[derive(Debug, Deserialize)]
struct ScriptReport {
    version: Option<String>,
    checks: Vec<Check>,
}

/// Runs the canary: launches Chromium on a fresh profile, waits for the page to boot and offer a
/// QR (read through `snapshot.js`, as the agent reads it), then runs `canary.js`.
pub async fn run(args: &CanaryArgs) -> Result<Report> {
    let driver = Driver::load(args.driver_dir.as_deref())?;
    // The agent's own browser settings (flags, user agent, proxy, heap) from the environment;
    // session name and namespace are not used by the browser.
    let cfg = Config::try_parse_from([
        "wa-session",
        "--session-name",
        "canary",
        "--session-namespace",
        "canary",
        "--url",
        &args.url,
    ])
    .map_err(|e| Error::Launch(format!("browser settings: {e}")))?;
    let profile = std::env::temp_dir().join(format!(
        "wa-canary-{}-{}",
        std::process::id(),
        unique_suffix()
    ));
    std::fs::create_dir_all(&profile).map_err(|source| Error::Profile {
        path: profile.clone(),
        source,
    })?;
    let result = check_page(&cfg, &driver, &profile, args.timeout).await;
    // A throw-away profile: nothing was linked, nothing is worth keeping.
    let _ = std::fs::remove_dir_all(&profile);
    result
}

/// Nanoseconds since the epoch: with the pid, a profile name no other run uses.
fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn check_page(
    cfg: &Config,
    driver: &Driver,
    profile: &std::path::Path,
    timeout: Duration,
) -> Result<Report> {
    let browser = BrowserSession::launch(cfg, profile).await?;
    let report = async {
        browser.open(&cfg.url).await?;
        let deadline = Instant::now() + timeout;
        let mut checks = Vec::new();
        let mut last = Snapshot::default();
        let mut script_error: Option<String>;
        // The driver's snapshot, until the page has booted and offers a QR (or the time is up).
        loop {
            match browser.run(&driver.snapshot, &[]).await {
                Ok(v) => {
                    script_error = None;
                    last = serde_json::from_value::<Snapshot>(v).unwrap_or_default();
                }
                // Errors are expected while the page loads; the last one is reported if it stays.
                Err(e) => script_error = Some(e.to_string()),
            }
            let settled = last.loaded
                && matches!(last.page_state(), PageState::Unpaired)
                && last.qr.is_some();
            if settled || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        checks.push(Check {
            name: "snapshot: booted".into(),
            ok: last.loaded,
            detail: match (&script_error, last.loaded) {
                (_, true) => "the driver sees the app's modules".into(),
                (Some(e), false) => e.clone(),
                (None, false) => format!("not booted within {timeout:?}"),
            },
        });
        let state = last.state.clone().unwrap_or_default();
        checks.push(Check {
            name: "snapshot: state".into(),
            ok: matches!(
                last.page_state(),
                PageState::Unpaired | PageState::UnpairedIdle
            ),
            detail: if state.is_empty() {
                "no state read".into()
            } else {
                format!("{state} (a fresh profile must need a login)")
            },
        });
        let qr_parts = last
            .qr
            .as_deref()
            .map(|q| q.split(',').filter(|p| !p.is_empty()).count())
            .unwrap_or(0);
        checks.push(Check {
            name: "snapshot: qr".into(),
            ok: qr_parts == 5,
            detail: match qr_parts {
                5 => "ref,noiseKey,identityKey,advSecret,platform".into(),
                0 => "no QR read".into(),
                n => format!("{n} of 5 non-empty parts"),
            },
        });
        let (version, more) = match browser.run(&driver.canary, &[]).await {
            Ok(v) => match serde_json::from_value::<ScriptReport>(v) {
                Ok(r) => (r.version, r.checks),
                Err(e) => (
                    None,
                    vec![Check {
                        name: "canary.js".into(),
                        ok: false,
                        detail: format!("unexpected result: {e}"),
                    }],
                ),
            },
            Err(e) => (
                None,
                vec![Check {
                    name: "canary.js".into(),
                    ok: false,
                    detail: e.to_string(),
                }],
            ),
        };
        checks.extend(more);
        Ok(Report {
            url: cfg.url.clone(),
            version,
            checks,
        })
    }
    .await;
    browser.close(Duration::from_secs(10)).await;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_says_which_assumptions_fail() {
        let r = Report {
            url: "https://web.whatsapp.com/".into(),
            version: Some("2.3000.1".into()),
            checks: vec![
                Check {
                    name: "socket state".into(),
                    ok: true,
                    detail: "UNPAIRED".into(),
                },
                Check {
                    name: "pairing code".into(),
                    ok: false,
                    detail: "Requiring unknown module \"X\"".into(),
                },
            ],
        };
        assert!(!r.ok());
        let text = r.text();
        assert!(text.contains("FAIL  pairing code"), "{text}");
        assert!(text.ends_with("1 of 2 assumptions do not hold\n"), "{text}");
    }
}
