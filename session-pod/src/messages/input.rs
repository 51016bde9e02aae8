//! What a caller may ask to send: a recipient and a text, checked before anything is recorded
//! or asked of the page (docs/design.md §3, `POST …/messages`).

/// WhatsApp's own limit on a text message, in characters (Unicode scalar values): the page
/// refuses longer ones.
pub const MAX_TEXT_CHARS: usize = 65_536;

/// A recipient: the digits of an international number (country code first, no `+`) and its
/// WhatsApp id as asked (`<digits>@c.us`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub digits: String,
}

impl Recipient {
    /// `5491122334455` or `5491122334455@c.us`; 8 to 15 digits (E.164 without the `+`).
    pub fn parse(to: &str) -> Result<Self, String> {
        let digits = to.strip_suffix("@c.us").unwrap_or(to);
        if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "to must be 8 to 15 digits with the country code and no '+', or <digits>@c.us; got {} characters",
                to.chars().count()
            ));
        }
        Ok(Self {
            digits: digits.to_string(),
        })
    }
}

/// A text WhatsApp accepts: not empty (nor only whitespace) and at most [`MAX_TEXT_CHARS`].
/// Not UTF-8 is refused earlier, by the JSON reader.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("text must not be empty".into());
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(format!(
            "text has {chars} characters; WhatsApp accepts at most {MAX_TEXT_CHARS}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_ids_are_accepted() {
        for to in [
            "5491122334455",
            "12345678",
            "123456789012345",
            "5491122334455@c.us",
        ] {
            let r = Recipient::parse(to).unwrap_or_else(|e| panic!("{to}: {e}"));
            assert_eq!(r.digits, to.trim_end_matches("@c.us"));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for to in [
            "",
            "+5491122334455",
            "1234567",
            "1234567890123456",
            "549 11 2233 4455",
            "5491122334455@g.us",
            "5491122334455@s.whatsapp.net",
            "@c.us",
            "١٢٣٤٥٦٧٨٩",
            "12345678@c.us@c.us",
        ] {
            assert!(Recipient::parse(to).is_err(), "{to:?} must be refused");
        }
    }

    #[test]
    fn texts_within_whatsapps_limit() {
        assert!(check_text("hola").is_ok());
        assert!(check_text(&"ñ".repeat(MAX_TEXT_CHARS)).is_ok());
        let over = check_text(&"a".repeat(MAX_TEXT_CHARS + 1)).unwrap_err();
        assert!(over.contains("65536"), "{over}");
        assert!(check_text("").is_err());
        assert!(check_text(" \n\t").is_err());
    }
}
