//! An e-mail address as schema `public` stores it.

use crate::error::UserError;

/// Longest address the schema takes (RFC 5321's limit on a path).
const MAX_LENGTH: usize = 320;

/// An e-mail address: trimmed, one `@` between two non-empty parts, no white space, at most
/// 320 bytes (the rule of the check `users_email_format`, applied before the database sees
/// it so the caller gets a reason).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Self, UserError> {
        let email = text.trim();
        let mut parts = email.split('@');
        let well_formed = matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty()
        );
        if !well_formed || email.len() > MAX_LENGTH || email.chars().any(char::is_whitespace) {
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
    fn an_address_is_trimmed_and_needs_one_at_between_two_parts() {
        assert_eq!(
            Email::parse("  a@b.example ").unwrap().as_str(),
            "a@b.example"
        );
        for refused in [
            "",
            "a",
            "@b",
            "a@",
            "a@b@c",
            "a b@c",
            &format!("{}@b", "a".repeat(320)),
        ] {
            assert!(Email::parse(refused).is_err(), "{refused:?} was accepted");
        }
    }
}
