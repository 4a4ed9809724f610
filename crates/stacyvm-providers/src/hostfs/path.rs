//! Sandbox paths: the absolute paths the API speaks, normalised lexically
//! into a path relative to the sandbox root before anything touches a disk.

use std::path::{Path, PathBuf};

use crate::ProviderError;

/// Longest path accepted from the API (Linux `PATH_MAX`).
const MAX_PATH_LEN: usize = 4096;

/// A normalised sandbox path: no `.`/`..`/empty components, never above the
/// root. `rel` is empty for the root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPath {
    rel: PathBuf,
    abs: String,
}

impl SandboxPath {
    /// Normalises an API path (`/app/x.py`; a relative path is taken from
    /// `/`). Rejects empty paths, NUL bytes, over-long paths and `..` that
    /// would climb above the root.
    pub fn parse(path: &str) -> Result<Self, ProviderError> {
        if path.is_empty() {
            return Err(ProviderError::InvalidInput("path is empty".into()));
        }
        if path.contains('\0') {
            return Err(ProviderError::InvalidInput(format!(
                "path {:?} contains a nul byte",
                path.replace('\0', "\\0")
            )));
        }
        if path.len() > MAX_PATH_LEN {
            return Err(ProviderError::InvalidInput(format!(
                "path is longer than {MAX_PATH_LEN} bytes"
            )));
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(ProviderError::InvalidInput(format!(
                            "path {path} leads outside the sandbox"
                        )));
                    }
                }
                p => parts.push(p),
            }
        }
        Ok(SandboxPath {
            rel: parts.iter().collect(),
            abs: format!("/{}", parts.join("/")),
        })
    }

    /// The path relative to the sandbox root (empty for the root).
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    /// The normalised absolute sandbox path, for messages and `FileInfo`.
    pub fn abs(&self) -> &str {
        &self.abs
    }

    pub fn is_root(&self) -> bool {
        self.rel.as_os_str().is_empty()
    }

    /// The last component; `/` for the root.
    pub fn name(&self) -> &str {
        self.abs
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("/")
    }

    /// The parent directory (relative) and the final name, or `None` for
    /// the root.
    pub fn split(&self) -> Option<(&Path, &str)> {
        if self.is_root() {
            return None;
        }
        let parent = self.rel.parent().unwrap_or(Path::new(""));
        Some((parent, self.name()))
    }

    /// The sandbox path of a child entry.
    pub fn join(&self, name: &str) -> SandboxPath {
        SandboxPath {
            rel: self.rel.join(name),
            abs: if self.is_root() {
                format!("/{name}")
            } else {
                format!("{}/{name}", self.abs)
            },
        }
    }
}

impl std::fmt::Display for SandboxPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.abs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> (String, String) {
        let s = SandboxPath::parse(p).unwrap();
        (s.rel().to_string_lossy().into_owned(), s.abs().to_string())
    }

    #[test]
    fn normalises_paths() {
        assert_eq!(ok("/app/x.py"), ("app/x.py".into(), "/app/x.py".into()));
        assert_eq!(ok("app//./x.py/"), ("app/x.py".into(), "/app/x.py".into()));
        assert_eq!(ok("/a/b/../c"), ("a/c".into(), "/a/c".into()));
        assert_eq!(ok("/"), ("".into(), "/".into()));
        assert_eq!(ok("/a/.."), ("".into(), "/".into()));
        assert_eq!(SandboxPath::parse("/").unwrap().name(), "/");
        assert_eq!(SandboxPath::parse("/a/b").unwrap().name(), "b");
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", "/..", "/../etc/passwd", "..", "a/../../b", "/a/\0b"] {
            let err = SandboxPath::parse(bad).unwrap_err();
            assert!(
                matches!(err, ProviderError::InvalidInput(_)),
                "{bad:?}: {err}"
            );
        }
        assert!(SandboxPath::parse(&"a/".repeat(3000)).is_err());
    }
}
