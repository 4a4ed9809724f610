//! Sandbox ids: `sb-` followed by lowercase hex.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Number of random hex digits in a new id (the contract asks for 8 or more).
const ID_HEX_LEN: usize = 12;

/// A sandbox id such as `sb-3f9a0c1d2e4b`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SandboxId(String);

/// Deserialising validates like [`SandboxId::parse`], so no malformed id
/// enters through a request body or a stored record.
impl<'de> Deserialize<'de> for SandboxId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SandboxId::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid sandbox id {s:?}")))
    }
}

impl SandboxId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let hex: String = (0..ID_HEX_LEN)
            .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
            .collect();
        SandboxId(format!("sb-{hex}"))
    }

    /// Accepts only well-formed ids, so an id can be used safely in paths,
    /// container names and labels.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sb-")?;
        let ok = hex.len() >= 8
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| SandboxId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id's pattern, for the OpenAPI document.
pub const SANDBOX_ID_PATTERN: &str = "^sb-[0-9a-f]{8,64}$";

impl utoipa::PartialSchema for SandboxId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::string(
            "Sandbox id: `sb-` and 8 to 64 lowercase hex digits.",
            Some(SANDBOX_ID_PATTERN),
            Some(67),
            "sb-a1b2c3d4",
        )
    }
}

impl utoipa::ToSchema for SandboxId {}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SandboxId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse() {
        for _ in 0..100 {
            let id = SandboxId::generate();
            assert_eq!(SandboxId::parse(id.as_str()), Some(id.clone()));
            assert_eq!(id.as_str().len(), 3 + ID_HEX_LEN);
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "sb-",
            "sb-1234567",
            "sb-ABCDEF12",
            "xx-12345678",
            "sb-../../etc",
            "sb-1234567g",
        ] {
            assert!(SandboxId::parse(bad).is_none(), "{bad}");
        }
        assert!(SandboxId::parse("sb-a1b2c3d4").is_some());
    }

    #[test]
    fn deserialising_validates() {
        let ok: SandboxId = serde_json::from_str("\"sb-a1b2c3d4\"").unwrap();
        assert_eq!(ok.as_str(), "sb-a1b2c3d4");
        for bad in ["\"sb-../../etc\"", "\"\"", "\"SB-A1B2C3D4\"", "7"] {
            assert!(serde_json::from_str::<SandboxId>(bad).is_err(), "{bad}");
        }
    }
}
