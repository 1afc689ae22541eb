//! Signet agent: attests the node to the server, keeps the SVIDs of the workloads it may serve,
//! and serves the SPIFFE Workload API on a Unix socket.
#![forbid(unsafe_code)]

pub mod cache;
pub mod cli;
pub mod config;
pub mod debug_api;
pub mod demand;
pub mod health;
pub mod helper;
pub mod jwt;
pub mod metrics;
pub mod node;
pub mod persist;
pub mod run;
pub mod svid;
pub mod sync;
pub mod taint;
pub mod workload_api;
pub mod workload_attestor;

#[cfg(test)]
mod test_util;
