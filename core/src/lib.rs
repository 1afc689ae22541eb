//! Model and helpers shared by the Signet server and agent: selectors, TTLs, SPIFFE IDs with a
//! fixed meaning, and file writes that never leave a half-written or world-readable secret.
#![forbid(unsafe_code)]

pub mod admin_socket;
pub mod audience;
pub mod config;
pub mod duration;
pub mod fs;
pub mod health;
pub mod http;
pub mod ids;
pub mod jwk;
pub mod metrics;
pub mod process;
pub mod provider_url;
pub mod selector;
pub mod socket_dir;
pub mod template;
pub mod tls;
