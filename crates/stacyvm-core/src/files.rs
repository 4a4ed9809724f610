//! File info and modes as the Files API shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One entry of a listing or a stat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileInfo {
    pub name: String,
    /// Absolute path inside the sandbox.
    pub path: String,
    pub size: u64,
    pub is_dir: bool,
    pub mod_time: DateTime<Utc>,
    /// Octal permission bits, e.g. `0644`.
    pub mode: String,
    /// Set for symbolic links (the link itself is described, never followed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_symlink: bool,
}

/// Permission bits parsed from an octal string (`"755"`, `"0644"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl FileMode {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let digits = s.strip_prefix("0o").unwrap_or(s);
        if digits.is_empty() || digits.len() > 5 {
            return None;
        }
        let v = u32::from_str_radix(digits, 8).ok()?;
        (v <= 0o7777).then_some(FileMode(v))
    }

    /// Renders the permission bits as four octal digits.
    pub fn render(bits: u32) -> String {
        format!("{:04o}", bits & 0o7777)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!(FileMode::parse("755"), Some(FileMode(0o755)));
        assert_eq!(FileMode::parse("0644"), Some(FileMode(0o644)));
        assert_eq!(FileMode::parse("4755"), Some(FileMode(0o4755)));
        assert_eq!(FileMode::parse("999"), None);
        assert_eq!(FileMode::parse(""), None);
        assert_eq!(FileMode::parse("17777"), None);
        assert_eq!(FileMode::render(0o100644), "0644");
    }
}
