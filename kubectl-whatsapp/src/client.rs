//! The connection kubectl would use: the kubeconfig (`--kubeconfig`, else `$KUBECONFIG`, else
//! `~/.kube/config`), its context (`--context`, else the current one) and namespace (`-n`, else
//! the context's, else `default`). The user's own credentials and RBAC decide what works.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crds::WhatsAppSession;

use crate::cli::Global;
use crate::error::Error;

/// A client and the namespace the command works in.
pub struct Target {
    pub client: Client,
    pub namespace: String,
}

impl Target {
    pub async fn new(g: &Global) -> Result<Self, Error> {
        let options = KubeConfigOptions {
            context: g.context.clone(),
            ..Default::default()
        };
        let config = match &g.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|e| Error::Config(e.to_string()))?;
                Config::from_custom_kubeconfig(kc, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        };
        let config = match config {
            Ok(c) => c,
            // No kubeconfig at all: inside a pod, the pod's ServiceAccount (as kubectl does).
            Err(e) if g.context.is_none() && g.kubeconfig.is_none() => {
                Config::incluster().map_err(|_| Error::Config(e.to_string()))?
            }
            Err(e) => return Err(Error::Config(e.to_string())),
        };
        let namespace = g
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self { client, namespace })
    }

    pub fn sessions(&self) -> Api<WhatsAppSession> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn all_sessions(&self) -> Api<WhatsAppSession> {
        Api::all(self.client.clone())
    }
}
