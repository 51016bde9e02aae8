//! The krew manifest (plugin.yaml) installs this crate's binary as `kubectl whatsapp`, at this
//! crate's version.

use serde_json::Value;

#[test]
fn the_krew_manifest_matches_the_crate() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plugin.yaml")).unwrap();
    let m: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        m["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(m["kind"], "Plugin");
    // krew installs plugin NAME as `kubectl NAME`
    assert_eq!(m["metadata"]["name"], "whatsapp");
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(m["spec"]["version"], version.as_str());
    let platforms = m["spec"]["platforms"].as_array().unwrap();
    assert!(!platforms.is_empty());
    for p in platforms {
        assert_eq!(p["bin"], "kubectl-whatsapp", "{p}");
        let uri = p["uri"].as_str().unwrap();
        assert!(uri.contains(&version), "{uri}");
        assert_eq!(p["sha256"].as_str().map(str::len), Some(64), "{p}");
        assert!(p["selector"]["matchLabels"]["os"].is_string(), "{p}");
    }
}
