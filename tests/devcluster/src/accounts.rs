//! The `default` ServiceAccount of a namespace, created directly instead of waiting for
//! kube-controller-manager's serviceaccounts controller to do it: on a loaded machine that
//! controller took ~5 s after start-up (it first waits for its informers to sync), and pods are
//! refused until the account exists. The controller only creates a missing account, so creating
//! it first changes nothing else; the token controller and TokenRequest work the same.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

pub const DEFAULT_ACCOUNT: &str = "default";

/// Creates `namespace`'s `default` ServiceAccount if it does not exist yet.
pub async fn ensure_default(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let api = Api::<ServiceAccount>::namespaced(client.clone(), namespace);
    if api.get_opt(DEFAULT_ACCOUNT).await?.is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_ACCOUNT.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        // the controller was quicker
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e),
    }
}
