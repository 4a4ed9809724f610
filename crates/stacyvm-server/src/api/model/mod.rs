//! The API v1 wire contract as types: every request body, query and
//! response the handlers read and write. The server serialises them, the
//! CLI and `stacyvm bench` deserialise them, and the OpenAPI document
//! (`GET /api/v1/openapi.json`, `docs/openapi.json`) is generated from
//! them, so the three cannot drift apart.
//!
//! Domain records that are also stored (`Sandbox`, `Template`, `FileInfo`,
//! `ProviderHealth`, `Event`, `ExecRequest`) live in `stacyvm-core` and are
//! re-exported here. A new surface adds its types in a sibling module with
//! `utoipa::ToSchema` derives, and registers its routes in
//! `api::routes` so the document covers them.

pub mod errors;
mod exec;
mod files;
mod keys;
mod sandboxes;
mod system;
mod templates;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use exec::{ExecResponse, StreamName, StreamRecord, WsClientMessage, WsServerMessage};
pub use files::{
    ChmodRequest, DeleteFileQuery, FileModeValue, FilePathQuery, GlobQuery, ListFilesQuery,
    MoveRequest, WriteFileQuery, WriteFileRequest,
};
pub use keys::{CreateKeyRequest, CreatedKey, KeyInfo, ListKeysQuery};
pub use sandboxes::{
    AdmissionDecision, ExtendRequest, ListSandboxesQuery, LogsQuery, PruneResponse, ResourceUsage,
    SandboxDetail, SpawnRequest,
};
pub use stacyvm_core::{
    Capability, Event, EventType, ExecRequest, FileInfo, GoDuration, OwnerId, ProviderHealth,
    Sandbox, SandboxId, SandboxState, Template,
};
pub use system::{
    AuthSummary, BuildInfo, ClusterSummary, Diagnostics, EventStreamItem, EventsQuery,
    LimitsSummary, MetricsResponse, NodeLease, NodeReadiness, PoolStatus, ProviderDetail,
    ProviderSummary, QuotaSummary, ReadyResponse, SandboxCounts, ServerStatus, StoreHealth,
};
pub use templates::{TemplateRequest, TemplateSpawnRequest};

/// The body of every error: a stable machine-readable `code` and a message
/// for humans (never a secret or a host path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `timeout`, `conflict`, `payload_too_large`,
    /// `resource_limit`, `internal`, `provider_error`, `unavailable` or
    /// `not_ready` (the store is away; retry).
    #[schema(example = "not_found")]
    pub code: String,
    #[schema(example = "sandbox sb-a1b2c3d4 not found")]
    pub message: String,
}

/// `{"status": "..."}`: the answer of an action that returns nothing else
/// (`destroyed`, `written`, `deleted`, `moved`, `chmod applied`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    #[schema(example = "destroyed")]
    pub status: String,
}

impl StatusResponse {
    pub fn new(status: &str) -> Self {
        StatusResponse {
            status: status.to_string(),
        }
    }
}

/// The `X-User-ID` header of the routes that take an owner.
#[derive(Debug, Clone, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct OwnerHeader {
    /// Owner identity: overrides `owner_id` in bodies and filters. Trimmed,
    /// at most 128 characters, no whitespace, control characters, `/` or
    /// `\`.
    #[param(rename = "X-User-ID", nullable = false)]
    pub x_user_id: Option<String>,
}

/// Raw bytes (`application/octet-stream` bodies: file uploads and reads).
#[derive(Debug, Clone, Copy)]
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl utoipa::ToSchema for Binary {}
