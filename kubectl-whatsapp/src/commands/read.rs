//! `list` and `status`.

use std::io::Write;

use kube::api::ListParams;

use crate::commands::{Ctx, print};
use crate::error::Error;
use crate::requests::now_secs;
use crate::view;

pub async fn list(ctx: &Ctx, all: bool, out: &mut impl Write) -> Result<(), Error> {
    let (api, ns) = if all {
        (ctx.target.all_sessions(), None)
    } else {
        (ctx.api(), Some(ctx.ns()))
    };
    let sessions = api
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::from_kube(e, "list", ns.unwrap_or_default(), None))?
        .items;
    if sessions.is_empty() {
        eprint!("{}", view::no_sessions(ns, ctx.lang));
        return Ok(());
    }
    print(
        out,
        &view::list_table(&sessions, all, ctx.lang, &now_secs()),
    );
    Ok(())
}

pub async fn status(ctx: &Ctx, name: &str, out: &mut impl Write) -> Result<(), Error> {
    let s = ctx.get(name).await?;
    print(out, &view::status_text(&s, ctx.lang, &now_secs()));
    Ok(())
}
