//! An e-mail address as schema `public` stores it.

use crate::error::UserError;

/// Longest address the schema takes, in characters (RFC 5321's limit on a path).
pub const MAX_EMAIL_CHARS: usize = 320;

/// [`Email::parse`]'s rule as a regular expression (with [`MAX_EMAIL_CHARS`]), for documents
/// that state it; a test holds the two together.
pub const EMAIL_PATTERN: &str = r"^[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]+@[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]+$";

/// Characters no part of an address may hold: `@`, ASCII and C1 controls, and every kind of
/// white space (what `\s` means differs between regular expression engines; this list is
/// their union).
fn forbidden(c: char) -> bool {
    matches!(c, '@' | '\u{0}'..='\u{20}' | '\u{7f}'..='\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200b}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}')
}

/// An e-mail address: one `@` between two non-empty parts, no white space or control
/// character anywhere, at most 320 characters. A subset of what the check
/// `users_email_format` accepts, applied before the database sees it so the caller gets a
/// reason, and exactly what [`EMAIL_PATTERN`] says in the API's document. Not trimmed: an
/// address with spaces around it is refused, not silently changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(email: &str) -> Result<Self, UserError> {
        let part = |part: &str| !part.is_empty() && !part.chars().any(forbidden);
        let well_formed = email
            .split_once('@')
            .is_some_and(|(local, domain)| part(local) && part(domain));
        if !well_formed || email.chars().count() > MAX_EMAIL_CHARS {
            return Err(UserError::InvalidField {
                field: "email",
                reason: "must be an e-mail address",
            });
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn an_address_needs_one_at_between_two_parts_and_no_white_space() {
        assert_eq!(Email::parse("a@b.example").unwrap().as_str(), "a@b.example");
        assert!(Email::parse("ünï@b.example").is_ok());
        let too_long = format!("{}@b", "a".repeat(320));
        for refused in [
            "",
            "a",
            "@b",
            "a@",
            "a@b@c",
            "a b@c",
            " a@b",
            "a@b ",
            "a@b\u{85}",
            "a@\u{3000}b",
            "a\u{feff}@b",
            "a\u{1}@b",
            &too_long,
        ] {
            assert!(Email::parse(refused).is_err(), "{refused:?} was accepted");
        }
    }
}
