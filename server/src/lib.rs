//! Signet server: the certificate authority, the datastore of registration entries and attested
//! agents, the agent API over mTLS and the admin API on a Unix socket.
#![forbid(unsafe_code)]

pub mod api;
pub mod authority;
pub mod authorization;
pub mod ca;
pub mod cli;
pub mod config;
pub mod datastore;
pub mod endpoints;
pub mod health;
pub mod jwt;
pub mod metrics;
pub mod model;
pub mod run;
