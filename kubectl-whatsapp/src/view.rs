//! What `list` and `status` print, and the labels of states, in the user's language. Pure:
//! a session (or several) and the time in, text out.

use crds::{DesiredState, QrStatus, SessionState, WhatsAppSession};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::lang::Lang;

/// The state as the UI words it (docs/design.md §5); a Stopped session says so whatever the
/// agent last wrote.
pub fn state_label(s: &WhatsAppSession, lang: Lang) -> &'static str {
    if s.spec.desired_state == DesiredState::Stopped {
        return lang.pick("detenida", "stopped");
    }
    match s.status.as_ref().and_then(|st| st.status) {
        None => lang.pick("sin iniciar", "not started"),
        Some(SessionState::Init) => lang.pick("iniciando", "starting"),
        Some(SessionState::QrRequired) => lang.pick("esperando escaneo", "waiting for scan"),
        Some(SessionState::Connecting) => lang.pick("conectando", "connecting"),
        Some(SessionState::Connected) => lang.pick("conectado", "connected"),
        Some(SessionState::Disconnected) => lang.pick("desconectado", "disconnected"),
        Some(SessionState::Error) => "error",
    }
}

/// `+5491122334455` for the digits the agent stores (anything else as it is).
pub fn phone(p: &str) -> String {
    if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) {
        format!("+{p}")
    } else {
        p.to_string()
    }
}

/// kubectl's AGE: the largest unit, `45s`, `12m`, `5h`, `3d`.
pub fn age(created: Option<&Time>, now: &Time) -> String {
    let Some(c) = created else {
        return "<unknown>".into();
    };
    let secs = now.0.as_second().saturating_sub(c.0.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn qr_label(s: &WhatsAppSession) -> &'static str {
    s.status
        .as_ref()
        .and_then(|st| st.qr_status)
        .map(QrStatus::as_str)
        .unwrap_or("-")
}

/// The `list` table, sorted by namespace and name; `all` adds the NAMESPACE column.
pub fn list_table(sessions: &[WhatsAppSession], all: bool, lang: Lang, now: &Time) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec![
        lang.pick("NOMBRE", "NAME"),
        lang.pick("CLIENTE", "TENANT"),
        lang.pick("ESTADO", "STATUS"),
        "QR",
        lang.pick("TELÉFONO", "PHONE"),
        lang.pick("EDAD", "AGE"),
    ];
    if all {
        header.insert(0, "NAMESPACE");
    }
    rows.push(header.into_iter().map(String::from).collect());
    let mut sorted: Vec<&WhatsAppSession> = sessions.iter().collect();
    sorted.sort_by_key(|s| (s.namespace(), s.name_any()));
    for s in sorted {
        let mut row = vec![
            s.name_any(),
            s.spec.tenant.clone(),
            state_label(s, lang).to_string(),
            qr_label(s).to_string(),
            s.status
                .as_ref()
                .and_then(|st| st.phone_number.as_deref())
                .map(phone)
                .unwrap_or_else(|| "-".into()),
            age(s.metadata.creation_timestamp.as_ref(), now),
        ];
        if all {
            row.insert(0, s.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    columns(&rows)
}

/// Rows as left-aligned columns three spaces apart (kubectl's table), no trailing blanks.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The text of `list` when there is nothing to show.
pub fn no_sessions(namespace: Option<&str>, lang: Lang) -> String {
    match (namespace, lang) {
        (Some(ns), Lang::Es) => format!("No hay sesiones en el espacio de nombres {ns}.\n"),
        (Some(ns), Lang::En) => format!("No sessions found in namespace {ns}.\n"),
        (None, Lang::Es) => "No hay sesiones en ningún espacio de nombres.\n".into(),
        (None, Lang::En) => "No sessions found in any namespace.\n".into(),
    }
}

/// `status NAME`: one field per line, then the conditions.
pub fn status_text(s: &WhatsAppSession, lang: Lang, now: &Time) -> String {
    let st = s.status.clone().unwrap_or_default();
    let time = |t: &Option<Time>| t.as_ref().map(|t| t.0.to_string());
    let desired = match s.spec.desired_state {
        DesiredState::Running => "Running",
        DesiredState::Stopped => "Stopped",
    };
    let state = match st.status {
        Some(raw) => format!("{} ({})", state_label(s, lang), raw.as_str()),
        None => state_label(s, lang).to_string(),
    };
    let mut fields: Vec<(&str, Option<String>)> = vec![
        (lang.pick("Nombre", "Name"), Some(s.name_any())),
        ("Namespace", s.namespace()),
        (
            lang.pick("Cliente (tenant)", "Tenant"),
            Some(s.spec.tenant.clone()),
        ),
        (
            lang.pick("Nombre visible", "Display name"),
            s.spec.display_name.clone(),
        ),
        (
            lang.pick("Estado deseado", "Desired state"),
            Some(desired.into()),
        ),
        (lang.pick("Estado", "Status"), Some(state)),
        ("QR", st.qr_status.map(|q| q.as_str().to_string())),
        (
            lang.pick("QR caduca", "QR expires"),
            time(&st.qr_expires_at),
        ),
        (
            lang.pick("Código de vinculación", "Pairing code"),
            st.pairing_code.clone(),
        ),
        (
            lang.pick("Teléfono", "Phone"),
            st.phone_number.as_deref().map(phone),
        ),
        (
            lang.pick("Nombre en WhatsApp", "Push name"),
            st.push_name.clone(),
        ),
        (
            lang.pick("Conectado desde", "Connected at"),
            time(&st.connected_at),
        ),
        (lang.pick("Actualizado", "Updated"), time(&st.updated_at)),
        (
            lang.pick("Último error", "Last error"),
            st.last_error
                .as_ref()
                .map(|e| format!("{} — {} ({})", e.code, e.message, e.at.0)),
        ),
        ("Pod", st.pod_name.clone()),
        (
            lang.pick("Reinicios", "Restarts"),
            st.restarts.map(|r| r.to_string()),
        ),
        (
            lang.pick("Edad", "Age"),
            Some(age(s.metadata.creation_timestamp.as_ref(), now)),
        ),
    ];
    fields.retain(|(_, v)| v.is_some());
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    for (k, v) in fields {
        let label = format!("{k}:");
        out.push_str(&format!(
            "{label:<width$} {}\n",
            v.unwrap_or_default(),
            width = width
        ));
    }
    if !st.conditions.is_empty() {
        out.push_str(lang.pick("Condiciones:\n", "Conditions:\n"));
        for c in &st.conditions {
            out.push_str(&format!("  {}={} ({})", c.type_, c.status, c.reason));
            if !c.message.is_empty() {
                out.push_str(&format!(": {}", c.message));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{WhatsAppSessionSpec, WhatsAppSessionStatus};
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + secs).expect("time"))
    }

    fn session(ns: &str, name: &str, status: Option<WhatsAppSessionStatus>) -> WhatsAppSession {
        let mut s = WhatsAppSession::new(
            name,
            WhatsAppSessionSpec {
                tenant: "acme".into(),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some(ns.into());
        s.metadata.creation_timestamp = Some(at(0));
        s.status = status;
        s
    }

    fn connected() -> Option<WhatsAppSessionStatus> {
        Some(WhatsAppSessionStatus {
            status: Some(SessionState::Connected),
            qr_status: Some(QrStatus::Used),
            phone_number: Some("5491122334455".into()),
            ..Default::default()
        })
    }

    #[test]
    fn list_is_a_sorted_kubectl_style_table_in_the_users_language() {
        let s = [
            session("b", "zeta", None),
            session("a", "ventas", connected()),
        ];
        let es = list_table(&s, true, Lang::Es, &at(300));
        assert_eq!(
            es,
            "NAMESPACE   NOMBRE   CLIENTE   ESTADO        QR     TELÉFONO         EDAD\n\
             a           ventas   acme      conectado     used   +5491122334455   5m\n\
             b           zeta     acme      sin iniciar   -      -                5m\n"
        );
        let en = list_table(&s[..1], false, Lang::En, &at(30));
        assert_eq!(
            en,
            "NAME   TENANT   STATUS        QR   PHONE   AGE\nzeta   acme     not started   -    -       30s\n"
        );
    }

    #[test]
    fn a_stopped_session_reads_stopped() {
        let mut s = session("a", "v", connected());
        s.spec.desired_state = DesiredState::Stopped;
        assert_eq!(state_label(&s, Lang::Es), "detenida");
        assert_eq!(state_label(&s, Lang::En), "stopped");
    }

    #[test]
    fn status_lists_the_known_fields_only() {
        let s = session("a", "ventas", connected());
        let es = status_text(&s, Lang::Es, &at(7200));
        assert!(es.contains("Nombre:"), "{es}");
        assert!(
            es.contains("Estado:           conectado (connected)\n"),
            "{es}"
        );
        assert!(es.contains("Teléfono:         +5491122334455\n"), "{es}");
        assert!(es.contains("Edad:             2h\n"), "{es}");
        assert!(
            !es.contains("Último error"),
            "absent fields are left out: {es}"
        );
        let en = status_text(&s, Lang::En, &at(0));
        assert!(en.contains("Desired state: Running\n"), "{en}");
    }

    #[test]
    fn ages_and_phones() {
        assert_eq!(age(Some(&at(0)), &at(119)), "119s");
        assert_eq!(age(Some(&at(0)), &at(7199)), "119m");
        assert_eq!(age(Some(&at(0)), &at(86400 * 3)), "3d");
        assert_eq!(age(None, &at(0)), "<unknown>");
        assert_eq!(phone("549"), "+549");
        assert_eq!(phone("+549 11"), "+549 11");
    }
}
