//! Benchmarks of Signet that start the real `signet-server` and `signet-agent` binaries on
//! loopback and in a temporary directory, and measure them from the outside.
#![forbid(unsafe_code)]

pub mod admin;
pub mod binaries;
pub mod cli;
pub mod cpu;
pub mod deployment;
pub mod process;
pub mod propagation;
pub mod report;
pub mod stats;
pub mod wait;
pub mod workload;
