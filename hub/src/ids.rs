//! Validation of instance ids (a CR `metadata.name`) before they are used for lookups, room
//! names or log fields: a DNS label of at most 52 characters, as the CRD enforces.

use crate::error::ApiError;

pub const MAX_LEN: usize = 52;

/// `Ok` when `id` could be the name of a WhatsAppSession.
pub fn validate(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_request("instance_id is required"));
    }
    if id.len() > MAX_LEN {
        return Err(ApiError::bad_request(format!(
            "instance_id longer than {MAX_LEN} characters"
        )));
    }
    let bytes = id.as_bytes();
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-';
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !bytes.iter().all(|&c| ok_char(c)) || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(ApiError::bad_request(
            "instance_id must be lowercase letters, digits and '-', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

/// Namespaces follow the same DNS-label rule (63 characters).
pub fn validate_namespace(ns: &str) -> Result<(), ApiError> {
    let bytes = ns.as_bytes();
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && bytes
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid namespace"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for id in ["a", "tenant-a-main", "x1", &"a".repeat(52)] {
            assert!(validate(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for id in [
            "",
            "..",
            "a/b",
            "../x",
            "A",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "a b",
            &"a".repeat(53),
            &"a".repeat(300),
            "ñ",
        ] {
            assert!(validate(id).is_err(), "{id:?}");
        }
    }
}
