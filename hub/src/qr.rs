//! QR strings rendered to PNG data URLs once per string (N subscribers of one session, or a
//! subscriber reconnecting, never cause a second render).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use image::{ImageEncoder, Luma};
use qrcode::QrCode;

/// Rendered QRs kept; a QR lives ~20-60 s, so this holds the current QR of many sessions.
const CACHE_MAX: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("QR string cannot be encoded: {0}")]
    Encode(String),
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

#[derive(Default)]
pub struct QrRenderer {
    cache: Mutex<HashMap<String, Arc<str>>>,
    renders: std::sync::atomic::AtomicU64,
}

impl QrRenderer {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many renders happened (not cache hits).
    pub fn renders(&self) -> u64 {
        self.renders.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The `data:image/png;base64,...` URL of `qr`.
    pub fn data_url(&self, qr: &str) -> Result<Arc<str>, QrError> {
        if let Some(hit) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(qr) {
            return Ok(hit.clone());
        }
        let url: Arc<str> = render(qr)?.into();
        self.renders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            // Old QRs are useless (each expires within a minute): start over rather than track age.
            cache.clear();
        }
        cache.insert(qr.to_owned(), url.clone());
        Ok(url)
    }
}

fn render(qr: &str) -> Result<String, QrError> {
    let code = QrCode::new(qr.as_bytes()).map_err(|e| QrError::Encode(e.to_string()))?;
    let img = code
        .render::<Luma<u8>>()
        .min_dimensions(264, 264)
        .quiet_zone(true)
        .build();
    let mut png = Vec::with_capacity(4096);
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::L8,
        )
        .map_err(|e| QrError::Png(e.to_string()))?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_png_once_per_string() {
        let r = QrRenderer::new();
        let a = r.data_url("2@abc,def,ghi").unwrap();
        assert!(a.starts_with("data:image/png;base64,"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(&a["data:image/png;base64,".len()..])
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let b = r.data_url("2@abc,def,ghi").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(r.renders(), 1);
        r.data_url("other").unwrap();
        assert_eq!(r.renders(), 2);
    }
}
