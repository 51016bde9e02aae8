//! Reading a QR back from what the plugin printed: the half-block characters (ANSI colours:
//! tests/render.rs) turned into modules, the modules into a picture, the picture through a real
//! QR decoder (rqrr), as a phone's camera would see the terminal.

/// Dark modules, row by row, from plain half-block lines (`invert: false` = blocks are light).
pub fn modules_from_plain(lines: &[String], invert: bool) -> Vec<Vec<bool>> {
    let mut rows = Vec::new();
    for line in lines {
        let (mut top, mut bottom) = (Vec::new(), Vec::new());
        for c in line.chars() {
            let (upper, lower) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            // a drawn half is light unless inverted
            top.push(upper == invert);
            bottom.push(lower == invert);
        }
        rows.push(top);
        rows.push(bottom);
    }
    rows
}

/// The text of the QR in `modules`, through rqrr: each module 4×4 pixels, with a wide light
/// margin of its own so only the drawn quiet zone is tested.
pub fn decode(modules: &[Vec<bool>]) -> Option<String> {
    const SCALE: usize = 4;
    const MARGIN: usize = 16;
    let h = modules.len();
    let w = modules.iter().map(Vec::len).max()?;
    let (pw, ph) = (w * SCALE + 2 * MARGIN, h * SCALE + 2 * MARGIN);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(pw, ph, |x, y| {
        let (Some(mx), Some(my)) = (x.checked_sub(MARGIN), y.checked_sub(MARGIN)) else {
            return 255;
        };
        let dark = modules
            .get(my / SCALE)
            .and_then(|r| r.get(mx / SCALE))
            .copied()
            .unwrap_or(false);
        if dark { 0 } else { 255 }
    });
    let grids = img.detect_grids();
    grids.first()?.decode().ok().map(|(_, text)| text)
}

/// The QR pictures in plain output: runs of at least 10 lines made only of half blocks and
/// spaces (the frames' text lines have letters).
pub fn plain_frames(output: &str) -> Vec<Vec<String>> {
    let is_qr_line =
        |l: &str| l.chars().count() >= 20 && l.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' '));
    let mut frames = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in output.lines() {
        if is_qr_line(line) {
            current.push(line.to_string());
        } else if !current.is_empty() {
            frames.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        frames.push(current);
    }
    frames.retain(|f| f.len() >= 10);
    frames
}
