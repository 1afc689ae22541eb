//! Harness for end-to-end tests: starts real `signet-server` and `signet-agent` processes in
//! temporary directories and talks to them with clients this project did not write.
#![forbid(unsafe_code)]

pub mod agent;
pub mod binaries;
pub mod cli;
pub mod deployment;
pub mod files;
pub mod http;
pub mod local_authority;
pub mod mtls;
pub mod postgres;
pub mod process;
pub mod python;
pub mod server;
pub mod spire_api;
pub mod svid;
pub mod wait;
pub mod workload;

pub use agent::{Agent, AgentOptions, Bootstrap};
pub use cli::EntrySpec;
pub use deployment::Deployment;
pub use server::{Server, ServerOptions};

/// Trust domain every test uses unless it needs a second one.
pub const TRUST_DOMAIN: &str = "example.org";

/// Returns the real user ID of the test process, the value its `unix:uid` selector carries.
pub fn current_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Returns the current time as Unix seconds, the unit of certificate and token expiry fields.
pub fn unix_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

/// Returns the `unix:uid:<n>` selector that matches the test process itself.
pub fn current_uid_selector() -> String {
    format!("unix:uid:{}", current_uid())
}
