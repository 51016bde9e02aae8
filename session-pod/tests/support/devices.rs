//! The devices the fake WhatsApp Web has linked (its control API).

pub async fn fake_devices(fake_url: &str) -> serde_json::Value {
    reqwest::get(format!("{}/_fake/devices", fake_url.trim_end_matches('/')))
        .await
        .expect("devices")
        .json()
        .await
        .expect("json")
}
