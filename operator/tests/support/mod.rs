//! The start of most operator tests: the run's cluster with the CRD, and a namespace of the
//! test's own. The operator process: `devcluster_testing::operator`; sessions:
//! `crds::testing`; the CRD swaps of the upgrade tests: `crd.rs`.

use devcluster_testing::TestCluster;
use kube::Client;

pub async fn setup(prefix: &str) -> (&'static TestCluster, Client, String) {
    // session pods are containers on a kubelet node
    let cluster = devcluster_testing::cluster().await;
    let client = cluster.client();
    crds::testing::install_crd(&client).await;
    let ns = cluster.namespace(prefix).await;
    (cluster, client, ns)
}
