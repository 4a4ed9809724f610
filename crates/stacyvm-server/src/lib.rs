//! StacyVM orchestrator (`Manager`: lifecycle, TTL reaper, limits, events,
//! metrics, provider health, reconciliation) and the axum HTTP API.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cluster;
pub mod config;
pub mod events;
pub mod keys;
pub mod manager;
pub mod obs;
pub mod web;
