//! `wait NAME --for=STATE`: like `kubectl wait`, ends 0 when the session reaches the state and
//! 1 after the timeout.

use std::io::Write;
use std::time::Duration;

use crds::SessionState;

use crate::commands::{Ctx, print};
use crate::error::Error;
use crate::follow::Follow;
use crate::view;

pub async fn wait(
    ctx: &Ctx,
    name: &str,
    want: SessionState,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<(), Error> {
    // a plain read first: an unknown session or a missing permission is said as such
    ctx.get(name).await?;
    let ns = ctx.ns().to_string();
    let mut follow = Follow::new(ctx.api(), name, &ns);
    let run = async {
        loop {
            let s = follow.next().await?;
            let st = s.status.as_ref();
            if st.and_then(|st| st.status) == Some(want) {
                let phone = st
                    .and_then(|st| st.phone_number.as_deref())
                    .filter(|_| want == SessionState::Connected)
                    .map(|p| format!(" {}", view::phone(p)))
                    .unwrap_or_default();
                let what = ctx.lang.pick("sesión", "session");
                print(
                    out,
                    &format!("{what} {ns}/{name}: {}{phone}\n", want.as_str()),
                );
                return Ok(());
            }
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| Error::Timeout {
            name: name.to_string(),
            want,
            after: timeout,
        })?
}
