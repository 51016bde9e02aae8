//! The QR the plugin draws decodes, with a real QR decoder, to the payload it was given: in
//! every style (ANSI colours on a terminal; plain half blocks, normal and inverted).

#[path = "support/terminal_qr.rs"]
mod terminal_qr;

use kubectl_whatsapp::render::{Style, qr_lines};
use terminal_qr::*;

/// Shaped like a WhatsApp Web QR (docs/fake-whatsapp.md #6): ref, two keys, secret, platform.
const PAYLOAD: &str = "2@Xx1Yy2Zz3Ww4Vv5Uu6Tt7Ss8Rr9Qq0Pp1Oo2Nn3Mm4Ll5Kk6Jj7Ii8Hh9Gg0Ff1Ee2Dd3Cc4Bb5Aa6,\
    Q2xhdmUgZXN0w6F0aWNhIGRlIHJ1aWRvIGRlIHBydWViYQ==,SWRlbnRpZGFkIGRlIHBydWViYSBwYXJhIGVsIFFS,\
    c2VjcmV0byBBRFYgZGUgcHJ1ZWJh,CHROME";

#[test]
fn plain_half_blocks_decode_to_the_payload() {
    let lines = qr_lines(PAYLOAD, Style::Plain { invert: false }).unwrap();
    assert_eq!(
        decode(&modules_from_plain(&lines, false)).as_deref(),
        Some(PAYLOAD)
    );
    // and it fits an 80-column terminal
    assert!(
        lines.iter().all(|l| l.chars().count() <= 80),
        "{} columns",
        lines[0].chars().count()
    );
}

#[test]
fn inverted_half_blocks_decode_to_the_payload() {
    let lines = qr_lines(PAYLOAD, Style::Plain { invert: true }).unwrap();
    assert_eq!(
        decode(&modules_from_plain(&lines, true)).as_deref(),
        Some(PAYLOAD)
    );
    // read with the wrong convention it is a negative, which must not pass for the payload
    assert_ne!(
        decode(&modules_from_plain(&lines, false)).as_deref(),
        Some(PAYLOAD)
    );
}

#[test]
fn ansi_coloured_half_blocks_decode_to_the_payload() {
    let lines = qr_lines(PAYLOAD, Style::Ansi).unwrap();
    assert_eq!(decode(&modules_from_ansi(&lines)).as_deref(), Some(PAYLOAD));
}

#[test]
fn frames_are_found_in_mixed_output() {
    let lines = qr_lines("hola", Style::Plain { invert: false }).unwrap();
    let text = format!(
        "Escanee…\nSesión ns/v · QR 1\n{}\n\nSesión ns/v · QR 2\n{}\n",
        lines.join("\n"),
        lines.join("\n")
    );
    let frames = plain_frames(&text);
    assert_eq!(frames.len(), 2);
    assert_eq!(
        decode(&modules_from_plain(&frames[1], false)).as_deref(),
        Some("hola")
    );
}

/// Dark modules from ANSI lines: each `▀` is foreground (upper) over background (lower).
pub fn modules_from_ansi(lines: &[String]) -> Vec<Vec<bool>> {
    let mut rows = Vec::new();
    for line in lines {
        let (mut top, mut bottom) = (Vec::new(), Vec::new());
        let (mut fg_dark, mut bg_dark) = (false, false);
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                let mut code = String::new();
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                    code.push(d);
                }
                for part in code.trim_start_matches('[').split(';') {
                    match part {
                        "30" => fg_dark = true,
                        "97" => fg_dark = false,
                        "40" => bg_dark = true,
                        "107" => bg_dark = false,
                        _ => {}
                    }
                }
            } else if c == '▀' {
                top.push(fg_dark);
                bottom.push(bg_dark);
            }
        }
        rows.push(top);
        rows.push(bottom);
    }
    rows
}
