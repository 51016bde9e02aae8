//! The QR drawn with Unicode half blocks: one character holds two modules, one above the
//! other, so a WhatsApp QR (~61 modules with its quiet zone) fits an 80-column terminal.
//!
//! On a terminal the plugin paints both halves with explicit colours (`▀`, foreground = upper
//! module, background = lower), black on white whatever the terminal's theme, as phones need.
//! Without colours (output not a terminal, `NO_COLOR`) the characters are the picture: by
//! default a block is a *light* module, right for the usual dark-background terminal (as
//! `qrencode -t UTF8` does); `--invert` draws dark modules for light backgrounds.

use qrcode::{Color, QrCode};

use crate::error::Error;

/// Light modules around the code; scanners need a margin of light, and 2 is what terminal QR
/// tools settle on to save space.
pub const QUIET_ZONE: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// ANSI colours, black on white.
    Ansi,
    /// Characters only; `invert: false` draws light modules as blocks.
    Plain { invert: bool },
}

/// The QR of `payload` as terminal lines.
pub fn qr_lines(payload: &str, style: Style) -> Result<Vec<String>, Error> {
    let code = QrCode::new(payload.as_bytes()).map_err(|e| Error::Qr(e.to_string()))?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET_ZONE;
    // dark at (x, y) of the code with its quiet zone
    let dark = |x: usize, y: usize| {
        let (Some(cx), Some(cy)) = (x.checked_sub(QUIET_ZONE), y.checked_sub(QUIET_ZONE)) else {
            return false;
        };
        cx < width && cy < width && colors[cy * width + cx] == Color::Dark
    };
    Ok((0..size)
        .step_by(2)
        .map(|y| {
            let cells = (0..size).map(|x| (dark(x, y), dark(x, y + 1)));
            match style {
                Style::Ansi => ansi_line(cells),
                Style::Plain { invert } => cells
                    .map(|(t, b)| half_block(t == invert, b == invert))
                    .collect(),
            }
        })
        .collect())
}

/// The character showing the upper and/or lower half.
fn half_block(upper: bool, lower: bool) -> char {
    match (upper, lower) {
        (true, true) => '█',
        (true, false) => '▀',
        (false, true) => '▄',
        (false, false) => ' ',
    }
}

/// `▀` per cell, its foreground the upper module and its background the lower one; a colour is
/// sent only when it changes, and the line ends by resetting them.
fn ansi_line(cells: impl Iterator<Item = (bool, bool)>) -> String {
    const FG_BLACK: &str = "30";
    const FG_WHITE: &str = "97";
    const BG_BLACK: &str = "40";
    const BG_WHITE: &str = "107";
    let mut line = String::new();
    let mut current = None;
    for (upper, lower) in cells {
        if current != Some((upper, lower)) {
            let fg = if upper { FG_BLACK } else { FG_WHITE };
            let bg = if lower { BG_BLACK } else { BG_WHITE };
            line.push_str(&format!("\x1b[{fg};{bg}m"));
            current = Some((upper, lower));
        }
        line.push('▀');
    }
    line.push_str("\x1b[0m");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_have_one_character_per_module_and_two_modules_per_line() {
        let lines = qr_lines("hola", Style::Plain { invert: false }).unwrap();
        let width = QrCode::new(b"hola").unwrap().width() + 2 * QUIET_ZONE;
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert_eq!(lines.len(), width.div_ceil(2));
        // the quiet zone is light: full blocks on the first line in the default style, and
        // blanks when inverted
        assert!(lines[0].chars().all(|c| c == '█'), "{}", lines[0]);
        let inverted = qr_lines("hola", Style::Plain { invert: true }).unwrap();
        assert!(inverted[0].chars().all(|c| c == ' '));
    }

    #[test]
    fn ansi_lines_end_with_a_reset() {
        let lines = qr_lines("hola", Style::Ansi).unwrap();
        assert!(
            lines
                .iter()
                .all(|l| l.ends_with("\x1b[0m") && l.starts_with("\x1b["))
        );
    }
}
