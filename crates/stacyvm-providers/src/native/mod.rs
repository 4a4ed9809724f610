//! The native provider: sandboxes as OCI containers run from cached images.
pub mod image;
