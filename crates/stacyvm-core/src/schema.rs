//! OpenAPI schemas of the string newtypes (ids, durations), written by
//! hand because their wire form is a validated string, not their Rust shape.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A string schema with a description, an optional pattern and length
/// bounds, and one example.
pub(crate) fn string(
    description: &str,
    pattern: Option<&str>,
    max_length: Option<usize>,
    example: &str,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .max_length(max_length)
        .examples([example])
        .into()
}
