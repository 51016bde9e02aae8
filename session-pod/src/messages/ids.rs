//! Message ids the agent chooses for the page, and the digests the journal files by.
//!
//! A keyed send gets an id derived from the session and the key, so the same request after a
//! crash (the agent's, the hub's, the caller's) asks the page for the same message, which the
//! page recognises instead of sending it again (`messages::page::PageRequest::SendText`).

use aws_lc_rs::digest::{SHA256, digest};
use rand::RngCore;

/// WhatsApp Web's own ids for messages sent from a browser: `3EB0` and 16 uppercase hex digits.
const PREFIX: &str = "3EB0";
const RANDOM_BYTES: usize = 8;

/// Deterministic: the same session and key give the same id; another session's differs.
pub fn from_key(session: &str, key: &str) -> String {
    let d = sha256(&[b"wa-message-id", session.as_bytes(), key.as_bytes()]);
    format!("{PREFIX}{}", upper_hex(&d[..RANDOM_BYTES]))
}

/// For a send without a key: each request is a new message.
pub fn random() -> String {
    let mut b = [0u8; RANDOM_BYTES];
    rand::rng().fill_bytes(&mut b);
    format!("{PREFIX}{}", upper_hex(&b))
}

/// A fixed-length, file-name-safe digest of parts (each length-prefixed, so `("ab","c")` and
/// `("a","bc")` differ).
pub fn fingerprint(parts: &[&[u8]]) -> String {
    sha256(parts).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut buf = Vec::new();
    for p in parts {
        buf.extend_from_slice(&(p.len() as u64).to_be_bytes());
        buf.extend_from_slice(p);
    }
    digest(&SHA256, &buf).as_ref().to_vec()
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whatsapp_shaped(id: &str) -> bool {
        id.len() == 20
            && id.starts_with("3EB0")
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    }

    #[test]
    fn keyed_ids_are_stable_and_per_session() {
        let a = from_key("ns/s1", "order-42");
        assert!(whatsapp_shaped(&a), "{a}");
        assert_eq!(a, from_key("ns/s1", "order-42"));
        assert_ne!(a, from_key("ns/s2", "order-42"));
        assert_ne!(a, from_key("ns/s1", "order-43"));
    }

    #[test]
    fn unkeyed_ids_differ() {
        let (a, b) = (random(), random());
        assert!(whatsapp_shaped(&a) && whatsapp_shaped(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"x"]).len(), 64);
    }
}
