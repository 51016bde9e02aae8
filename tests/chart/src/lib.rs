//! Support for the chart tests: finding helm (built by `make control-plane` into the cache),
//! rendering the chart and reading the rendered objects.
//!
//! The tests skip (with a printed reason) only when helm itself is missing — `make test`
//! always builds it — so a broken chart can never pass by being skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod cluster;
pub mod linters;
pub mod monitoring;
pub mod probes;
pub use cluster::*;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} {args} failed ({status}):\n{stderr}")]
    Failed {
        program: String,
        args: String,
        status: String,
        stderr: String,
    },
    #[error("rendered chart is not YAML: {0}")]
    Yaml(String),
    #[error("hub login as {username} at {hub}: {reason}")]
    Login {
        hub: String,
        username: String,
        reason: String,
    },
}

/// The repository root (this crate lives in tests/chart).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/whatsapp-operator")
}

/// A value of `tests/devcluster/control-plane/versions.env`.
pub fn pinned_version(key: &str) -> Option<String> {
    let text =
        std::fs::read_to_string(repo_root().join("tests/devcluster/control-plane/versions.env"))
            .ok()?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

/// The Kubernetes version the chart is rendered for: the devcluster's (helm's own default,
/// when built without its version ldflags, is an old 1.20 that the chart's kubeVersion refuses).
pub fn kube_version() -> String {
    pinned_version("K8S_VERSION")
        .unwrap_or_else(|| "v1.36.3".into())
        .trim_start_matches('v')
        .to_string()
}

/// `$HELM`, else the cached build of `tests/devcluster/control-plane/build.sh helm`.
pub fn helm() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HELM") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("WA_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/whatsapp-operator"))
        })?;
    let p = cache
        .join(format!("helm-{}", pinned_version("HELM_VERSION")?))
        .join("helm");
    p.is_file().then_some(p)
}

/// A Go tool built by `tests/devcluster/control-plane/build.sh NAME` into the cache:
/// `$WA_CACHE_DIR/NAME-<version of VERSION_KEY>/BINARY`.
pub fn cached_tool(name: &str, version_key: &str, binary: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("WA_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/whatsapp-operator"))
        })?;
    let p = cache
        .join(format!("{name}-{}", pinned_version(version_key)?))
        .join(binary);
    p.is_file().then_some(p)
}

/// A cached tool, or a printed reason to skip the calling test. `make test` builds them all
/// (`build.sh chart-tools`), so there a missing tool is a build failure, not a skip.
pub fn tool_or_skip(test: &str, name: &str, version_key: &str, binary: &str) -> Option<PathBuf> {
    let t = cached_tool(name, version_key, binary);
    if t.is_none() && std::env::var_os("WA_REQUIRE_CHART_TOOLS").is_some() {
        panic!(
            "{test}: {binary} not found although WA_REQUIRE_CHART_TOOLS is set (build.sh {name})"
        );
    }
    if t.is_none() {
        eprintln!(
            "SKIP {test}: {binary} not found (run `tests/devcluster/control-plane/build.sh {name}`)"
        );
    }
    t
}

/// helm, or a printed reason to skip the calling test.
pub fn helm_or_skip(test: &str) -> Option<PathBuf> {
    let h = helm();
    if h.is_none() {
        eprintln!(
            "SKIP {test}: helm not found (run `tests/devcluster/control-plane/build.sh helm` or set HELM)"
        );
    }
    h
}

/// Runs a program, returning its output whether or not it succeeded.
pub fn run(program: &Path, args: &[String], envs: &[(&str, &Path)]) -> Result<Output, ChartError> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().map_err(|source| ChartError::Spawn {
        program: program.display().to_string(),
        source,
    })
}

/// Runs a program and fails unless it succeeds; returns stdout.
pub fn run_ok(
    program: &Path,
    args: &[String],
    envs: &[(&str, &Path)],
) -> Result<String, ChartError> {
    let out = run(program, args, envs)?;
    if !out.status.success() {
        return Err(ChartError::Failed {
            program: program.display().to_string(),
            args: args.join(" "),
            status: out.status.to_string(),
            stderr: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Arguments of `helm template` for release `wa` in `namespace` with `--set` values.
pub fn template_args(namespace: &str, sets: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "template".into(),
        "wa".into(),
        chart_dir().display().to_string(),
        "--namespace".into(),
        namespace.into(),
        "--kube-version".into(),
        kube_version(),
    ];
    // `helm template` cannot read the cluster, so the chart refuses to invent a JWT key there
    // (hub-secret.yaml): give one unless the test sets hub.auth.jwtSecret itself.
    if !sets.iter().any(|s| s.starts_with("hub.auth.jwtSecret=")) {
        args.push("--set".into());
        args.push(format!("hub.auth.jwtSecret={TEST_JWT_SECRET}"));
    }
    for s in sets {
        args.push("--set".into());
        args.push((*s).into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The JWT key [`template_args`] renders with.
pub const TEST_JWT_SECRET: &str = "chart-test-key-0123456789abcdef0123456789";

/// Renders the chart and parses every object.
pub fn render(
    helm: &Path,
    namespace: &str,
    sets: &[&str],
    extra: &[&str],
) -> Result<Vec<Value>, ChartError> {
    let yaml = run_ok(helm, &template_args(namespace, sets, extra), &[])?;
    parse_objects(&yaml)
}

/// The objects of a multi-document YAML stream (empty documents dropped).
pub fn parse_objects(yaml: &str) -> Result<Vec<Value>, ChartError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| ChartError::Yaml(e.to_string()))?;
    Ok(docs.into_iter().filter(|d| d.is_object()).collect())
}

/// The objects of one kind.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The one object of a kind whose name ends with `suffix`.
pub fn find<'a>(objects: &'a [Value], kind: &str, suffix: &str) -> &'a Value {
    let found: Vec<_> = of_kind(objects, kind)
        .into_iter()
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind} named *{suffix}, got {}",
        found.len()
    );
    found[0]
}

/// An image the project's build pushed to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// `host:port/leadmaster/wa-hub`
    pub repository: String,
    pub tag: String,
    /// `sha256:...`
    pub digest: String,
}

/// The images of one `tests/images/build.sh` run.
#[derive(Debug, Clone)]
pub struct PushedImages {
    pub operator: PushedImage,
    pub hub: PushedImage,
    pub session: PushedImage,
}

/// Parses `image=HOST:PORT/REPO:TAG@sha256:...` lines (build.sh's stdout).
pub fn parse_pushed(stdout: &str) -> Vec<PushedImage> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("image="))
        .filter_map(|r| {
            let (name, digest) = r.split_once('@')?;
            // the tag follows the last ':' after the last '/' (the registry has a port)
            let slash = name.rfind('/')?;
            let colon = name[slash..].rfind(':')? + slash;
            Some(PushedImage {
                repository: name[..colon].into(),
                tag: name[colon + 1..].into(),
                digest: digest.into(),
            })
        })
        .collect()
}

/// Builds the project's three images from `images/*.Dockerfile` with buildah and pushes them
/// to `registry` under `tag` (`tests/images/build.sh`; the release binaries must be built).
pub fn build_and_push_images(registry: &str, tag: &str) -> Result<PushedImages, ChartError> {
    let script = repo_root().join("tests/images/build.sh");
    let args = vec![
        script.display().to_string(),
        "--registry".into(),
        registry.into(),
        "--tag".into(),
        tag.into(),
    ];
    let stdout = run_ok(Path::new("bash"), &args, &[])?;
    let pushed = parse_pushed(&stdout);
    let find = |name: &str| {
        pushed
            .iter()
            .find(|i| i.repository.ends_with(&format!("/leadmaster/{name}")))
            .cloned()
            .ok_or_else(|| ChartError::Failed {
                program: "tests/images/build.sh".into(),
                args: args.join(" "),
                status: "ok".into(),
                stderr: format!("no {name} in: {stdout}"),
            })
    };
    Ok(PushedImages {
        operator: find("wa-operator")?,
        hub: find("wa-hub")?,
        session: find("wa-session")?,
    })
}

/// Logs in at the hub (`POST {hub}/api/auth/login`, docs/design.md §4) and returns the JWT.
pub async fn hub_login(
    http: &reqwest::Client,
    hub: &str,
    username: &str,
    password: &str,
) -> Result<String, ChartError> {
    let fail = |reason: String| ChartError::Login {
        hub: hub.to_string(),
        username: username.to_string(),
        reason,
    };
    let response = http
        .post(format!("{}/api/auth/login", hub.trim_end_matches('/')))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(e.to_string()))?;
    let body: Value = response.json().await.map_err(|e| fail(e.to_string()))?;
    body["token"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| fail(format!("no token in {body}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_image_lines_split_registry_port_tag_and_digest() {
        let v = parse_pushed("noise\nimage=10.244.1.1:5000/leadmaster/wa-hub:0.1.0@sha256:ab\n");
        assert_eq!(
            v,
            [PushedImage {
                repository: "10.244.1.1:5000/leadmaster/wa-hub".into(),
                tag: "0.1.0".into(),
                digest: "sha256:ab".into()
            }]
        );
    }
}
