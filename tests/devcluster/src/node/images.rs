//! The images file (DESIGN.md §7): which local program stands for which container image.
//!
//! ```yaml
//! images:
//!   ghcr.io/leadmaster/wa-session: {entrypoint: ["../target/release/wa-session"]}
//!   busybox: {entrypoint: []}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Deserialize;

use super::NodeError;

#[derive(Debug, Deserialize)]
struct ImagesFile {
    #[serde(default)]
    images: BTreeMap<String, ImageEntry>,
}

#[derive(Debug, Clone, Deserialize)]
struct ImageEntry {
    #[serde(default)]
    entrypoint: Vec<String>,
}

/// Image repository → entrypoint, as read from the images file.
type ImageMap = BTreeMap<String, Vec<String>>;

/// The image map, re-read whenever the file's modification time changes.
pub struct Images {
    path: PathBuf,
    cache: Mutex<Option<(SystemTime, ImageMap)>>,
}

/// The repository part of an image reference: tag and digest removed
/// (`ghcr.io/a/b:1.0@sha256:..` → `ghcr.io/a/b`; a registry port `host:5000/x` is kept).
pub fn repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    }
}

impl Images {
    pub fn new(path: PathBuf) -> Self {
        Images { path, cache: Mutex::new(None) }
    }

    fn load(&self) -> Result<ImageMap, NodeError> {
        let err = |message: String| NodeError::Images { path: self.path.clone(), message };
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).map_err(|e| err(e.to_string()))?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, map)) = cache.as_ref()
            && *at == modified
        {
            return Ok(map.clone());
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| err(e.to_string()))?;
        let file: ImagesFile = serde_saphyr::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = self.path.parent().unwrap_or(Path::new("."));
        let map: ImageMap = file
            .images
            .into_iter()
            .map(|(repo, entry)| {
                let mut argv = entry.entrypoint;
                // Only the program itself is a path relative to the file; arguments stay as given.
                if let Some(first) = argv.first_mut()
                    && first.contains('/')
                    && !first.starts_with('/')
                {
                    *first = base.join(&*first).to_string_lossy().into_owned();
                }
                (repository(&repo).to_string(), argv)
            })
            .collect();
        *cache = Some((modified, map.clone()));
        Ok(map)
    }

    /// The entrypoint for `image`; `Ok(None)` when the image is not in the file.
    pub fn entrypoint(&self, image: &str) -> Result<Option<Vec<String>>, NodeError> {
        Ok(self.load()?.get(repository(image)).cloned())
    }
}

/// The process of a container: `command + args` when `command` is set, else `entrypoint + args`.
pub fn argv(entrypoint: &[String], command: Option<&[String]>, args: Option<&[String]>) -> Vec<String> {
    let mut out: Vec<String> = match command {
        Some(c) if !c.is_empty() => c.to_vec(),
        _ => entrypoint.to_vec(),
    };
    out.extend(args.unwrap_or_default().iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_tag_and_digest() {
        assert_eq!(repository("ghcr.io/leadmaster/wa-session:0.1.0"), "ghcr.io/leadmaster/wa-session");
        assert_eq!(repository("busybox"), "busybox");
        assert_eq!(repository("busybox@sha256:abc"), "busybox");
        assert_eq!(repository("localhost:5000/x/y:1@sha256:abc"), "localhost:5000/x/y");
        assert_eq!(repository("localhost:5000/x/y"), "localhost:5000/x/y");
    }

    #[test]
    fn argv_prefers_command() {
        let ep = vec!["/bin/prog".to_string()];
        let args = vec!["--a".to_string()];
        let cmd = vec!["sh".to_string(), "-c".to_string()];
        assert_eq!(argv(&ep, None, Some(&args)), vec!["/bin/prog", "--a"]);
        assert_eq!(argv(&ep, Some(&cmd), Some(&args)), vec!["sh", "-c", "--a"]);
    }

    #[test]
    fn relative_paths_are_relative_to_the_file_and_changes_are_reread() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("images.yaml");
        std::fs::write(&file, "images:\n  ghcr.io/x/y: {entrypoint: [\"bin/y\", \"--flag\"]}\n  busybox: {entrypoint: []}\n").unwrap();
        let images = Images::new(file.clone());
        let ep = images.entrypoint("ghcr.io/x/y:v1").unwrap().unwrap();
        assert_eq!(ep, vec![dir.path().join("bin/y").to_string_lossy().into_owned(), "--flag".to_string()]);
        assert_eq!(images.entrypoint("busybox:1.36").unwrap(), Some(vec![]));
        assert_eq!(images.entrypoint("nginx").unwrap(), None);
        // A later edit (newer mtime) is picked up.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, "images:\n  nginx: {entrypoint: [\"/usr/sbin/nginx\"]}\n").unwrap();
        let t = SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(t).unwrap();
        assert_eq!(images.entrypoint("nginx").unwrap(), Some(vec!["/usr/sbin/nginx".to_string()]));
    }
}
