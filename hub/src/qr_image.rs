//! QR strings rendered to PNG data URLs once per string (N subscribers of one session, or a
//! subscriber reconnecting, never cause a second render).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use qrcode::{Color, QrCode};

/// Rendered QRs kept; a QR lives ~20-60 s, so this holds the current QR of many sessions.
const CACHE_MAX: usize = 4096;

/// The smallest side of the PNG, in pixels: whole pixels per module, at least this wide.
const MIN_SIDE: u32 = 264;

/// Light modules around the code, as the QR standard asks for readers to find it.
const QUIET_ZONE: u32 = 4;

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
    let (side, pixels) = raster(code.width() as u32, &code.to_colors());
    let mut png = Vec::with_capacity(4096);
    let mut encoder = png::Encoder::new(&mut png, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| {
            w.write_image_data(&pixels)?;
            w.finish()
        })
        .map_err(|e| QrError::Png(e.to_string()))?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

/// The code's modules (`width` per row) as 8-bit grey pixels, black on white, with the quiet
/// zone and the same whole number of pixels per module both ways: (side, pixels row by row).
fn raster(width: u32, modules: &[Color]) -> (u32, Vec<u8>) {
    let total = width + 2 * QUIET_ZONE;
    let scale = MIN_SIDE.div_ceil(total);
    let side = total * scale;
    let mut pixels = vec![255u8; (side * side) as usize];
    for (i, color) in modules.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i as u32 % width + QUIET_ZONE, i as u32 / width + QUIET_ZONE);
        for y in my * scale..(my + 1) * scale {
            let row = (y * side) as usize;
            pixels[row + (mx * scale) as usize..row + ((mx + 1) * scale) as usize].fill(0);
        }
    }
    (side, pixels)
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

    #[test]
    fn the_png_reads_back_as_the_qr_string() {
        let qr = "2@Zm9vYmFy,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,BBBBBBBBBBBBBBBBBBBBBB==,CCCCCCCCCC==";
        let url = render(qr).unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(&url["data:image/png;base64,".len()..])
            .unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut px = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut px).unwrap();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert!(info.width >= MIN_SIDE && info.width == info.height);
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| px[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        assert_eq!(grids[0].decode().unwrap().1, qr);
    }

    #[test]
    fn modules_become_square_blocks_inside_a_quiet_zone() {
        // 2x2 modules: dark, light / light, dark.
        let (side, px) = raster(2, &[Color::Dark, Color::Light, Color::Light, Color::Dark]);
        let total = 2 + 2 * QUIET_ZONE;
        let scale = MIN_SIDE.div_ceil(total);
        assert_eq!(side, total * scale);
        assert!(side >= MIN_SIDE);
        let at = |x: u32, y: u32| px[(y * side + x) as usize];
        let q = QUIET_ZONE * scale;
        assert_eq!(at(0, 0), 255, "quiet zone");
        assert_eq!(at(q, q), 0, "first module, first pixel");
        assert_eq!(
            at(q + scale - 1, q + scale - 1),
            0,
            "first module, last pixel"
        );
        assert_eq!(at(q + scale, q), 255, "second module");
        assert_eq!(at(q + scale, q + scale), 0, "fourth module");
        assert_eq!(at(q + 2 * scale, q + 2 * scale), 255, "after the code");
    }
}
