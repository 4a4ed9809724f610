//! `/sandboxes/{id}/files...`: bodies and queries. File info is
//! `stacyvm_core::FileInfo`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Body of `POST /sandboxes/{id}/files` (text content; parents created).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct WriteFileRequest {
    /// Absolute path inside the sandbox.
    #[schema(example = "/app/main.py", pattern = "^/")]
    pub path: String,
    pub content: String,
    /// Octal permission bits (`"755"`, `"0644"`).
    pub mode: Option<String>,
    /// `base64` for binary content (addition to the contract); default text.
    pub encoding: Option<String>,
}

/// `?path=` of the read, stat and similar routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct FilePathQuery {
    /// Absolute path inside the sandbox.
    #[param(required = true, pattern = "^/")]
    pub path: String,
}

/// `?path=&mode=` of the raw upload (`PUT /sandboxes/{id}/files`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct WriteFileQuery {
    /// Absolute path inside the sandbox.
    #[param(required = true, pattern = "^/")]
    pub path: String,
    /// Octal permission bits.
    pub mode: Option<String>,
}

/// `?path=&recursive=` of `DELETE /sandboxes/{id}/files`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct DeleteFileQuery {
    /// Absolute path inside the sandbox.
    #[param(required = true, pattern = "^/")]
    pub path: String,
    /// `true`/`1` to delete a directory with its contents.
    pub recursive: Option<String>,
}

/// `?path=` of `GET /sandboxes/{id}/files/list` (default `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ListFilesQuery {
    /// Absolute directory path (default `/`).
    #[param(pattern = "^/")]
    pub path: String,
}

/// `?pattern=` of `GET /sandboxes/{id}/files/glob`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct GlobQuery {
    #[param(example = "/app/**/*.py")]
    pub pattern: String,
}

/// Body of `POST /sandboxes/{id}/files/move`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct MoveRequest {
    #[schema(pattern = "^/")]
    pub old_path: String,
    #[schema(pattern = "^/")]
    pub new_path: String,
}

/// Body of `POST /sandboxes/{id}/files/chmod`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ChmodRequest {
    #[schema(pattern = "^/")]
    pub path: String,
    pub mode: Option<FileModeValue>,
}

/// A mode as the contract sends it (an octal string), or a JSON number
/// read as the same digits (`755`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum FileModeValue {
    Text(String),
    Digits(u64),
}

impl FileModeValue {
    /// The octal digits as text.
    pub fn digits(&self) -> String {
        match self {
            FileModeValue::Text(s) => s.clone(),
            FileModeValue::Digits(n) => n.to_string(),
        }
    }
}
