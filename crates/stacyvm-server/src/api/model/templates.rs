//! `/templates`: named spawn presets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stacyvm_core::GoDuration;
use utoipa::ToSchema;

/// Body of `POST /templates` and `PUT /templates/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct TemplateRequest {
    /// Letters, digits, `-`, `_`, `.`; at most 128; not starting with `.`.
    /// On `PUT` the name in the path wins.
    #[schema(example = "python")]
    pub name: String,
    pub image: String,
    pub provider: String,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub ttl: Option<GoDuration>,
    pub metadata: BTreeMap<String, String>,
}

/// Optional overrides of `POST /templates/{name}/spawn`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct TemplateSpawnRequest {
    pub ttl: Option<GoDuration>,
    pub provider: Option<String>,
    pub owner_id: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
}
