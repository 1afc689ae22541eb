//! Benchmarks of Signet that start the real `signet-server` and `signet-agent` binaries on
//! loopback and in a temporary directory, and measure them from the outside.
#![forbid(unsafe_code)]

pub mod admin;
pub mod affinity;
pub mod binaries;
pub mod cli;
pub mod cpu;
pub mod crypto;
pub mod csr;
pub mod deployment;
pub mod host;
pub mod issuance;
pub mod jwt_signing;
pub mod load;
pub mod memory;
pub mod process;
pub mod propagation;
pub mod report;
pub mod runner;
pub mod signing_fixture;
pub mod simulated_agent;
pub mod stats;
pub mod wait;
pub mod workload;
pub mod workload_api;
pub mod workload_client;
