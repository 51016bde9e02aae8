//! `qr NAME`: the terminal way to link a phone. Asks for a QR when none is valid (as
//! `connect`), then draws each QR the agent publishes until the session is connected.

use std::io::Write;
use std::time::Duration;

use crds::{QrStatus, SessionState, WhatsAppSession};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::commands::write::{self, Asked};
use crate::commands::{Ctx, print};
use crate::error::Error;
use crate::follow::Follow;
use crate::lang::Lang;
use crate::render::{self, Style};
use crate::requests::{has_valid_qr, now_secs};
use crate::view;

/// What a version of the session means to `qr`.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Linked: print the phone and end.
    Connected {
        phone: Option<String>,
        push_name: Option<String>,
    },
    /// A valid QR to draw (drawn again only when it changes).
    Show(String),
    /// Pairing-code login (`spec.pairing`): the code to type on the phone.
    Pairing(String),
    /// The round asked for ended without a scan.
    Expired,
    /// Nothing to show yet (starting, connecting after the scan, a request not handled yet).
    Wait,
}

/// `requested`: the QR request in force when `qr` started (ours, or the pending one). An
/// `expired` from an earlier round does not count: the agent has not acted on it yet.
pub fn step(s: &WhatsAppSession, requested: Option<&Time>, now: &Time) -> Step {
    let Some(st) = s.status.as_ref() else {
        return Step::Wait;
    };
    if st.status == Some(SessionState::Connected) {
        return Step::Connected {
            phone: st.phone_number.clone(),
            push_name: st.push_name.clone(),
        };
    }
    if has_valid_qr(s, now) {
        return st.qr.clone().map(Step::Show).unwrap_or(Step::Wait);
    }
    if let Some(code) = &st.pairing_code {
        return Step::Pairing(code.clone());
    }
    let handled = st.handled.as_ref().and_then(|h| h.qr_requested_at.as_ref());
    let ours_handled = match (requested, handled) {
        (None, _) => true,
        (Some(r), Some(h)) => h.0 >= r.0,
        (Some(_), None) => false,
    };
    if st.qr_status == Some(QrStatus::Expired) && ours_handled {
        return Step::Expired;
    }
    Step::Wait
}

/// The frame for QR number `n`: instructions, then the code.
pub fn frame(
    lines: &[String],
    ns: &str,
    name: &str,
    n: u32,
    expires_in: Option<i64>,
    lang: Lang,
) -> String {
    let mut text = String::new();
    text.push_str(lang.pick(
        "Escanee con WhatsApp en el teléfono: Ajustes → Dispositivos vinculados → Vincular un dispositivo.\n",
        "Scan with WhatsApp on the phone: Settings → Linked devices → Link a device.\n",
    ));
    let expires = match expires_in {
        Some(s) => format!(" · {} {s} s", lang.pick("caduca en", "expires in")),
        None => String::new(),
    };
    text.push_str(&format!(
        "{} {ns}/{name} · QR {n}{expires}\n",
        lang.pick("Sesión", "Session")
    ));
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    text
}

/// The last line: the linked phone.
pub fn connected_line(
    ns: &str,
    name: &str,
    phone: Option<&str>,
    push_name: Option<&str>,
    lang: Lang,
) -> String {
    let phone = phone.map(view::phone).unwrap_or_else(|| "?".into());
    let push = push_name.map(|p| format!(" ({p})")).unwrap_or_default();
    format!(
        "{} {phone}{push} — {} {ns}/{name}\n",
        lang.pick("Conectado:", "Connected:"),
        lang.pick("sesión", "session")
    )
}

pub async fn qr(
    ctx: &Ctx,
    name: &str,
    timeout: Duration,
    invert: bool,
    out: &mut impl Write,
) -> Result<(), Error> {
    let lang = ctx.lang;
    let ns = ctx.ns().to_string();
    let (asked, s) = write::request_qr(ctx, name).await?;
    if asked == Asked::Requested || asked == Asked::Pending {
        eprintln!(
            "{}",
            lang.pick(
                "QR solicitado; esperando a que la sesión lo muestre…",
                "QR requested; waiting for the session to show it…"
            )
        );
    }
    let requested = s.spec.qr_requested_at.clone();
    let style = if ctx.terminal {
        Style::Ansi
    } else {
        Style::Plain { invert }
    };
    let mut follow = Follow::new(ctx.api(), name, &ns);
    let mut shown: Option<String> = None;
    let mut count = 0;
    let run = async {
        loop {
            let s = follow.next().await?;
            let now = now_secs();
            match step(&s, requested.as_ref(), &now) {
                Step::Connected { phone, push_name } => {
                    print(
                        out,
                        &connected_line(&ns, name, phone.as_deref(), push_name.as_deref(), lang),
                    );
                    return Ok(());
                }
                Step::Show(payload) if shown.as_ref() != Some(&payload) => {
                    count += 1;
                    let lines = render::qr_lines(&payload, style)?;
                    let expires_in = s
                        .status
                        .as_ref()
                        .and_then(|st| st.qr_expires_at.as_ref())
                        .map(|e| e.0.as_second() - now.0.as_second());
                    // A terminal gets the QR redrawn in place; a pipe gets one after the other,
                    // each ended by a blank line (a reader knows a frame is whole).
                    let (clear, end) = if ctx.terminal {
                        ("\x1b[H\x1b[2J", "")
                    } else {
                        ("", "\n")
                    };
                    print(
                        out,
                        &format!(
                            "{clear}{}{end}",
                            frame(&lines, &ns, name, count, expires_in, lang)
                        ),
                    );
                    shown = Some(payload);
                }
                Step::Pairing(code) if shown.as_ref() != Some(&code) => {
                    let what = lang.pick("Código de vinculación (WhatsApp → Dispositivos vinculados → Vincular con el número de teléfono)", "Pairing code (WhatsApp → Linked devices → Link with phone number)");
                    print(out, &format!("{what}: {code}\n"));
                    shown = Some(code);
                }
                Step::Expired => {
                    return Err(Error::QrExpired {
                        name: name.to_string(),
                    });
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| Error::Timeout {
            name: name.to_string(),
            want: SessionState::Connected,
            after: timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{Handled, WhatsAppSessionSpec, WhatsAppSessionStatus};
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + secs).expect("time"))
    }

    fn with(status: WhatsAppSessionStatus) -> WhatsAppSession {
        let mut s = WhatsAppSession::new("v", WhatsAppSessionSpec::default());
        s.status = Some(status);
        s
    }

    #[test]
    fn a_valid_qr_is_shown_an_old_one_is_not() {
        let st = WhatsAppSessionStatus {
            status: Some(SessionState::QrRequired),
            qr_status: Some(QrStatus::Generated),
            qr: Some("2@abc,k1,k2,s".into()),
            qr_expires_at: Some(at(20)),
            ..Default::default()
        };
        assert_eq!(
            step(&with(st.clone()), None, &at(0)),
            Step::Show("2@abc,k1,k2,s".into())
        );
        assert_eq!(step(&with(st), None, &at(21)), Step::Wait);
    }

    #[test]
    fn connected_ends_with_the_phone() {
        let st = WhatsAppSessionStatus {
            status: Some(SessionState::Connected),
            phone_number: Some("5491122334455".into()),
            push_name: Some("Ana".into()),
            ..Default::default()
        };
        let Step::Connected { phone, push_name } = step(&with(st), Some(&at(0)), &at(1)) else {
            panic!()
        };
        assert_eq!(
            connected_line("ns", "v", phone.as_deref(), push_name.as_deref(), Lang::Es),
            "Conectado: +5491122334455 (Ana) — sesión ns/v\n"
        );
    }

    #[test]
    fn expired_counts_only_once_our_request_was_handled() {
        let expired = |handled: Option<Time>| {
            with(WhatsAppSessionStatus {
                status: Some(SessionState::QrRequired),
                qr_status: Some(QrStatus::Expired),
                handled: Some(Handled {
                    qr_requested_at: handled,
                    logout_requested_at: None,
                }),
                ..Default::default()
            })
        };
        // the round before ours
        assert_eq!(
            step(&expired(Some(at(-100))), Some(&at(0)), &at(1)),
            Step::Wait
        );
        assert_eq!(step(&expired(None), Some(&at(0)), &at(1)), Step::Wait);
        // ours (or a later one)
        assert_eq!(
            step(&expired(Some(at(0))), Some(&at(0)), &at(200)),
            Step::Expired
        );
        assert_eq!(
            step(&expired(Some(at(5))), Some(&at(0)), &at(200)),
            Step::Expired
        );
        // no request of ours: the shown round was the one
        assert_eq!(step(&expired(None), None, &at(1)), Step::Expired);
    }

    #[test]
    fn a_frame_says_what_to_do_and_which_qr() {
        let f = frame(&["██".into()], "ns", "v", 2, Some(19), Lang::En);
        assert_eq!(
            f,
            "Scan with WhatsApp on the phone: Settings → Linked devices → Link a device.\nSession ns/v · QR 2 · expires in 19 s\n██\n"
        );
    }
}
