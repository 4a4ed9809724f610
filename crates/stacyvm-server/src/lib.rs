//! StacyVM orchestrator and HTTP API.
#![forbid(unsafe_code)]

pub mod web;
