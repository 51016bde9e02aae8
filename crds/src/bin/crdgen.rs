//! Prints the WhatsAppSession CRD as YAML (`cargo run -p crds --bin crdgen > crds/whatsappsession.yaml`).
use kube::CustomResourceExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let yaml = serde_saphyr::to_string(&crds::WhatsAppSession::crd())?;
    print!("{yaml}");
    Ok(())
}
