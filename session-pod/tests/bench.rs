//! Figures for bench/agent/run.sh (ignored in normal test runs):
//! start → first QR in the CR status (p50 of 10), start → connected when restoring a saved
//! login (p50 of 10), SIGTERM to the agent's process group (what a pod deletion sends) → the
//! agent has exited and → the next agent on the profile is connected (p50 of 10), and the memory (RSS, PSS, USS) of agent + Chromium while connected and idle;
//! hang recovery: a hung page → relaunch decided → connected again, now and with the rule before
//! the hang watchdog (`hang_recovery_figures`, p50 of 3).

mod support;

use std::time::{Duration, Instant};

use crds::SessionState;
use crds::testing::reset_status;
use devcluster_testing::agent::AgentOpts;
use devcluster_testing::chromium::{chromium_kind, pss_kb, rss_kb, uss_kb};
use support::*;

const T: Duration = Duration::from_secs(60);

/// The harness polls the page every 200 ms to keep tests short; the figures use the agent's
/// default (1 s) so that they describe a real session pod.
fn production_poll() -> Vec<(&'static str, String)> {
    vec![("WA_POLL_INTERVAL", "1s".into())]
}

/// Where a restore's time goes, from the agent's own log (`wa_session=debug`): each step's
/// first log line, in ms after the agent's process was started.
const STEPS: [(&str, &str); 8] = [
    ("agent_started", "wa-session starting"),
    ("chromium_spawned", "launching Chromium"),
    (
        "devtools_connected",
        "Chromium launched (DevTools connected)",
    ),
    ("tab_attached", "initial tab attached"),
    (
        "page_ready",
        "page ready (bindings, listeners, interception)",
    ),
    // Logged only with proxy credentials (Chromium started at about:blank, then navigated):
    // otherwise the page loads as Chromium's start page, overlapping the steps above.
    (
        "page_loaded",
        "WhatsApp Web loaded (Page.navigate answered)",
    ),
    (
        "app_booted",
        "WhatsApp Web booted (first snapshot with its modules)",
    ),
    ("connected_written", "status published"),
];

/// The agent with its debug log on, so that [`steps`] can read the restore's steps.
fn bench_env() -> Vec<(&'static str, String)> {
    let mut env = production_poll();
    env.push(("RUST_LOG", "info,wa_session=debug".into()));
    env
}

/// Each of [`STEPS`] found in `log` (JSON lines), in ms after `started` (wall clock); a step
/// not logged is left out. `connected_written` is the write of `connected`.
fn steps(log: &str, started: std::time::SystemTime) -> Vec<(&'static str, i64)> {
    let started = k8s_openapi::jiff::Timestamp::try_from(started).expect("timestamp");
    let mut found = Vec::new();
    for (step, message) in STEPS {
        let at = log.lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let fields = &v["fields"];
            if fields["message"] != message
                || (step == "connected_written" && fields["status"] != "connected")
            {
                return None;
            }
            v["timestamp"]
                .as_str()?
                .parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
        });
        if let Some(at) = at {
            found.push((step, at.duration_since(started).as_millis() as i64));
        }
    }
    found
}

/// The `p`th percentile (nearest rank).
fn pct(v: &[Duration], p: usize) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let rank = (p * v.len()).div_ceil(100).max(1);
    v[rank - 1]
}

async fn poll_until(
    api: &kube::Api<crds::WhatsAppSession>,
    pred: impl Fn(&crds::WhatsAppSessionStatus) -> bool,
) {
    let deadline = Instant::now() + T;
    loop {
        if let Ok(cr) = api.get("s1").await
            && cr.status.as_ref().is_some_and(&pred)
        {
            return;
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How many runs a figure takes: `var` when set to a number, else `default`.
fn runs_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
#[ignore = "benchmark: run bench/agent/run.sh"]
async fn agent_figures() {
    let c = cluster().await;
    let runs = runs_from_env("BENCH_RUNS", 10);
    let fake = fake(Duration::from_secs(60), Duration::from_secs(20), 6).await;
    let ns = c.namespace("agent-bench").await;

    // 1. Start → first QR, each run with an empty profile and a new CR.
    let mut first_qr = Vec::new();
    for i in 0..runs {
        let name = format!("q{i}");
        let api = create_session(c, &ns, &name).await;
        let started = Instant::now();
        let (_tmp, agent) =
            wa_session().start_on_empty_profile(c, &ns, &name, &fake.url(), production_poll());
        let deadline = Instant::now() + T;
        loop {
            if api
                .get(&name)
                .await
                .ok()
                .and_then(|cr| cr.status)
                .is_some_and(|s| s.qr.is_some())
            {
                break;
            }
            assert!(Instant::now() < deadline, "no QR: {}", agent.log_text());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        first_qr.push(started.elapsed());
        agent.kill9().await;
    }

    // 2. Link once, then start → connected from the saved profile.
    let api = create_session(c, &ns, "s1").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let fake_url = fake.url();
    let opts = || AgentOpts {
        ns: &ns,
        name: "s1",
        url: &fake_url,
        data_dir: &data,
        kubeconfig: c.kubeconfig(),
        extra_env: bench_env(),
    };
    let mut agent = wa_session().start_pod(opts());
    poll_until(&api, |s| s.qr.is_some()).await;
    let qr = api
        .get("s1")
        .await
        .expect("get")
        .status
        .and_then(|s| s.qr)
        .expect("qr");
    scan(&fake.url(), &qr).await;
    poll_until(&api, |s| s.status == Some(SessionState::Connected)).await;
    let mut restore = Vec::new();
    let (mut stop, mut handover) = (Vec::new(), Vec::new());
    let mut breakdown: Vec<Vec<(&str, i64)>> = Vec::new();
    for _ in 0..runs {
        let sigterm = Instant::now();
        agent.terminate_group(Duration::from_secs(25)).await;
        stop.push(sigterm.elapsed());
        // Mark the CR so that "connected" below is the new agent's doing.
        reset_status(&api, "s1").await;
        let started = Instant::now();
        let wall = std::time::SystemTime::now();
        agent = wa_session().start_pod(opts());
        poll_until(&api, |s| s.status == Some(SessionState::Connected)).await;
        restore.push(started.elapsed());
        let mut run = steps(&agent.log_text(), wall);
        run.push(("seen_in_cr", started.elapsed().as_millis() as i64));
        breakdown.push(run);
        handover.push(sigterm.elapsed());
    }

    // 3. Memory of agent + Chromium while connected and idle (10 s after a settle period):
    // peak RSS (shared pages counted once per process, as the 864 MB figure of the first
    // report), and PSS and USS at the end (see devcluster_testing::chromium::pss_kb / uss_kb).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agent_pid = agent.child.id().expect("running");
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let mut pids = agent.chromium_pids();
        pids.push(agent_pid);
        peak = peak.max(rss_kb(&pids));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut pids = agent.chromium_pids();
    pids.push(agent_pid);
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "BENCH start_to_first_qr_p50_ms={} p90_ms={} (runs={runs}, all={:?})",
        pct(&first_qr, 50).as_millis(),
        pct(&first_qr, 90).as_millis(),
        first_qr.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    println!(
        "BENCH start_to_connected_restore_p50_ms={} p90_ms={} (runs={runs}, all={:?})",
        pct(&restore, 50).as_millis(),
        pct(&restore, 90).as_millis(),
        restore.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    // The median of each step over the runs (ms after the agent's process was started).
    let mut names: Vec<&str> = STEPS.iter().map(|(step, _)| *step).collect();
    names.push("seen_in_cr");
    let medians: Vec<String> = names
        .iter()
        .filter_map(|name| {
            let mut at: Vec<i64> = breakdown
                .iter()
                .filter_map(|run| run.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms))
                .collect();
            at.sort();
            (!at.is_empty()).then(|| format!("{name}={}", at[(at.len() - 1) / 2]))
        })
        .collect();
    println!(
        "BENCH restore_steps_p50_ms {} (ms after the agent's start; runs={runs})",
        medians.join(" ")
    );
    println!(
        "BENCH sigterm_to_agent_exit_p50_ms={} p90_ms={} (runs={runs}, all={:?})",
        pct(&stop, 50).as_millis(),
        pct(&stop, 90).as_millis(),
        stop.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    println!(
        "BENCH sigterm_to_connected_next_agent_p50_ms={} p90_ms={} (runs={runs}, all={:?})",
        pct(&handover, 50).as_millis(),
        pct(&handover, 90).as_millis(),
        handover.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    println!(
        "BENCH connected_idle_mb peak_rss={:.1} rss={:.1} pss={:.1} uss={:.1} processes={} (agent alone rss={:.1} pss={:.1})",
        mb(peak),
        mb(rss_kb(&pids)),
        mb(pss_kb(&pids)),
        mb(uss_kb(&pids)),
        pids.len(),
        mb(rss_kb(&[agent_pid])),
        mb(pss_kb(&[agent_pid])),
    );
    for pid in &pids {
        let kind = if *pid == agent_pid {
            "wa-session".to_string()
        } else {
            chromium_kind(*pid)
        };
        println!(
            "BENCH   pid={pid} {kind}: rss={:.1} pss={:.1} uss={:.1}",
            mb(rss_kb(&[*pid])),
            mb(pss_kb(&[*pid])),
            mb(uss_kb(&[*pid]))
        );
    }
    agent.terminate_group(Duration::from_secs(25)).await;
}

/// Hang recovery (issue 12): a linked session's page hangs (`/_fake/hang`, its main thread
/// spins for good) → the relaunch is decided (`TIMEOUT` in the CR) → `connected` again from
/// the profile. With the agent's defaults (1 s poll, 10 s CDP timeout, the hang watchdog's
/// 2 s answer deadline and 6 s silence limit for a settled page) and with the rule before the
/// watchdog, reproduced by it: snapshots answering within 10 s, hung after 30 s of silence
/// (three unanswered 10 s snapshots). `HANG_RUNS` runs each (default 3).
#[tokio::test]
#[ignore = "benchmark: run bench/agent/run.sh"]
async fn hang_recovery_figures() {
    let c = cluster().await;
    let runs = runs_from_env("HANG_RUNS", 3);
    let ns = c.namespace("agent-hang-bench").await;
    let defaults = vec![("WA_CDP_TIMEOUT", "10s".to_string())];
    let before = vec![
        ("WA_CDP_TIMEOUT", "10s".to_string()),
        ("WA_PAGE_ANSWER_TIMEOUT", "10s".to_string()),
        ("WA_HANG_AFTER", "30s".to_string()),
    ];
    for (label, env) in [("now", defaults), ("before", before)] {
        let (mut detected, mut recovered) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let fake = fake(Duration::from_secs(60), Duration::from_secs(20), 6).await;
            let name = format!("h{label}{i}");
            let api = create_session(c, &ns, &name).await;
            let mut extra_env = production_poll();
            extra_env.extend(env.iter().cloned());
            let (_tmp, agent) =
                wa_session().start_on_empty_profile(c, &ns, &name, &fake.url(), extra_env);
            let status = |api: kube::Api<crds::WhatsAppSession>, name: String| async move {
                api.get(&name).await.ok().and_then(|cr| cr.status)
            };
            let wait = |what: &'static str, pred: fn(&crds::WhatsAppSessionStatus) -> bool| {
                let (api, name) = (api.clone(), name.clone());
                async move {
                    let deadline = Instant::now() + 2 * T;
                    loop {
                        if let Some(s) = status(api.clone(), name.clone()).await
                            && pred(&s)
                        {
                            return s;
                        }
                        assert!(Instant::now() < deadline, "timed out waiting for {what}");
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
            };
            let s = wait("QR", |s| s.qr.is_some()).await;
            scan(&fake.url(), s.qr.as_deref().expect("qr")).await;
            wait("connected", |s| s.status == Some(SessionState::Connected)).await;
            // Settled: the page is linked and synced (the fake syncs within ~50 ms).
            tokio::time::sleep(Duration::from_secs(2)).await;
            let hung = Instant::now();
            fake_post(&fake.url(), "/_fake/hang", serde_json::json!({})).await;
            wait("TIMEOUT", |s| {
                s.last_error.as_ref().map(|e| e.code.as_str()) == Some("TIMEOUT")
            })
            .await;
            detected.push(hung.elapsed());
            wait("connected again", |s| {
                s.status == Some(SessionState::Connected) && s.last_error.is_none()
            })
            .await;
            recovered.push(hung.elapsed());
            agent.kill9().await;
        }
        detected.sort();
        recovered.sort();
        let ms = |v: &[Duration]| v.iter().map(|d| d.as_millis()).collect::<Vec<_>>();
        println!(
            "BENCH hang_to_relaunch_{label}_p50_ms={} (runs={runs}, all={:?})",
            pct(&detected, 50).as_millis(),
            ms(&detected)
        );
        println!(
            "BENCH hang_to_connected_{label}_p50_ms={} (runs={runs}, all={:?})",
            pct(&recovered, 50).as_millis(),
            ms(&recovered)
        );
    }
}
