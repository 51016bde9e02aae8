//! The outside probe of issue 28, kept in the suite: schemathesis (property-based, from the
//! OpenAPI document the hub serves at `/api/openapi.json`) against a real hub on devcluster,
//! with a valid token, for a bounded number of examples per operation. It fails on any 5xx and
//! on any answer the document does not describe (status code, content type, headers, body
//! schema), on invalid input accepted, on an undocumented method answered other than 405 with
//! `Allow`, and on a secured operation answering without the token.
//!
//! schemathesis comes from PyPI, pinned, in a venv that `tests/scripts/install-deps.sh`
//! creates (`make test` runs it first); `WA_SCHEMATHESIS` names another `st` binary.

use std::path::PathBuf;

use crate::support::*;

/// The pinned version; install-deps.sh installs the same.
const VERSION: &str = "4.32.5";

/// Test cases per operation and phase: about 1,300 requests, under a minute on an idle
/// machine, a few on a loaded one.
const MAX_EXAMPLES: &str = "100";

fn schemathesis() -> PathBuf {
    let st = std::env::var_os("WA_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/whatsapp-operator/schemathesis/bin/st")
        });
    assert!(
        st.is_file(),
        "{} is missing: run tests/scripts/install-deps.sh (make test does) to install schemathesis {VERSION}",
        st.display()
    );
    st
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_nothing_the_document_does_not_describe() {
    let st = schemathesis();
    let version = std::process::Command::new(&st)
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(version.contains(VERSION), "{} is {version}", st.display());

    let e = env("hub-fuzz").await;
    e.claim("acme").await;
    // The name the document's examples use: the examples phase reaches a real session (200s
    // and their bodies checked), the generated names mostly reach 404s.
    e.session("acme-ventas", "acme").await;
    let hub = e.hub().await;
    let admin = token("fuzz", &[], "admin", 3600);
    let work = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(&st)
        .current_dir(work.path())
        .args([
            "run",
            &format!("{}/api/openapi.json", hub.url),
            "--header",
            &format!("Authorization: Bearer {admin}"),
            "--checks",
            "all",
            // Stateful checks need links between operations; the document has none.
            "--exclude-checks",
            "use_after_free,ensure_resource_availability",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            MAX_EXAMPLES,
            // One worker: with two, Debian's Python 3.11 failed inside hypothesis's `ast.parse`
            // ("AST constructor recursion depth mismatch", a CPython thread-safety bug).
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--no-color",
        ])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    // It ran the operations (a document it could not read would be a failure above too).
    assert!(
        text.contains("12 selected"),
        "not every operation was tested:\n{text}"
    );
    // The hub is still healthy after it.
    assert_eq!(get(&format!("{}/health", hub.url), None).await.0, 200);
}
