//! Owner identity: the `X-User-ID` header or an `owner_id` body field.

use std::fmt;

use serde::{Deserialize, Serialize};

const MAX_OWNER_LEN: usize = 128;

/// A validated, trimmed owner id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OwnerId(String);

/// Read through [`OwnerId::parse`], so a body can never carry an owner id
/// that the stores would later refuse to read back; an empty one is not an
/// owner.
impl<'de> Deserialize<'de> for OwnerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        match OwnerId::parse(&raw) {
            Ok(Some(owner)) => Ok(owner),
            Ok(None) => Err(serde::de::Error::custom("owner id may not be empty")),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

/// Why an owner id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("owner id is longer than {MAX_OWNER_LEN} characters")]
    TooLong,
    #[error("owner id may not contain whitespace, control characters, '/' or '\\'")]
    BadCharacter,
}

impl OwnerId {
    /// Trims and validates. An empty (or all-blank) input means "no owner".
    pub fn parse(raw: &str) -> Result<Option<Self>, OwnerError> {
        let s = raw.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if s.chars().count() > MAX_OWNER_LEN {
            return Err(OwnerError::TooLong);
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '\\')
        {
            return Err(OwnerError::BadCharacter);
        }
        Ok(Some(OwnerId(s.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for OwnerId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            "Owner id: trimmed, at most 128 characters, no whitespace, control characters, `/` or `\\`.",
            Some(r"^[^\s/\\\x00-\x1f\x7f-\x9f]*$"),
            Some(MAX_OWNER_LEN),
            "alice",
        )
    }
}

impl utoipa::ToSchema for OwnerId {}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializing_validates_like_parse() {
        let ok: OwnerId = serde_json::from_str("\" alice \"").unwrap();
        assert_eq!(ok.as_str(), "alice");
        for bad in ["\"\"", "\"   \"", "\"a/b\"", "\"a b\""] {
            assert!(serde_json::from_str::<OwnerId>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validates_owner_ids() {
        assert_eq!(
            OwnerId::parse("  alice ").unwrap().unwrap().as_str(),
            "alice"
        );
        assert_eq!(OwnerId::parse("   ").unwrap(), None);
        assert_eq!(OwnerId::parse("a b"), Err(OwnerError::BadCharacter));
        assert_eq!(OwnerId::parse("a/b"), Err(OwnerError::BadCharacter));
        assert_eq!(OwnerId::parse("a\\b"), Err(OwnerError::BadCharacter));
        assert_eq!(OwnerId::parse("a\u{7}"), Err(OwnerError::BadCharacter));
        assert_eq!(OwnerId::parse(&"x".repeat(129)), Err(OwnerError::TooLong));
        assert!(OwnerId::parse(&"x".repeat(128)).unwrap().is_some());
    }
}
