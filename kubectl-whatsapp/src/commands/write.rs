//! `connect`, `logout`, `stop`, `start`: server-side apply of the spec requests.

use std::io::Write;

use crds::{DesiredState, SessionApply, SpecRequests, WhatsAppSession, Writer};
use kube::ResourceExt;

use crate::commands::{Ctx, print};
use crate::error::Error;
use crate::requests::{self, Connect, now_secs};
use crate::view;

/// Applies `r` to session `s` as the plugin's writer (forcing: these fields are requests, the
/// newest wins, as with the hub).
async fn apply(ctx: &Ctx, s: &WhatsAppSession, r: SpecRequests) -> Result<WhatsAppSession, Error> {
    let name = s.name_any();
    SessionApply::spec(name.clone(), r)
        .in_namespace(s.namespace())
        .apply(&ctx.api(), Writer::Kubectl)
        .await
        .map_err(|e| Error::from_kube(e, "patch", ctx.ns(), Some(&name)))
}

/// What asking for a QR found, for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    AlreadyConnected,
    QrShown,
    Pending,
    Requested,
}

/// Makes sure the session runs and a QR round is coming (or shown): the hub's decision
/// (requests::decide_connect), then the write it calls for. Returns the session as written or
/// read.
pub async fn request_qr(ctx: &Ctx, name: &str) -> Result<(Asked, WhatsAppSession), Error> {
    let s = ctx.get(name).await?;
    Ok(match requests::decide_connect(&s, now_secs()) {
        Connect::AlreadyConnected => (Asked::AlreadyConnected, s),
        Connect::QrShown => (Asked::QrShown, s),
        Connect::Pending => (Asked::Pending, s),
        Connect::Apply(r) => (Asked::Requested, apply(ctx, &s, r).await?),
    })
}

pub async fn connect(ctx: &Ctx, name: &str, out: &mut impl Write) -> Result<(), Error> {
    let (asked, s) = request_qr(ctx, name).await?;
    let lang = ctx.lang;
    let ns = ctx.ns();
    let hint = format!("kubectl whatsapp qr {name} -n {ns}");
    let text = match asked {
        Asked::AlreadyConnected => {
            let phone = s
                .status
                .as_ref()
                .and_then(|st| st.phone_number.as_deref())
                .map(view::phone)
                .unwrap_or_default();
            let what = lang.pick(
                "La sesión ya está conectada",
                "The session is already connected",
            );
            format!("{what}: {ns}/{name} {phone}\n")
        }
        Asked::QrShown => {
            let what = lang.pick(
                "La sesión ya muestra un QR válido",
                "The session already shows a valid QR",
            );
            format!("{what} ({ns}/{name}): {hint}\n")
        }
        Asked::Pending => {
            let what = lang.pick(
                "Ya se pidió un QR para la sesión",
                "A QR was already requested for session",
            );
            format!("{what} {ns}/{name}: {hint}\n")
        }
        Asked::Requested => {
            let what = lang.pick("QR solicitado para la sesión", "QR requested for session");
            format!("{what} {ns}/{name}: {hint}\n")
        }
    };
    print(out, &text);
    Ok(())
}

pub async fn logout(ctx: &Ctx, name: &str, out: &mut impl Write) -> Result<(), Error> {
    let s = ctx.get(name).await?;
    apply(
        ctx,
        &s,
        SpecRequests::current(&s.spec).request_logout(now_secs()),
    )
    .await?;
    let text = ctx.lang.pick(
        "Cierre de sesión solicitado: el agente cerrará WhatsApp y borrará el inicio de sesión guardado",
        "Logout requested: the agent will log out of WhatsApp and wipe the saved login",
    );
    print(out, &format!("{text} ({}/{name}).\n", ctx.ns()));
    Ok(())
}

pub async fn set_desired(
    ctx: &Ctx,
    name: &str,
    desired: DesiredState,
    out: &mut impl Write,
) -> Result<(), Error> {
    let s = ctx.get(name).await?;
    apply(
        ctx,
        &s,
        SpecRequests::current(&s.spec).desired_state(desired),
    )
    .await?;
    let text = match desired {
        DesiredState::Stopped => ctx.lang.pick(
            "detenida (sin pod; los datos se conservan)",
            "stopped (no pod; data kept)",
        ),
        DesiredState::Running => ctx.lang.pick(
            "en marcha (desiredState=Running)",
            "started (desiredState=Running)",
        ),
    };
    let what = ctx.lang.pick("Sesión", "Session");
    print(out, &format!("{what} {}/{name} {text}.\n", ctx.ns()));
    Ok(())
}
